/**
 * The ReplicationPair controller against a real API server, with its RBAC, and two real
 * `offsite agent` processes standing in for the pods' sidecars: the pods are API objects
 * bound to a node no kubelet runs (so nothing rewrites their status), whose status the
 * test writes — running sidecar, and a pod IP that is a loopback address of this host where
 * the agent listens on the control port. That status is the one thing not on the real path;
 * the real node's end-to-end test runs the pods.
 *
 * What it shows: a pair whose workloads do not exist says WorkloadNotFound; for a real one
 * the operator issues the pair's certificates, creates the standby agent's Service, points
 * the pair's Service at the primary's pods (leaving its ports alone), tells each agent its
 * role over the control channel, and reports what they do: here the standby Service's
 * name does not resolve on this host, so the primary journals and the pair says
 * StandbyUnreachable — the condition a user sees when the standby is away.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { DEFAULT_CONTROL_PORT, type ReplicationReport } from "../../contract/reports.ts";
import { GROUP, VERSION, type ReplicationPair } from "../../crds/definitions.ts";
import { SIDECAR_CONTAINER } from "../../operator/agentControl/names.ts";
import { fetchReplicationReport } from "../../operator/agentControl/controlClient.ts";
import { AGENT_STATE_DIR } from "../../operator/webhook/sidecarInjection.ts";
import { issueOperatorControlCertificate } from "../../pki/controlIdentities.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import { mountAgentControlSecret, operatorCaOf } from "./fixtures/controlChannel.ts";
import { listeningEvent } from "../agent/agentProcesses.ts";
import { operatorOptions } from "../agent/controlSupport.ts";
import {
  eventually,
  operatorServiceAccount,
  startOperator,
  type OperatorProcess,
} from "./operatorProcess.ts";

const cluster = useTestCluster({ controllers: true });
const MAIN = join(import.meta.dirname, "..", "..", "agent", "main.mjs");
const DAY = 86_400_000;
const PAIR = "web-pair";
const octet = () => 2 + Math.floor(Math.random() * 250);
/** Loopback addresses of this run's own, so the fixed control port collides with nothing. */
const PRIMARY_IP = `127.${octet()}.${octet()}.${octet()}`;
const STANDBY_IP = `127.${octet()}.${octet()}.${octet()}`;

const api = () => ({
  custom: cluster.kc.makeApiClient(CustomObjectsApi),
  core: cluster.kc.makeApiClient(CoreV1Api),
  apps: cluster.kc.makeApiClient(AppsV1Api),
});
const pairRef = { group: GROUP, version: VERSION, plural: "replicationpairs" };

async function getPair(name: string): Promise<ReplicationPair | undefined> {
  return (await api()
    .custom.getNamespacedCustomObject({ ...pairRef, namespace: cluster.namespace, name })
    .catch(() => undefined)) as ReplicationPair | undefined;
}
const ready = (pair: ReplicationPair | undefined) =>
  pair?.status?.conditions?.find((c) => c.type === "Ready");

async function createPair(name: string, primary: string, standby: string, root: string): Promise<void> {
  await api().custom.createNamespacedCustomObject({
    ...pairRef,
    namespace: cluster.namespace,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "ReplicationPair",
      metadata: { name },
      spec: {
        // The agents run on this host: their trees are the test's own directories.
        primary: { name: primary, path: join(root, "primary") },
        standby: { name: standby, path: join(root, "standby") },
        service: { name: "web" },
      },
    },
  });
}

/** A Deployment of no replicas: the pair reads its selector; the test makes its pod itself. */
async function createWorkload(name: string, side: string): Promise<void> {
  const labels = { app: "web", side };
  await api().apps.createNamespacedDeployment({
    namespace: cluster.namespace,
    body: {
      metadata: { name },
      spec: {
        replicas: 0,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: "web", image: "nginx" }] },
        },
      },
    },
  });
}

/** The workload's pod with the sidecar, on a node nothing runs, its status written as running at `ip`. */
async function createAgentPod(name: string, side: string, ip: string): Promise<void> {
  const namespace = cluster.namespace;
  const pod: V1Pod = {
    metadata: { name, labels: { app: "web", side } },
    spec: {
      nodeName: "no-kubelet-here",
      initContainers: [{ name: SIDECAR_CONTAINER, image: "offsite-agent", restartPolicy: "Always" }],
      containers: [{ name: "web", image: "nginx" }],
    },
  };
  await api().core.createNamespacedPod({ namespace, body: pod });
  const now = new Date().toISOString();
  await api().core.patchNamespacedPodStatus(
    {
      name,
      namespace,
      body: {
        status: {
          phase: "Running",
          podIP: ip,
          podIPs: [{ ip }],
          initContainerStatuses: [
            {
              name: SIDECAR_CONTAINER,
              image: "offsite-agent",
              imageID: "",
              ready: true,
              restartCount: 0,
              started: true,
              state: { running: { startedAt: now } },
            },
          ],
        },
      },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

interface Agent {
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startAgent(ip: string, controlCerts: string, extra: string[]): Promise<Agent> {
  const child = spawn(
    process.execPath,
    [
      MAIN,
      "agent",
      "--control-certs",
      controlCerts,
      "--host",
      ip,
      "--control-port",
      String(DEFAULT_CONTROL_PORT),
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await listeningEvent(child, [], `the agent at ${ip}`);
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

describe("the ReplicationPair controller", () => {
  let operator: OperatorProcess;
  let work = "";
  const agents: Agent[] = [];

  before(async () => {
    const namespace = cluster.namespace;
    const kubeconfig = await operatorServiceAccount(cluster);
    operator = await startOperator({
      kubeconfig,
      namespace,
      identity: "op-pairs",
    });
    work = mkdtempSync(join(tmpdir(), "offsite-pairs-"));
  });

  after(async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
    await operator?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
    // The primary's journal, where a pod's agent keeps it (an emptyDir there; this host here).
    rmSync(join(AGENT_STATE_DIR, PAIR), { recursive: true, force: true });
  });

  it("says WorkloadNotFound for a pair whose workloads do not exist, and creates nothing for it", async () => {
    await createPair("ghost-pair", "no-such-primary", "no-such-standby", work);
    const pair = await eventually(
      "WorkloadNotFound",
      async () => {
        const p = await getPair("ghost-pair");
        return ready(p)?.reason === "WorkloadNotFound" ? p : undefined;
      },
      60_000,
      [operator],
    );
    assert.equal(pair.status?.phase, "Pending");
    assert.match(ready(pair)!.message, /no-such-primary/);
    const services = await api().core.listNamespacedService({ namespace: cluster.namespace });
    assert.ok(!services.items.some((s) => s.metadata?.name === "ghost-pair-standby"));
  });

  it("issues the pair's certificates, points the Service at the primary, and tells each agent its role", async () => {
    const namespace = cluster.namespace;
    await createWorkload("web-a", "a");
    await createWorkload("web-b", "b");
    await api().core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: "web" },
        spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: 8080 }] },
      },
    });
    await createPair(PAIR, "web-a", "web-b", work);
    // No pods yet: the pair waits for them.
    await eventually(
      "NoPods",
      async () => ready(await getPair(PAIR))?.reason === "NoPods" || undefined,
      60_000,
      [operator],
    );
    const secret = await api().core.readNamespacedSecret({ name: `${PAIR}-replication`, namespace });
    for (const key of ["ca.crt", "primary.crt", "primary.key", "standby.crt", "standby.key"])
      assert.ok(secret.data?.[key], `the pair's Secret holds ${key}`);
    const standbyService = await api().core.readNamespacedService({ name: `${PAIR}-standby`, namespace });
    assert.deepEqual(standbyService.spec?.selector, { app: "web", side: "b" });
    assert.equal(standbyService.spec?.ports?.[0]?.port, 5725);
    const web = await api().core.readNamespacedService({ name: "web", namespace });
    assert.deepEqual(web.spec?.selector, { app: "web", side: "a" }, "the pair's Service selects the primary");
    assert.equal(web.spec?.ports?.[0]?.targetPort, 8080, "the Service's ports stay the user's");

    // The pods' agents, reachable on their pod IPs with the namespace's control certificate.
    const controlCerts = await mountAgentControlSecret(api().core, namespace, join(work, "control"));
    for (const dir of ["primary", "standby"]) mkdirSync(join(work, dir));
    writeFileSync(join(work, "primary", "index.html"), "<h1>web</h1>");
    agents.push(await startAgent(PRIMARY_IP, controlCerts, []));
    agents.push(await startAgent(STANDBY_IP, controlCerts, ["--allow-standby"]));
    await createAgentPod("web-a-0", "a", PRIMARY_IP);
    await createAgentPod("web-b-0", "b", STANDBY_IP);

    const pair = await eventually(
      "StandbyUnreachable (the Service's name resolves only in a cluster)",
      async () => {
        const p = await getPair(PAIR);
        return ready(p)?.reason === "StandbyUnreachable" ? p : undefined;
      },
      90_000,
      [operator],
    );
    assert.equal(pair.status?.phase, "Degraded");
    assert.equal(pair.status?.activeWorkload, "web-a");
    assert.ok(pair.status?.lastHeartbeat?.primary && pair.status.lastHeartbeat.standby);

    // What each agent was told, as it reports it.
    const operatorCa = await operatorCaOf(api().core, namespace);
    const options = operatorOptions({
      operatorCa,
      operator: await issueOperatorControlCertificate(operatorCa, DAY),
    } as Parameters<typeof operatorOptions>[0]);
    const reportOf = (host: string): Promise<ReplicationReport> =>
      fetchReplicationReport({ host, port: DEFAULT_CONTROL_PORT }, options);
    const primary = await reportOf(PRIMARY_IP);
    const standby = await reportOf(STANDBY_IP);
    assert.deepEqual([primary.role, primary.pair, primary.epoch], ["primary", pair.metadata.uid, 1]);
    assert.deepEqual([standby.role, standby.state], ["standby", "listening"]);
    assert.match(primary.message ?? "", new RegExp(`${PAIR}-standby`));
  });
});
