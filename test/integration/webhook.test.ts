/**
 * The sidecar injection webhook against a real kube-apiserver: the operator runs as a
 * host process under operator/deploy/rbac.yaml, serves the webhook on loopback and
 * registers it by URL (--webhook-url); the API server calls it for pod creations.
 * Only labelled pods that a BackupJob selects get the agent, exactly once; the
 * ServiceAccount plugin's token stays out of the sidecar; a Deployment's template is
 * never touched; and with the operator stopped, labelled pods are still created
 * (failurePolicy Ignore), without the agent. No node is needed: this is admission only.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Pod,
} from "@kubernetes/client-node";
import { GROUP, VERSION } from "../../crds/definitions.ts";
import {
  AGENT_CONTROL_CERTS_DIR,
  AGENT_CONTROL_SECRET,
  INJECTED_ANNOTATION,
  INJECT_LABEL,
  OPERATOR_CA_SECRET,
  SIDECAR_CONTAINER,
} from "../../operator/agentControl/names.ts";
import { sidecarCommandLine } from "../../operator/webhook/fixtures.ts";
import {
  CONTROL_VOLUME,
  NO_TOKEN_VOLUME,
  AGENT_STATE_DIR,
  STATE_VOLUME,
  SERVICE_ACCOUNT_TOKEN_DIR,
} from "../../operator/webhook/sidecarInjection.ts";
import { WEBHOOK_CONFIGURATION } from "../../operator/webhook/webhookConfiguration.ts";
import { freePort } from "../cluster/controlPlane.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import { eventually, startOperator, type OperatorProcess } from "./operatorProcess.ts";

const cluster = useTestCluster();
const RBAC = join(import.meta.dirname, "..", "..", "operator", "deploy", "rbac.yaml");
let operator: OperatorProcess;

const core = () => cluster.kc.makeApiClient(CoreV1Api);
let podCount = 0;

/** A web app pod: an uploads claim, nginx config from a ConfigMap, a cache emptyDir under a subPath. */
function shopPod(labels: Record<string, string>, name = `shop-${++podCount}`): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      containers: [
        {
          name: "web",
          image: "nginx:1.27",
          volumeMounts: [
            { name: "uploads", mountPath: "/var/www/uploads" },
            { name: "config", mountPath: "/etc/nginx/conf.d", readOnly: true },
            { name: "cache", mountPath: "/var/cache/nginx", subPath: "nginx" },
          ],
        },
      ],
      volumes: [
        { name: "uploads", persistentVolumeClaim: { claimName: "shop-uploads" } },
        { name: "config", configMap: { name: "shop-nginx" } },
        { name: "cache", emptyDir: {} },
      ],
    },
  };
}

const SELECTED = { app: "shop", [INJECT_LABEL]: "true" };
const createPod = (pod: V1Pod) => core().createNamespacedPod({ namespace: cluster.namespace, body: pod });
const sidecarsOf = (pod: V1Pod) => [
  ...(pod.spec?.initContainers ?? []).filter((c) => c.name === SIDECAR_CONTAINER),
  ...(pod.spec?.containers ?? []).filter((c) => c.name === SIDECAR_CONTAINER),
];

async function admissions(): Promise<number> {
  let total = 0;
  for (const result of ["injected", "unselected", "declined", "error"])
    total += (await operator.metric("offsite_webhook_admissions_total", { result })) ?? 0;
  return total;
}

describe("the sidecar injection webhook", () => {
  before(async () => {
    const namespace = cluster.namespace;
    // No controller-manager here: the ServiceAccount admission plugin needs `default` to exist.
    await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: "default" } } });
    const rbac = await cluster.kubectl(["apply", "-n", namespace, "-f", RBAC]);
    assert.equal(rbac.code, 0, rbac.stderr);
    for (const args of [
      ["create", "serviceaccount", "offsite-operator", "-n", namespace],
      [
        "create",
        "clusterrolebinding",
        `offsite-operator-${namespace}`,
        "--clusterrole=offsite-operator",
        `--serviceaccount=${namespace}:offsite-operator`,
      ],
    ]) {
      const created = await cluster.kubectl(args);
      assert.equal(created.code, 0, created.stderr);
    }
    await cluster.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: "backupjobs",
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "BackupJob",
        metadata: { name: "shop-backup" },
        spec: {
          source: { podSelector: { matchLabels: { app: "shop" } }, path: "/var/www/uploads" },
          target: { offsiteServer: { name: "vault" } },
        },
      },
    });
    const port = await freePort();
    operator = await startOperator({
      kubeconfig: await cluster.serviceAccountKubeconfig("offsite-operator"),
      namespace,
      identity: "op-webhook",
      extraArgs: [
        `--webhook-address=127.0.0.1:${port}`,
        `--webhook-url=https://127.0.0.1:${port}/mutate-pods`,
        "--webhook-host=127.0.0.1",
        "--leader-election=false",
      ],
    });
    // The API server picks a new configuration up from its own watch: until then pods
    // pass unchanged (failurePolicy is not even consulted), so probe until one is injected.
    await eventually(
      "the API server to call the webhook",
      async () => {
        const pod = await createPod(shopPod(SELECTED, `probe-${++podCount}`));
        return sidecarsOf(pod).length === 1 ? true : undefined;
      },
      30_000,
      [operator],
    );
  });
  after(async () => {
    await operator?.stop("SIGKILL");
  });

  it("is registered with the operator CA as its caBundle, by every rule the issue asks", async () => {
    const configuration = await cluster.kc
      .makeApiClient(AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION });
    const secret = await core().readNamespacedSecret({
      name: OPERATOR_CA_SECRET,
      namespace: cluster.namespace,
    });
    const [webhook] = configuration.webhooks!;
    assert.equal(webhook!.clientConfig.caBundle, secret.data!["tls.crt"]);
    assert.equal(webhook!.failurePolicy, "Ignore");
    assert.equal(webhook!.sideEffects, "None");
    assert.equal(webhook!.timeoutSeconds, 5);
    assert.equal(webhook!.reinvocationPolicy, "Never");
  });

  it("gives a labelled pod a BackupJob selects the agent as a native sidecar, once, read-only at the app's paths", async () => {
    const sent = shopPod(SELECTED);
    const pod = await createPod(sent);
    const sidecars = sidecarsOf(pod);
    assert.equal(sidecars.length, 1, "exactly one agent");
    const sidecar = sidecars[0]!;
    assert.equal(sidecar.restartPolicy, "Always");
    assert.equal(sidecar.image, "offsite/agent:test");
    const commandLine = sidecarCommandLine(sidecar);
    assert.equal(commandLine.role, "agent");
    assert.equal(commandLine.options.controlCerts, AGENT_CONTROL_CERTS_DIR);
    const mounts = Object.fromEntries((sidecar.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    assert.deepEqual(
      (sidecar.volumeMounts ?? [])
        .filter((m) => m.name !== CONTROL_VOLUME && m.name !== NO_TOKEN_VOLUME && m.name !== STATE_VOLUME)
        .map((m) => [m.name, m.mountPath, m.subPath ?? "", m.readOnly]),
      [
        ["uploads", "/var/www/uploads", "", true],
        ["cache", "/var/cache/nginx", "nginx", true],
      ],
    );
    assert.equal(mounts[AGENT_CONTROL_CERTS_DIR]?.readOnly, true);
    // Its own state (the receiver state cache) in an emptyDir, where --cache points.
    assert.equal(commandLine.options.cache, `${AGENT_STATE_DIR}/cache`);
    assert.equal(mounts[AGENT_STATE_DIR]?.name, STATE_VOLUME);
    const control = pod.spec?.volumes?.find((v) => v.name === CONTROL_VOLUME);
    assert.deepEqual([control?.secret?.secretName, control?.secret?.optional], [AGENT_CONTROL_SECRET, true]);
    assert.equal(pod.metadata?.annotations?.[INJECTED_ANNOTATION], "shop-backup");

    // The ServiceAccount plugin, run again after the webhook's patch, mounted the token
    // into the app's container but left the sidecar's empty directory in its place.
    const web = pod.spec!.containers.find((c) => c.name === "web")!;
    const appToken = web.volumeMounts?.find((m) => m.mountPath === SERVICE_ACCOUNT_TOKEN_DIR);
    assert.match(appToken?.name ?? "", /^kube-api-access-/, "the app keeps its token");
    assert.equal(mounts[SERVICE_ACCOUNT_TOKEN_DIR]?.name, NO_TOKEN_VOLUME, "the agent has none");
    // Everything the app asked for is as it was.
    const plain = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
    assert.deepEqual(plain(web.volumeMounts?.slice(0, 3)), sent.spec!.containers[0]!.volumeMounts);
    assert.equal(pod.spec?.containers.length, 1);
  });

  it("leaves a labelled pod no BackupJob selects, and an unlabelled one, as they were", async () => {
    const before = await admissions();
    const unselected = await createPod(shopPod({ app: "blog", [INJECT_LABEL]: "true" }));
    assert.equal(unselected.spec?.initContainers, undefined);
    assert.equal(unselected.metadata?.annotations?.[INJECTED_ANNOTATION], undefined);
    assert.equal(await admissions(), before + 1, "the webhook was asked and said no");

    const unlabelled = await createPod(shopPod({ app: "shop" }));
    assert.equal(unlabelled.spec?.initContainers, undefined);
    assert.equal(unlabelled.metadata?.annotations, undefined);
    assert.equal(await admissions(), before + 1, "the API server never asked: objectSelector");
  });

  it("never touches a Deployment: its template stays as written, only its pods would be mutated", async () => {
    const template = shopPod(SELECTED);
    const deployment = await cluster.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: cluster.namespace,
      body: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "shop" },
        spec: {
          selector: { matchLabels: SELECTED },
          template: { metadata: { labels: SELECTED }, spec: template.spec! },
        },
      },
    });
    assert.equal(deployment.spec?.template.spec?.initContainers, undefined);
    assert.equal(deployment.spec?.template.metadata?.annotations, undefined);
    assert.deepEqual(
      deployment.spec?.template.spec?.volumes?.map((v) => v.name),
      ["uploads", "config", "cache"],
    );
  });

  it("with the operator stopped, a labelled pod is still created, without the agent (failurePolicy Ignore)", async () => {
    assert.equal(await operator.stop("SIGTERM"), 0);
    const started = Date.now();
    const pod = await createPod(shopPod(SELECTED));
    const took = Date.now() - started;
    assert.equal(sidecarsOf(pod).length, 0);
    assert.equal(pod.metadata?.annotations?.[INJECTED_ANNOTATION], undefined);
    assert.ok(took < 6000, `created in ${took} ms: at worst the webhook's 5 s timeout`);
  });
});
