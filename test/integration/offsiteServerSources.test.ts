/**
 * OffsiteServer.status.sources end to end: the operator as a host process against a real
 * API server, and a real `offsite receive` process standing in for the receiver pod.
 *
 * The operator reaches a receiver by its pod's IP, and kwok's pods run nothing, so the
 * receiver process listens on a loopback address of its own (127.x.y.z: every one of
 * them is this host) with the control certificate the operator issued into the
 * namespace's offsite-agent-control Secret, and the test writes that address into the
 * kwok pod's status.podIP — the one thing that is not the real path. Until then the pod's
 * IP is kwok's, which nothing answers: the failed poll is the first thing checked.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { DEFAULT_CONTROL_PORT, type JobRequest } from "../../contract/reports.ts";
import { GROUP, VERSION, type OffsiteServer } from "../../crds/definitions.ts";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import { issueOperatorControlCertificate } from "../../pki/controlIdentities.ts";
import { AGENT_CONTROL_SECRET } from "../../operator/agentControl/names.ts";
import { runJob } from "../../operator/agentControl/controlClient.ts";
import { failureOfCode } from "../../operator/backupJob/runs.ts";
import { MIN_POLL_INTERVAL_MS } from "../../operator/offsiteServer/receiverPoll.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import { mountAgentControlSecret, operatorCaOf } from "./fixtures/controlChannel.ts";
import { runOffsite } from "../agent/agentProcesses.ts";
import {
  operatorOptions,
  startAgentProcess,
  writeCertsDir,
  type AgentProcess,
} from "../agent/controlSupport.ts";
import {
  eventually,
  operatorServiceAccount,
  startOperator,
  type OperatorProcess,
} from "./operatorProcess.ts";

const cluster = useTestCluster({ controllers: true });
const MAIN = join(import.meta.dirname, "..", "..", "agent", "main.mjs");
const DAY = 86_400_000;

const SITE = "shop-eu";
const ORDERS = "orders-db";
const BILLING = "billing-db";
const HELD = "old-uploads";
const SERVER = "checkins";
/** A loopback address of this run's own, so the fixed control port collides with nothing. */
const ADDRESS = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;

const api = () => ({
  custom: cluster.kc.makeApiClient(CustomObjectsApi),
  core: cluster.kc.makeApiClient(CoreV1Api),
});
const serverRef = { group: GROUP, version: VERSION, plural: "offsiteservers", name: SERVER };

async function getServer(): Promise<OffsiteServer | undefined> {
  return (await api()
    .custom.getNamespacedCustomObject({ ...serverRef, namespace: cluster.namespace })
    .catch(() => undefined)) as OffsiteServer | undefined;
}
const conditionOf = (server: OffsiteServer | undefined, type: string) =>
  server?.status?.conditions?.find((c) => c.type === type);
const sourceOf = (server: OffsiteServer | undefined, source: string) =>
  server?.status?.sources?.find((s) => s.source === source);

async function createBackupJob(name: string, source: string): Promise<void> {
  await api().custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "backupjobs",
    namespace: cluster.namespace,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "BackupJob",
      metadata: { name },
      spec: {
        // No pod carries this label: the job never runs, it only says the source should push here.
        source: { podSelector: { matchLabels: { app: "nothing-here" } }, guid: source },
        siteGUID: SITE,
        target: { offsiteServer: { name: SERVER } },
        schedule: "0 * * * *",
      },
    },
  });
}

interface Receiver {
  child: ChildProcess;
  port: number;
  controlPort: number;
  stop(): Promise<void>;
}

async function startReceiver(root: string, certs: string, controlCerts: string): Promise<Receiver> {
  const child = spawn(
    process.execPath,
    [
      MAIN,
      "receive",
      "--root",
      root,
      "--certs",
      certs,
      "--host",
      ADDRESS,
      "--port",
      "0",
      "--control-port",
      String(DEFAULT_CONTROL_PORT),
      "--control-certs",
      controlCerts,
      "--suspended-source",
      HELD,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let buffered = "";
  const listening = await new Promise<{ port: number; controlPort: number }>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the receiver exited with ${code}:\n${buffered}`)));
    child.stderr.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n")) {
        if (!line.includes('"listening"')) continue;
        const event = JSON.parse(line) as { port: number; controlPort: number };
        resolve(event);
      }
    });
  });
  return {
    child,
    ...listening,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

describe("OffsiteServer.status.sources from the receiver's check-ins", () => {
  let operator: OperatorProcess;
  let work: string;
  let receiver: Receiver | undefined;
  let agent: AgentProcess | undefined;
  let dataCa: CertificateAndKey;
  const tree = (source: string) => join(work, "data", source);
  const clientCerts = (source: string) => join(work, "certs", source);

  before(async () => {
    const namespace = cluster.namespace;
    const kubeconfig = await operatorServiceAccount(cluster);
    operator = await startOperator({
      kubeconfig,
      namespace,
      identity: "op-sources",
    });

    // The data plane's certificates: the receiver's for its loopback address, a source's each.
    work = mkdtempSync(join(tmpdir(), "offsite-sources-"));
    dataCa = await createCertificateAuthority("test receiver CA", DAY);
    const serving = await issueCertificate(dataCa, {
      commonName: ADDRESS,
      hosts: [ADDRESS],
      usage: "server",
      validForMs: DAY,
    });
    writeCertsDir(join(work, "receiver"), dataCa, serving);
    for (const source of [ORDERS, HELD]) {
      const client = await issueCertificate(dataCa, {
        commonName: source,
        organizations: [SITE],
        usage: "client",
        validForMs: DAY,
      });
      writeCertsDir(clientCerts(source), dataCa, client);
      mkdirSync(tree(source), { recursive: true });
      writeFileSync(join(tree(source), "a.txt"), `${source} 1\n`);
    }
  });

  after(async () => {
    await receiver?.stop();
    await agent?.stop();
    await operator?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("lists the sources BackupJobs send here and suspended ones, and says the receiver did not answer", async () => {
    await api().custom.createNamespacedCustomObject({
      ...serverRef,
      namespace: cluster.namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "OffsiteServer",
        metadata: { name: SERVER },
        spec: { storage: { size: "1Gi" }, suspendedSources: [HELD] },
      },
    });
    await createBackupJob("orders", ORDERS);
    await createBackupJob("billing", BILLING);
    const server = await eventually(
      "Ready, with a failed poll and the expected sources",
      async () => {
        const s = await getServer();
        return conditionOf(s, "Ready")?.status === "True" &&
          conditionOf(s, "SourcesReported")?.status === "False" &&
          conditionOf(s, "SourcesReported")?.reason !== "ReceiverNotReady" &&
          s?.status?.sources?.length === 3
          ? s
          : undefined;
      },
      90_000,
      [operator],
    );
    const namespace = cluster.namespace;
    assert.deepEqual(
      server.status?.sources?.map((s) => [s.site, s.source, s.state, s.name]),
      [
        ["*", HELD, "Suspended", undefined],
        [SITE, BILLING, "NeverCheckedIn", `${namespace}/billing`],
        [SITE, ORDERS, "NeverCheckedIn", `${namespace}/orders`],
      ],
    );
    const reported = conditionOf(server, "SourcesReported")!;
    assert.match(reported.reason, /^(ReceiverUnreachable|ControlTlsFailed|ReportTimedOut)$/);
    assert.match(reported.message, new RegExp(`:${DEFAULT_CONTROL_PORT} failed: `));
    // The pod mounts the control Secret the reconcile issued into the namespace.
    const secret = await api().core.readNamespacedSecret({ name: AGENT_CONTROL_SECRET, namespace });
    assert.ok(secret.data?.["tls.crt"] && secret.data["tls.key"] && secret.data["ca.crt"]);
    assert.equal(
      await operator.metric("offsite_offsiteserver_sources", { name: SERVER, state: "NeverCheckedIn" }),
      2,
    );
  });

  it("takes the receiver's report: check-ins, versions, bytes, used capacity, and the states", async () => {
    const namespace = cluster.namespace;
    const controlCerts = await mountAgentControlSecret(api().core, namespace, join(work, "control"));
    receiver = await startReceiver(join(work, "store"), join(work, "receiver"), controlCerts);
    assert.equal(receiver.controlPort, DEFAULT_CONTROL_PORT);
    const to = `${ADDRESS}:${receiver.port}`;
    const pushed = await runOffsite([
      "push",
      tree(ORDERS),
      "--to",
      to,
      "--certs",
      clientCerts(ORDERS),
      "--json",
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);

    // The suspended source's push, as a BackupJob's agent runs it: refused with `suspended`,
    // which the BackupJob controller reports as SourceSuspended with the receiver's advice.
    const operatorCa = await operatorCaOf(api().core, namespace);
    agent = await startAgentProcess(controlCerts, [], false);
    const held = await issueCertificate(dataCa, {
      commonName: HELD,
      organizations: [SITE],
      usage: "client",
      validForMs: DAY,
    });
    const request: JobRequest = {
      jobId: "held-1",
      mode: "push",
      site: SITE,
      source: HELD,
      path: tree(HELD),
      target: { endpoint: to, caCertificate: dataCa.certificatePem },
      credentials: { certificate: held.certificatePem, privateKey: held.privateKeyPem },
      filters: { include: [], exclude: [] },
      contentFirewall: {
        enabled: false,
        blockExecutables: false,
        blockScripts: false,
        blockPatterns: [],
        allowPatterns: [],
      },
      checksum: false,
      deadlineMs: 30_000,
    };
    const result = await runJob(
      { host: "127.0.0.1", port: agent.controlPort },
      request,
      operatorOptions({
        operatorCa,
        operator: await issueOperatorControlCertificate(operatorCa, DAY),
      } as Parameters<typeof operatorOptions>[0]),
    );
    assert.deepEqual([result.outcome, result.code], ["failed", "suspended"]);
    const failure = failureOfCode(result.code, result.message);
    assert.equal(failure.reason, "SourceSuspended");
    assert.match(
      failure.message,
      /spec\.suspendedSources of its OffsiteServer.*remove it from the list to push again/,
    );

    // Now the pod's IP is the receiver's: the next reconcile (this pod change) asks it.
    const pod = `${SERVER}-0`;
    await api().core.patchNamespacedPodStatus(
      { name: pod, namespace, body: { status: { podIP: ADDRESS, podIPs: [{ ip: ADDRESS }] } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const server = await eventually(
      "SourcesReported True",
      async () => {
        const s = await getServer();
        return conditionOf(s, "SourcesReported")?.status === "True" ? s : undefined;
      },
      60_000,
      [operator],
    );
    const podNow = await api().core.readNamespacedPod({ name: pod, namespace });
    assert.equal(podNow.status?.podIP, ADDRESS, "kwok left the pod's IP as patched");

    const orders = sourceOf(server, ORDERS)!;
    assert.equal(orders.state, "Online");
    assert.equal(orders.name, `${namespace}/orders`);
    assert.equal(orders.site, SITE);
    assert.equal(orders.versions, 1);
    assert.equal(
      orders.latestVersion,
      (JSON.parse(pushed.stdout.trim().split("\n").at(-1)!) as { version: string }).version,
    );
    assert.ok((orders.bytesStored ?? 0) > 0);
    assert.ok(Date.now() - new Date(orders.lastCheckIn!).getTime() < 120_000);
    assert.equal(sourceOf(server, BILLING)?.state, "NeverCheckedIn");
    // The receiver saw the suspended source's refused session, so it is known by its site now.
    assert.deepEqual(
      server.status?.sources?.map((s) => [s.site, s.source, s.state]),
      [
        [SITE, BILLING, "NeverCheckedIn"],
        [SITE, HELD, "Suspended"],
        [SITE, ORDERS, "Online"],
      ],
    );
    assert.ok((server.status?.capacity?.usedBytes ?? 0) > 0);
    assert.ok(server.status?.capacity?.reportedAt);
    assert.ok((server.status?.capacity?.totalBytes ?? 0) > 0, "the claim's size");

    await eventually("the metrics follow status", async () => {
      const states = await Promise.all(
        ["Online", "Offline", "NeverCheckedIn", "Suspended"].map((state) =>
          operator.metric("offsite_offsiteserver_sources", { namespace, name: SERVER, state }),
        ),
      );
      const used = await operator.metric("offsite_offsiteserver_used_bytes", { namespace, name: SERVER });
      return JSON.stringify(states) === JSON.stringify([1, 0, 1, 1]) &&
        used === server.status?.capacity?.usedBytes
        ? true
        : undefined;
    });
  });

  it("asks again every 30 s while the receiver is Ready", async () => {
    writeFileSync(join(tree(ORDERS), "a.txt"), `${ORDERS} 2\n`);
    const to = `${ADDRESS}:${receiver!.port}`;
    const pushed = await runOffsite([
      "push",
      tree(ORDERS),
      "--to",
      to,
      "--certs",
      clientCerts(ORDERS),
      "--json",
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);
    // Nothing in the cluster changes: only the periodic poll can bring the second version.
    const server = await eventually(
      "the second version in status",
      async () => {
        const s = await getServer();
        return sourceOf(s, ORDERS)?.versions === 2 ? s : undefined;
      },
      50_000,
      [operator],
    );
    assert.equal(conditionOf(server, "SourcesReported")?.status, "True");
  });

  it("keeps the last report when the receiver stops answering, and says so", async () => {
    const before = await getServer();
    await receiver!.stop();
    receiver = undefined;
    // A reconcile within MIN_POLL_INTERVAL_MS of the last poll reuses its answer (its own
    // status write is a change too): past it, a reconcile asks again.
    await new Promise((resolve) => setTimeout(resolve, MIN_POLL_INTERVAL_MS));
    // Any change of the OffsiteServer is a reconcile, and every reconcile asks the receiver.
    await api().custom.patchNamespacedCustomObject(
      {
        ...serverRef,
        namespace: cluster.namespace,
        body: { metadata: { annotations: { "test.offsite.dev/poke": "1" } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const server = await eventually(
      "SourcesReported False",
      async () => {
        const s = await getServer();
        return conditionOf(s, "SourcesReported")?.status === "False" ? s : undefined;
      },
      20_000,
      [operator],
    );
    const reported = conditionOf(server, "SourcesReported")!;
    assert.equal(reported.reason, "ReceiverUnreachable");
    assert.match(reported.message, /ECONNREFUSED/);
    assert.match(reported.message, /keep the report of /);
    assert.deepEqual(server.status?.sources, before?.status?.sources, "the sources are never cleared");
    assert.deepEqual(server.status?.capacity, before?.status?.capacity);
  });
});
