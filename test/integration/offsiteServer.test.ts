/**
 * The operator and the OffsiteServer reconciler on a real control plane with
 * controller-manager, scheduler and kwok: objects, readiness, convergence, deletion,
 * invalid specs and conflicts. Leader election and crashes: operatorHa.test.ts.
 * One control plane serves every case (each costs seconds to start), hence one long file.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1OwnerReference,
} from "@kubernetes/client-node";
import { GROUP, VERSION, type OffsiteServer } from "../../crds/definitions.ts";
import { installCrds } from "../../crds/install.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import {
  eventually,
  operatorServiceAccount,
  startOperator,
  type OperatorProcess,
} from "./operatorProcess.ts";

const cluster = useTestCluster({ controllers: true });
let operator: OperatorProcess;

const api = () => ({
  custom: cluster.kc.makeApiClient(CustomObjectsApi),
  core: cluster.kc.makeApiClient(CoreV1Api),
  apps: cluster.kc.makeApiClient(AppsV1Api),
});
const ref = (name: string) => ({
  group: GROUP,
  version: VERSION,
  namespace: cluster.namespace,
  plural: "offsiteservers",
  name,
});

async function createServer(name: string, spec: Record<string, unknown> = {}): Promise<OffsiteServer> {
  return (await api().custom.createNamespacedCustomObject({
    ...ref(name),
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: "OffsiteServer", metadata: { name }, spec },
  })) as OffsiteServer;
}

async function getServer(name: string): Promise<OffsiteServer | undefined> {
  return (await api()
    .custom.getNamespacedCustomObject(ref(name))
    .catch(() => undefined)) as OffsiteServer | undefined;
}

async function patchServer(name: string, body: object): Promise<void> {
  await api().custom.patchNamespacedCustomObject(
    { ...ref(name), body },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

const readyCondition = (server: OffsiteServer | undefined) =>
  server?.status?.conditions?.find((c) => c.type === "Ready");

async function untilReady(
  name: string,
  condition: (s: OffsiteServer) => boolean = () => true,
): Promise<OffsiteServer> {
  return eventually(
    `OffsiteServer ${name} Ready`,
    async () => {
      const server = await getServer(name);
      return server && readyCondition(server)?.status === "True" && condition(server) ? server : undefined;
    },
    60_000,
    [operator],
  );
}

const ownedBy = (refs: V1OwnerReference[] | undefined, server: OffsiteServer) =>
  refs?.some((r) => r.kind === "OffsiteServer" && r.uid === server.metadata.uid && r.controller === true) ===
  true;

describe("OffsiteServer", () => {
  // Suite hooks run after the file-level ones that start the cluster. The operator runs
  // as a ServiceAccount bound to operator/deploy/rbac.yaml: a missing rule fails here.
  before(async () => {
    const namespace = cluster.namespace;
    const kubeconfig = await operatorServiceAccount(cluster);
    operator = await startOperator({ kubeconfig, namespace, identity: "op-a" });
  });
  after(async () => {
    await operator?.stop();
  });
  it("creates the receiver StatefulSet, data claim, Service and Secrets, and reports Ready with its endpoint", async () => {
    const created = await createServer("vault", { storage: { size: "5Gi" } });
    const server = await untilReady("vault");
    const { core, apps } = api();
    const namespace = cluster.namespace;

    const sts = await apps.readNamespacedStatefulSet({ name: "vault", namespace });
    assert.ok(ownedBy(sts.metadata?.ownerReferences, created));
    const container = sts.spec!.template.spec!.containers[0]!;
    assert.equal(container.image, "offsite/agent:test");
    assert.equal(container.ports?.[0]?.containerPort, 5722);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);

    const service = await core.readNamespacedService({ name: "vault", namespace });
    assert.ok(ownedBy(service.metadata?.ownerReferences, created));
    assert.equal(service.spec?.type, "ClusterIP");
    assert.equal(service.spec?.ports?.[0]?.port, 5722);

    const claim = await core.readNamespacedPersistentVolumeClaim({ name: "vault-data", namespace });
    assert.equal(claim.spec?.resources?.requests?.storage, "5Gi");
    assert.equal(claim.metadata?.ownerReferences, undefined, "the data claim is never garbage-collected");
    assert.equal(claim.status?.phase, "Bound");

    const ca = await core.readNamespacedSecret({ name: "vault-ca", namespace });
    const tls = await core.readNamespacedSecret({ name: "vault-tls", namespace });
    assert.ok(
      ownedBy(ca.metadata?.ownerReferences, created) && ownedBy(tls.metadata?.ownerReferences, created),
    );
    const certificate = new X509Certificate(Buffer.from(tls.data!["tls.crt"]!, "base64"));
    assert.ok(certificate.checkHost(`vault.${namespace}.svc`));
    assert.ok(certificate.verify(new X509Certificate(Buffer.from(ca.data!["tls.crt"]!, "base64")).publicKey));

    assert.equal(server.status?.phase, "Ready");
    assert.equal(server.status?.endpoint, `vault.${namespace}.svc:5722`);
    assert.equal(readyCondition(server)?.observedGeneration, server.metadata.generation);
    assert.ok(server.metadata.finalizers?.includes("offsite.dev/finalizer"));

    // Ready comes from the pod (status.ts): kwok reports it Running with Ready=True.
    const pod = await core.readNamespacedPod({ name: "vault-0", namespace });
    assert.equal(pod.status?.phase, "Running");
    assert.equal(pod.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
    assert.equal(readyCondition(server)?.reason, "ReceiverReady");
    const events = await core.listNamespacedEvent({ namespace, fieldSelector: "involvedObject.name=vault" });
    const reasons = events.items.map((e) => e.reason);
    for (const reason of ["CertificateAuthorityCreated", "CertificateIssued", "ReceiverReady"]) {
      assert.ok(reasons.includes(reason), `event ${reason} in ${reasons.join(",")}`);
    }
  });

  it("converges spec changes: port, volume growth, Service type, restart request", async () => {
    await patchServer("vault", {
      metadata: { annotations: { "offsite.dev/restart-at": "2026-11-21T12:00:00Z" } },
      spec: { port: 6000, storage: { size: "8Gi" }, service: { type: "NodePort" } },
    });
    const server = await untilReady(
      "vault",
      (s) => s.status?.observedGeneration === s.metadata.generation && s.status?.restartedAt !== undefined,
    );
    const { core, apps } = api();
    const namespace = cluster.namespace;
    const sts = await apps.readNamespacedStatefulSet({ name: "vault", namespace });
    assert.equal(sts.spec!.template.spec!.containers[0]!.ports?.[0]?.containerPort, 6000);
    assert.equal(
      sts.spec!.template.metadata?.annotations?.["offsite.dev/restarted-at"],
      "2026-11-21T12:00:00Z",
    );
    const service = await core.readNamespacedService({ name: "vault", namespace });
    assert.equal(service.spec?.type, "NodePort");
    assert.equal(service.spec?.ports?.[0]?.port, 6000);
    const claim = await core.readNamespacedPersistentVolumeClaim({ name: "vault-data", namespace });
    assert.equal(claim.spec?.resources?.requests?.storage, "8Gi");
    assert.match(server.status?.endpoint ?? "", new RegExp(`:${service.spec?.ports?.[0]?.nodePort}$`));
    assert.equal(server.status?.restartedAt, "2026-11-21T12:00:00Z");

    // Shrinking is refused and reported, not attempted.
    await patchServer("vault", { spec: { storage: { size: "1Gi" } } });
    const degraded = await eventually("Degraded StorageShrinkRefused", async () => {
      const s = await getServer("vault");
      return s?.status?.conditions?.find((c) => c.type === "Degraded" && c.reason === "StorageShrinkRefused")
        ? s
        : undefined;
    });
    assert.equal(degraded.status?.phase, "Degraded");
    const unchanged = await core.readNamespacedPersistentVolumeClaim({ name: "vault-data", namespace });
    assert.equal(unchanged.spec?.resources?.requests?.storage, "8Gi");
    await patchServer("vault", { spec: { storage: { size: "8Gi" } } });
    await untilReady("vault", (s) => s.status?.phase === "Ready");
  });

  it("on deletion runs the finalizer: owned objects go, the data claim stays with Retain and goes with Delete", async () => {
    const namespace = cluster.namespace;
    const { core, apps } = api();
    await createServer("scratch", { retainPolicy: "Delete", storage: { size: "1Gi" } });
    await untilReady("scratch");
    await api().custom.deleteNamespacedCustomObject(ref("vault"));
    await api().custom.deleteNamespacedCustomObject(ref("scratch"));
    await eventually("both OffsiteServers gone", async () =>
      (await getServer("vault")) || (await getServer("scratch")) ? undefined : true,
    );
    await eventually("owned objects garbage-collected", async () => {
      const sts = await apps.listNamespacedStatefulSet({ namespace });
      const secrets = await core.listNamespacedSecret({
        namespace,
        labelSelector: "offsite.dev/offsiteserver",
      });
      return sts.items.length === 0 && secrets.items.length === 0 ? true : undefined;
    });
    const kept = await core.readNamespacedPersistentVolumeClaim({ name: "vault-data", namespace });
    assert.equal(kept.metadata?.deletionTimestamp, undefined, "Retain keeps the data claim");
    await eventually("scratch-data deleted (retainPolicy: Delete)", async () =>
      (await core.readNamespacedPersistentVolumeClaim({ name: "scratch-data", namespace }).then(
        (c) => c.metadata?.deletionTimestamp !== undefined,
        () => true,
      ))
        ? true
        : undefined,
    );
    const events = await core.listNamespacedEvent({ namespace, fieldSelector: "reason=Finalized" });
    assert.equal(events.items.length, 2);
  });

  it("reports a spec that slipped past the schema as Ready=False InvalidSpec, without a crash or a retry loop", async () => {
    // An older, permissive CRD let a bad object in; then the current CRD came back.
    const crd = "offsiteservers.offsite.dev";
    const loose = await cluster.kubectl([
      "patch",
      "crd",
      crd,
      "--type=json",
      "-p",
      JSON.stringify([
        {
          op: "replace",
          path: "/spec/versions/0/schema/openAPIV3Schema/properties/spec",
          value: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
        },
      ]),
    ]);
    assert.equal(loose.code, 0, loose.stderr);
    await eventually("the loose schema to be served", async () => {
      try {
        await createServer("bad-port", { port: 80 });
        return true;
      } catch {
        return undefined;
      }
    });
    await installCrds(cluster.kc);
    const server = await eventually("InvalidSpec", async () => {
      const s = await getServer("bad-port");
      return readyCondition(s)?.reason === "InvalidSpec" ? s : undefined;
    });
    assert.equal(readyCondition(server)?.status, "False");
    assert.match(readyCondition(server)?.message ?? "", /port: port must be a registered port in 1024-49151/);
    const errorsBefore =
      (await operator.metric("offsite_reconcile_errors_total", { kind: "OffsiteServer" })) ?? 0;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const errorsAfter =
      (await operator.metric("offsite_reconcile_errors_total", { kind: "OffsiteServer" })) ?? 0;
    assert.equal(errorsAfter, errorsBefore, "an invalid spec is not an error to retry");
    assert.equal(operator.child.exitCode, null, "the operator still runs");
    const sts = await api()
      .apps.readNamespacedStatefulSet({ name: "bad-port", namespace: cluster.namespace })
      .catch(() => undefined);
    assert.equal(sts, undefined, "nothing was created for the invalid spec");
    await api().custom.deleteNamespacedCustomObject(ref("bad-port"));
  });

  it("retries conflicting writes with back-off and still converges", async () => {
    await createServer("busy");
    // Change the object as fast as we can while the operator reconciles it: its
    // resourceVersion-guarded writes meet 409 Conflict and must be retried.
    const stopAt = Date.now() + 4000;
    let n = 0;
    while (Date.now() < stopAt) {
      await patchServer("busy", { metadata: { annotations: { "test.offsite.dev/churn": String(n++) } } });
    }
    await untilReady("busy");
    const conflicts = await operator.metric("offsite_reconcile_errors_total", {
      kind: "OffsiteServer",
      reason: "Conflict",
    });
    assert.ok((conflicts ?? 0) >= 1, `expected at least one Conflict retried, saw ${conflicts}`);
    const retries = operator
      .logLines()
      .filter((l) => l.msg === "reconcile failed; retrying" && l.reason === "Conflict");
    assert.ok(retries.some((l) => l.name === "busy" && l.namespace === cluster.namespace));
    assert.ok(
      retries.every(
        (l) => typeof l.retryInMs === "number" && typeof l.name === "string" && l.kind === "OffsiteServer",
      ),
      "log lines carry the object and the back-off",
    );
  });

  it("reports a step the API server refuses as Ready=False with the API's reason and message and a Warning Event, until the spec is fixed", async () => {
    // The CRD accepts any annotation key; a Service does not: applying it is a 422.
    await createServer("refused", {
      storage: { size: "1Gi" },
      service: { annotations: { "bad key!": "x" } },
    });
    const namespace = cluster.namespace;
    const server = await eventually(
      "Ready=False Invalid",
      async () => {
        const s = await getServer("refused");
        return readyCondition(s)?.reason === "Invalid" ? s : undefined;
      },
      60_000,
      [operator],
    );
    const ready = readyCondition(server)!;
    assert.equal(ready.status, "False");
    assert.match(
      ready.message,
      new RegExp(`applying Service ${namespace}/refused failed: .*bad key!.*\\(HTTP 422\\)`),
    );
    assert.equal(ready.observedGeneration, server.metadata.generation);
    assert.equal(server.status?.observedGeneration, server.metadata.generation);
    assert.equal(server.status?.phase, "Degraded");
    const warning = await eventually("a Warning Event with reason Invalid", async () => {
      const events = await api().core.listNamespacedEvent({
        namespace,
        fieldSelector: "involvedObject.name=refused,reason=Invalid",
      });
      return events.items.find((e) => e.type === "Warning" && e.involvedObject.kind === "OffsiteServer");
    });
    assert.match(warning.message ?? "", /bad key!/);
    const errors = await operator.metric("offsite_reconcile_errors_total", {
      kind: "OffsiteServer",
      reason: "Invalid",
    });
    assert.ok((errors ?? 0) >= 1, "counted as a failed reconcile with the API's reason");

    await patchServer("refused", { spec: { service: { annotations: { "bad key!": null } } } });
    const fixed = await untilReady("refused", (s) => s.status?.observedGeneration === s.metadata.generation);
    assert.equal(fixed.status?.phase, "Ready");
    await api().custom.deleteNamespacedCustomObject(ref("refused"));
    await eventually("refused gone", async () => ((await getServer("refused")) ? undefined : true));
  });

  it("reports a receiver pod the scheduler cannot place as Ready=False with the scheduler's reason", async () => {
    // The pod watch end to end (RBAC, cache, mapping back by label): no node has this label.
    await createServer("nowhere", {
      storage: { size: "1Gi" },
      nodeSelector: { "offsite.dev/no-such": "node" },
    });
    const server = await eventually(
      "Ready=False Unschedulable",
      async () => {
        const s = await getServer("nowhere");
        return readyCondition(s)?.reason === "Unschedulable" ? s : undefined;
      },
      60_000,
      [operator],
    );
    const ready = readyCondition(server)!;
    assert.equal(ready.status, "False");
    assert.match(ready.message, /Pod nowhere-0 cannot be scheduled: .*node.*Check spec\.nodeSelector/);
    assert.equal(server.status?.phase, "Provisioning");
    await api().custom.deleteNamespacedCustomObject(ref("nowhere"));
    await eventually("nowhere gone", async () => ((await getServer("nowhere")) ? undefined : true));
  });

  it("exposes its metrics on /metrics with Prometheus names", async () => {
    const text = await operator.metrics();
    for (const name of [
      "offsite_reconcile_total",
      "offsite_reconcile_errors_total",
      "offsite_reconcile_duration_seconds_bucket",
      "offsite_workqueue_depth",
      "offsite_leader_is_leader",
      "offsite_offsiteserver_ready",
      "offsite_offsiteserver_capacity_bytes",
      "offsite_certificate_expiry_timestamp_seconds",
    ]) {
      assert.match(text, new RegExp(`^${name}`, "m"), name);
    }
    // Series exist from the start for every label value the operator knows, whether or
    // not anything has happened to them yet (a watch restart, a Forbidden error).
    for (const resource of [
      "offsiteservers",
      "statefulsets",
      "services",
      "secrets",
      "persistentvolumeclaims",
      "pods",
    ]) {
      const restarts = await operator.metric("offsite_watch_restarts_total", { resource });
      assert.ok(
        restarts !== undefined && restarts >= 0,
        `offsite_watch_restarts_total{resource="${resource}"}`,
      );
    }
    for (const reason of ["Conflict", "Invalid", "Forbidden", "Unexpected"]) {
      const errors = await operator.metric("offsite_reconcile_errors_total", {
        kind: "OffsiteServer",
        reason,
      });
      assert.ok(errors !== undefined, `offsite_reconcile_errors_total{reason="${reason}"}`);
    }
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => ({ name: m[1]!, type: m[2]! }));
    for (const family of families) {
      assert.match(family.name, /^offsite_/, `${family.name} has the offsite_ prefix`);
      if (family.type === "counter")
        assert.match(family.name, /_total$/, `counter ${family.name} ends in _total`);
    }
    assert.equal(await operator.metric("offsite_leader_is_leader"), 1);
    // The gauge follows the server's Ready as reconciles see it: the churn above may still
    // be rolling its (simulated) pod, so it is 1 once the last reconcile has seen it Ready.
    await eventually("offsite_offsiteserver_ready{name=busy} 1", async () =>
      (await operator.metric("offsite_offsiteserver_ready", { name: "busy" })) === 1 ? true : undefined,
    );
    const health = await fetch(
      operator.child.spawnargs
        .find((a) => a.startsWith("--metrics-address="))!
        .replace("--metrics-address=", "http://") + "/healthz",
    );
    assert.equal(health.status, 200);
  });
});
