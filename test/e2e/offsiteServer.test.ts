/**
 * The OffsiteServer end to end on the real node, with the operator installed the way
 * users install it: `helm install` of helm/offsite from the images built here, running in
 * its own namespace with in-cluster configuration. The example OffsiteServer
 * (crds/examples/offsiteserver.yaml) gives a receiver pod that runs the real `offsite
 * receive`, Ready by its real probe; from the host, the real CLI pushes to the Service's
 * ClusterIP (through kube-proxy) with a client certificate from the server's CA and
 * restores byte for byte; the data is on the PVC under <site>/<source>/. Then restarts: the
 * restart annotation, SIGKILL of the receiver mid-push (the kubelet restarts it, the push
 * resumes), and a deleted
 * pod (the data stays, the next push sends only the change). Last, an image that refuses
 * the receiver's args gives Ready=False with reason CrashLoopBackOff and its last words.
 *
 * The host has no cluster DNS, so the CLI connects to the ClusterIP itself; the receiver's
 * certificate names that address beside `<server>.<namespace>.svc`, so TLS verifies it.
 * (Pods reach the same Service by name through CoreDNS: realNode.test.ts.)
 *
 * On an existing cluster (OFFSITE_TEST_CLUSTER=existing, kind) the same suite runs with
 * the images test/cluster/images/build.ts loaded there; the host reaches the receiver
 * through `kubectl port-forward` instead of the ClusterIP, and the kill -9 tests, which
 * need the node's runtime, are skipped (existingCluster.test.ts runs it that way here).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Resolver } from "node:dns/promises";
import {
  realNodeUnavailable,
  startTestCluster,
  usingExistingCluster,
  type TestCluster,
} from "../cluster/testCluster.ts";
import { caFromSecret, newSourceSecret } from "../../operator/offsiteServer/certificates.ts";
import type { V1Secret } from "@kubernetes/client-node";
import { eventually } from "./fixtures/polling.ts";
import {
  CHART,
  CLI,
  ROOT,
  helm as helmCommand,
  helmImageArgs as imageArgs,
  run,
  withDiagnostics as diagnosed,
  type Finished,
} from "./fixtures/operatorRelease.ts";
import { portForward, type PortForward } from "./fixtures/portForward.ts";

const CLUSTER_DNS = "198.19.0.10";
/** Where the receiver's address goes in a CLI command (offsite() fills it in). */
const TARGET = "<receiver>";
const RELEASE = "offsite";
const SERVER = "vault"; // crds/examples/offsiteserver.yaml
const POD = `${SERVER}-0`;
const PORT = 5722;
const SITE = "e2e-site";
const SOURCE = "e2e-source";
const MiB = 1024 * 1024;

/** Every regular file of a tree, relative path → content. */
function treeContents(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path));
    }
  };
  walk(dir);
  return out;
}

function assertSameTree(actual: string, expected: string): void {
  const a = treeContents(actual);
  const e = treeContents(expected);
  assert.deepEqual([...a.keys()].sort(), [...e.keys()].sort());
  for (const [path, content] of e) assert.ok(a.get(path)!.equals(content), `${path} differs`);
}

interface PushReport {
  outcome: string;
  version: string;
  base: string | null;
  resumed: boolean;
  files: { total: number; unchanged: number; sent: number };
}

interface PodStatus {
  metadata: { uid: string };
  spec: { containers: { image: string; imagePullPolicy: string }[] };
  status: {
    phase: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      ready: boolean;
      restartCount: number;
      state: { running?: { startedAt: string } };
    }[];
  };
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

const skip = realNodeUnavailable();
/** Our own node: the host reaches ClusterIPs and the node's processes. Not kind's. */
const ownNode = !usingExistingCluster();
const ownNodeOnly = ownNode
  ? undefined
  : "stops or kills a container process through the node's runtime, which only our own node exposes";

describe("OffsiteServer on the real node, operator installed by helm", { skip }, () => {
  let cluster: (TestCluster & { stop(): Promise<void> }) | undefined;
  let work = "";
  let operatorNamespace = "";
  let sourceCerts = "";
  let clusterIp = "";
  let suiteStarted = 0;
  const tree = () => join(work, "tree");

  const kubectl = async (args: string[], input?: string) => {
    const result = await cluster!.kubectl(args, input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const inSuite = (args: string[], input?: string) => kubectl(["-n", cluster!.namespace, ...args], input);
  const helm = (args: string[]) => helmCommand(cluster!, args);
  const helmImageArgs = () => imageArgs(cluster!);

  const pod = async (name = POD) =>
    JSON.parse(await inSuite(["get", "pod", name, "-o", "json"])) as PodStatus;
  const podReady = (p: PodStatus) => p.status.conditions?.find((c) => c.type === "Ready")?.status === "True";
  const serverCondition = async (name: string, type = "Ready") => {
    const server = JSON.parse(await inSuite(["get", "offsiteserver", name, "-o", "json"])) as {
      status?: { conditions?: Condition[]; endpoint?: string };
    };
    return server.status?.conditions?.find((c) => c.type === type);
  };
  /** Waits for the receiver pod (a new one when `notUid`) Ready and the OffsiteServer Ready=True. */
  const waitReceiverReady = async (notUid?: string) => {
    const ready = await eventually(`pod ${POD} Ready`, async () => {
      const p = await pod();
      return (notUid === undefined || p.metadata.uid !== notUid) && podReady(p) ? p : undefined;
    });
    await eventually(`OffsiteServer ${SERVER} Ready=True`, async () =>
      (await serverCondition(SERVER))?.status === "True" ? true : undefined,
    );
    return ready;
  };

  /**
   * The real CLI on the host, talking to the receiver: on our node through the Service's
   * ClusterIP (kube-proxy); on an existing cluster (kind), whose ClusterIPs the host cannot
   * reach, through `kubectl port-forward` to the Service, verifying the receiver's
   * certificate by the Service's name. `args` holds `TARGET` where the address goes.
   */
  const offsite = async (args: string[]): Promise<Finished> => {
    if (ownNode)
      return run(process.execPath, [CLI, ...args.map((a) => (a === TARGET ? `${clusterIp}:${PORT}` : a))]);
    let forward: PortForward;
    try {
      forward = await portForward(cluster!.kubeconfigPath, cluster!.namespace, SERVER, PORT);
    } catch (error) {
      return { code: 1, stdout: "", stderr: `cannot connect: ${(error as Error).message}` };
    }
    try {
      const withAddress = args.map((a) => (a === TARGET ? forward.address : a));
      return await run(process.execPath, [CLI, ...withAddress, "--tls-server-name", serviceName()]);
    } finally {
      forward.stop();
    }
  };
  const serviceName = () => `${SERVER}.${cluster!.namespace}.svc`;
  const push = () => offsite(["push", tree(), "--to", TARGET, "--certs", sourceCerts, "--json"]);
  const reportOf = (finished: Finished) => {
    assert.equal(finished.code, 0, `offsite exited ${finished.code}: ${finished.stderr}`);
    return JSON.parse(finished.stdout.trim().split("\n").at(-1)!) as PushReport;
  };
  /** A push once the Service routes to a ready receiver again (connection refusals retried). */
  const pushWhenReachable = () =>
    eventually(
      "a push the receiver accepts",
      async () => {
        const finished = await push();
        if (finished.code !== 0 && /cannot connect/.test(finished.stderr)) return undefined;
        return finished;
      },
      60_000,
      1000,
    );
  const restoreAndCompare = async (label: string) => {
    const into = join(work, `restored-${label}`);
    const restored = await offsite(["restore", "--from", TARGET, "--certs", sourceCerts, "--json", into]);
    assert.equal(restored.code, 0, restored.stderr);
    assertSameTree(into, tree());
    rmSync(into, { recursive: true, force: true });
  };
  /** Runs Node inside the receiver (the agent image has Node and no shell). */
  const nodeInReceiver = (script: string) =>
    inSuite(["exec", POD, "-c", "receiver", "--", "/nodejs/bin/node", "-e", script]);
  /** The host's path of the receiver's data volume (a local PV of the node). */
  const dataVolumePath = async () => {
    const volume = (
      await inSuite(["get", "pvc", `${SERVER}-data`, "-o", "jsonpath={.spec.volumeName}"])
    ).trim();
    return (await kubectl(["get", "pv", volume, "-o", "jsonpath={.spec.local.path}"])).trim();
  };

  const withDiagnostics = <T>(namespace: string, wait: () => Promise<T>): Promise<T> =>
    diagnosed(cluster!, namespace, wait);

  before(async () => {
    suiteStarted = performance.now();
    // crds: false: the chart installs the CRDs, as a user's `helm install` does (crds.enabled
    // defaults to true), so the chart's CRD path is what this suite exercises.
    cluster = await startTestCluster({
      node: "real",
      crds: false,
      realNode: { volumes: 2 },
    });
    const seconds = (performance.now() - suiteStarted) / 1000;
    process.stderr.write(
      `[offsiteServer] bring-up ${seconds.toFixed(1)} s; steps: ${JSON.stringify(cluster.node?.timings)}\n`,
    );
    work = mkdtempSync(join(tmpdir(), "offsite-e2e-server-"));
    operatorNamespace = `${cluster.namespace}-system`;
  });

  after(async () => {
    if (cluster && !ownNode) {
      // An existing cluster outlives the suite: the OffsiteServers go while the operator
      // still runs (it removes their finalizers), then the release and its namespace.
      await cluster.kubectl(["-n", cluster.namespace, "delete", "offsiteservers", "--all", "--timeout=120s"]);
      await helm(["uninstall", RELEASE, "-n", operatorNamespace, "--wait", "--timeout=120s"]);
      await cluster.kubectl(["delete", "namespace", operatorNamespace, "--wait=false"]);
    }
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
    process.stderr.write(
      `[offsiteServer] suite ${((performance.now() - suiteStarted) / 1000).toFixed(1)} s\n`,
    );
  });

  it("helm install refuses replicaCount=-1 and an unknown key, naming them", async () => {
    const args = ["install", "refused", CHART, "-n", "default", ...helmImageArgs()];
    const negative = await helm([...args, "--set", "replicaCount=-1"]);
    assert.notEqual(negative.code, 0);
    assert.match(negative.stderr, /replicaCount/);
    const unknown = await helm([...args, "--set", "replicaCuont=2"]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /replicaCuont/);
    const releases = await helm(["list", "-A", "-q"]);
    assert.equal(releases.stdout.trim(), "", "a refused install left no release");
  });

  it("helm install runs the operator Ready, in-cluster, holding its leader Lease", async () => {
    const started = performance.now();
    const installed = await helm([
      "install",
      RELEASE,
      CHART,
      "-n",
      operatorNamespace,
      "--create-namespace",
      ...helmImageArgs(),
    ]);
    assert.equal(installed.code, 0, installed.stderr);
    const inOperator = (args: string[]) => kubectl(["-n", operatorNamespace, ...args]);
    await withDiagnostics(operatorNamespace, () =>
      eventually("the operator Deployment Ready", async () =>
        (
          await inOperator(["get", "deployment", RELEASE, "-o", "jsonpath={.status.readyReplicas}"])
        ).trim() === "1"
          ? true
          : undefined,
      ),
    );
    process.stderr.write(
      `[offsiteServer] helm install to a Ready operator ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );
    const pods = JSON.parse(
      await inOperator(["get", "pods", "-l", `app.kubernetes.io/instance=${RELEASE}`, "-o", "json"]),
    ) as {
      items: {
        metadata: { name: string };
        spec: {
          containers: {
            image: string;
            env?: { name: string }[];
            readinessProbe?: { httpGet?: { path: string } };
            livenessProbe?: { httpGet?: { path: string } };
          }[];
        };
        status: { containerStatuses: { ready: boolean; restartCount: number }[] };
      }[];
    };
    assert.equal(pods.items.length, 1);
    const operatorPod = pods.items[0]!;
    const container = operatorPod.spec.containers[0]!;
    assert.equal(container.image, cluster!.images!.operator.ref);
    // Real HTTP probes decide readiness; no kubeconfig is given, so it runs in-cluster.
    assert.equal(container.readinessProbe?.httpGet?.path, "/readyz");
    assert.equal(container.livenessProbe?.httpGet?.path, "/healthz");
    assert.ok(!container.env?.some((e) => e.name === "KUBECONFIG" || e.name === "OFFSITE_KUBECONFIG"));
    assert.equal(operatorPod.status.containerStatuses[0]!.ready, true);
    assert.equal(operatorPod.status.containerStatuses[0]!.restartCount, 0);
    const holder = await eventually("the leader Lease held by the operator pod", async () => {
      const out = await inOperator(["get", "lease", RELEASE, "-o", "jsonpath={.spec.holderIdentity}"]);
      return out.trim() === operatorPod.metadata.name ? out.trim() : undefined;
    });
    assert.equal(holder, operatorPod.metadata.name);
  });

  it("the example OffsiteServer gives a receiver Running and Ready by its probe; Ready=True only then", async () => {
    const started = performance.now();
    await inSuite(["apply", "-f", join(ROOT, "crds", "examples", "offsiteserver.yaml")]);
    const seen: string[] = [];
    await withDiagnostics(cluster!.namespace, () =>
      eventually(
        "OffsiteServer Ready=True",
        async () => {
          const condition = await serverCondition(SERVER);
          if (condition?.status !== "True") return undefined;
          // Ready=True: the pod must be Ready by its probe at this point.
          const p = await pod();
          seen.push(`${condition.status}/${podReady(p)}`);
          assert.ok(podReady(p), "OffsiteServer Ready=True while its pod is not Ready");
          return true;
        },
        180_000,
      ),
    );
    process.stderr.write(
      `[offsiteServer] OffsiteServer applied to Ready ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );
    const p = await pod();
    assert.equal(p.status.phase, "Running");
    assert.ok(p.status.containerStatuses?.[0]?.state.running, "the receiver container runs");
    // The operator's --agent-image is the image imported here; without a pull policy in
    // the pod spec, Kubernetes defaults a non-latest tag to IfNotPresent: no registry needed.
    assert.equal(p.spec.containers[0]!.image, cluster!.images!.agent.ref);
    assert.equal(p.spec.containers[0]!.imagePullPolicy, "IfNotPresent");
    // The process in the container is the receiver, non-root.
    const identity = await nodeInReceiver(
      `process.stdout.write(process.getuid() + " " + require("node:fs").readFileSync("/proc/1/cmdline", "utf8").split("\\0").join(" "))`,
    );
    assert.match(identity, /^65532 .*agent\/main\.mjs receive /);
    const endpointInStatus = JSON.parse(
      await inSuite(["get", "offsiteserver", SERVER, "-o", "jsonpath={.status}"]),
    ) as { endpoint?: string };
    assert.equal(endpointInStatus.endpoint, `${serviceName()}:${PORT}`);
  });

  it("offsite push from the host to the Service (its ClusterIP; port-forward on kind) backs up a tree; restore gives it back byte for byte", async () => {
    clusterIp = (await inSuite(["get", "service", SERVER, "-o", "jsonpath={.spec.clusterIP}"])).trim();
    if (ownNode) {
      assert.match(clusterIp, /^198\.19\./);
      // The status endpoint's name resolves, through cluster DNS, to the same ClusterIP the
      // CLI connects to (kube-proxy); the certificate names both.
      const resolver = new Resolver();
      resolver.setServers([CLUSTER_DNS]);
      assert.deepEqual(await resolver.resolve4(`${serviceName()}.cluster.local`), [clusterIp]);
    }

    // A client certificate for one source, issued by the OffsiteServer's CA with the
    // operator's own helper (as the BackupJob controller will).
    const caSecret = JSON.parse(await inSuite(["get", "secret", `${SERVER}-ca`, "-o", "json"])) as V1Secret;
    const ca = caFromSecret(caSecret);
    assert.ok(ca, "the CA Secret holds tls.crt and tls.key");
    const serverObject = JSON.parse(await inSuite(["get", "offsiteserver", SERVER, "-o", "json"])) as {
      metadata: { uid: string };
    };
    const secret = await newSourceSecret(
      { name: SERVER, namespace: cluster!.namespace, uid: serverObject.metadata.uid },
      ca,
      SITE,
      SOURCE,
      24 * 3600 * 1000,
    );
    sourceCerts = join(work, "source-certs");
    mkdirSync(sourceCerts);
    for (const [key, value] of Object.entries(secret.data!))
      writeFileSync(join(sourceCerts, key), Buffer.from(value, "base64"), { mode: 0o600 });

    mkdirSync(join(tree(), "db", "wal"), { recursive: true });
    mkdirSync(join(tree(), "etc"), { recursive: true });
    writeFileSync(join(tree(), "etc", "app.conf"), "listen = 0.0.0.0\n");
    writeFileSync(join(tree(), "db", "base.bin"), randomBytes(3 * MiB));
    for (let i = 0; i < 50; i++)
      writeFileSync(join(tree(), "db", "wal", `${i}.log`), randomBytes(1000 + i * 97));
    writeFileSync(join(tree(), "empty"), "");

    const report = reportOf(await push());
    assert.equal(report.outcome, "succeeded");
    assert.equal(report.base, null);
    assert.equal(report.files.sent, 53);
    await restoreAndCompare("first");

    // On the PVC, under <site>/<source>/versions/<version>.
    const listed = JSON.parse(
      await nodeInReceiver(
        `const fs = require("node:fs"); const d = "/data/${SITE}/${SOURCE}/versions";
         console.log(JSON.stringify({ versions: fs.readdirSync(d), conf: fs.readFileSync(d + "/${report.version}/tree/etc/app.conf", "utf8") }))`,
      ),
    ) as { versions: string[]; conf: string };
    assert.ok(listed.versions.includes(report.version), JSON.stringify(listed.versions));
    assert.equal(listed.conf, "listen = 0.0.0.0\n");
    if (ownNode) {
      const onHost = readdirSync(join(await dataVolumePath(), SITE, SOURCE, "versions"));
      assert.ok(onHost.includes(report.version), "the version is on the node's local volume");
    }
  });

  it("the restart annotation restarts the receiver (a new pod, a new container start)", async () => {
    const before = await pod();
    const startedBefore = before.status.containerStatuses![0]!.state.running!.startedAt;
    await inSuite([
      "annotate",
      "offsiteserver",
      SERVER,
      `offsite.dev/restart-at=${new Date().toISOString()}`,
      "--overwrite",
    ]);
    const after = await waitReceiverReady(before.metadata.uid);
    const startedAfter = after.status.containerStatuses![0]!.state.running!.startedAt;
    assert.ok(Date.parse(startedAfter) > Date.parse(startedBefore), `${startedAfter} after ${startedBefore}`);
    // The data is still there.
    const report = reportOf(await pushWhenReachable());
    assert.equal(report.files.sent, 0);
  });

  it("deleting the receiver pod keeps the data: the next push sends only the change", async () => {
    const before = await pod();
    await inSuite(["delete", "pod", POD, "--wait=true"]);
    writeFileSync(join(tree(), "etc", "app.conf"), "listen = 198.18.0.1\n");
    await waitReceiverReady(before.metadata.uid);
    const report = reportOf(await pushWhenReachable());
    assert.notEqual(report.base, null);
    assert.equal(report.files.sent, 1);
    assert.equal(report.files.unchanged, report.files.total - 1);
    await restoreAndCompare("after-delete");
  });

  /** The receiver container's PID 1 as the host sees it (through the node's CRI): the receiver itself. */
  const receiverPid = async () => {
    const containerId = (
      await cluster!.node!.crictl([
        "ps",
        "-q",
        "--name",
        "^receiver$",
        "--label",
        `io.kubernetes.pod.namespace=${cluster!.namespace}`,
        "--label",
        `io.kubernetes.pod.name=${POD}`,
      ])
    ).stdout.trim();
    assert.match(containerId, /^[0-9a-f]{64}$/);
    const inspected = JSON.parse((await cluster!.node!.crictl(["inspect", containerId])).stdout) as {
      info: { pid: number };
    };
    const pid = inspected.info.pid;
    assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /receive/);
    return pid;
  };

  let restartsBeforeKill = -1;
  it(
    "kill -9 of the receiver process mid-push: the push fails, the kubelet restarts the container",
    { skip: ownNodeOnly },
    async () => {
      writeFileSync(join(tree(), "db", "large.bin"), randomBytes(384 * MiB));
      const before = await pod();
      restartsBeforeKill = before.status.containerStatuses![0]!.restartCount;
      const pid = await receiverPid();

      const partial = join(await dataVolumePath(), SITE, SOURCE, "staging", "partial", "data");
      const interrupted = push();
      const staged = await eventually(
        "the large file partly staged",
        async () => {
          try {
            const size = statSync(partial).size;
            return size >= 32 * MiB ? size : undefined;
          } catch {
            return undefined;
          }
        },
        60_000,
        20,
      );
      process.kill(pid, "SIGKILL");
      const killed = await interrupted;
      assert.notEqual(killed.code, 0, `the push finished despite the kill: ${killed.stdout}`);
      process.stderr.write(
        `[offsiteServer] killed the receiver with ${(staged / MiB).toFixed(0)} MiB staged\n`,
      );

      const restarted = await eventually("the receiver container restarted and Ready", async () => {
        const p = await pod();
        const status = p.status.containerStatuses?.[0];
        return status && status.restartCount > restartsBeforeKill && podReady(p) ? p : undefined;
      });
      assert.equal(restarted.metadata.uid, before.metadata.uid, "the same pod: the container was restarted");
      await eventually(`OffsiteServer ${SERVER} Ready=True again`, async () =>
        (await serverCondition(SERVER))?.status === "True" ? true : undefined,
      );
    },
  );

  it(
    // The receiver runs as 65532 with capabilities dropped, as the operator runs it: it must
    // reopen the data it staged (this failed with EACCES while staged data was 0444).
    "the interrupted push resumes after the restart, and the restore verifies",
    { skip: ownNodeOnly },
    async () => {
      assert.ok(restartsBeforeKill >= 0, "runs after the kill test");
      const report = reportOf(await pushWhenReachable());
      assert.equal(report.resumed, true, "the staged part was resumed");
      assert.equal(report.files.sent, 1);
      await restoreAndCompare("resumed");
    },
  );

  it(
    "a hung receiver (SIGSTOP) fails its HTTP liveness probe and the kubelet restarts it",
    { skip: ownNodeOnly },
    async () => {
      const before = await pod();
      const restarts = before.status.containerStatuses![0]!.restartCount;
      // Stopped, it still has its TCP port open (the kernel accepts): only an HTTP probe,
      // answered by its event loop, can tell it hangs.
      process.kill(await receiverPid(), "SIGSTOP");
      const started = performance.now();
      const restarted = await eventually(
        "the kubelet restarting the hung receiver",
        async () => {
          const p = await pod();
          const status = p.status.containerStatuses?.[0];
          return status && status.restartCount > restarts && podReady(p) ? p : undefined;
        },
        240_000,
        1000,
      );
      process.stderr.write(
        `[offsiteServer] hung receiver restarted after ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
      );
      assert.equal(restarted.metadata.uid, before.metadata.uid, "the same pod: the container was restarted");
      const events = JSON.parse(
        await inSuite(["get", "events", "--field-selector", `involvedObject.name=${POD}`, "-o", "json"]),
      ) as { items: { reason: string; message: string }[] };
      assert.ok(
        events.items.some((e) => e.reason === "Unhealthy" && /Liveness probe failed/.test(e.message)),
        JSON.stringify(events.items.map((e) => `${e.reason}: ${e.message}`)),
      );
      const report = reportOf(await pushWhenReachable());
      assert.equal(report.files.sent, 0, "it serves its data again");
    },
  );

  it("a receiver image that refuses its arguments: Ready=False, CrashLoopBackOff, with its last words", async () => {
    // The operator image's entrypoint is the operator: given `receive --root=...` it exits 2.
    await inSuite(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "offsite.dev/v1alpha1",
        kind: "OffsiteServer",
        metadata: { name: "broken" },
        spec: { image: cluster!.images!.operator.ref, storage: { size: "1Gi" } },
      }),
    );
    const condition = await withDiagnostics(cluster!.namespace, () =>
      eventually(
        "OffsiteServer broken Ready=False reason CrashLoopBackOff",
        async () => {
          const ready = await serverCondition("broken");
          assert.notEqual(ready?.status, "True", "a crash-looping receiver is never Ready");
          return ready?.reason === "CrashLoopBackOff" ? ready : undefined;
        },
        120_000,
      ),
    );
    assert.equal(condition.status, "False");
    assert.match(condition.message ?? "", /exited with code 2/);
    assert.match(condition.message ?? "", /Unexpected argument 'receive'/);
    const phase = (
      await inSuite(["get", "offsiteserver", "broken", "-o", "jsonpath={.status.phase}"])
    ).trim();
    assert.equal(phase, "Degraded");
  });
});
