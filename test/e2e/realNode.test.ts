/**
 * The real test node end to end: a kubelet, containerd and kube-proxy on this machine run
 * the agent image built here. Proves the node becomes Ready, a receiver pod runs the real
 * `offsite receive` and is Ready by a real probe, its ClusterIP Service answers through
 * kube-proxy from the host and from another pod, cluster DNS resolves it by name, a
 * PVC binds to a local volume whose data outlives the pod, the test web app (test/webApp/)
 * serves uploads through its ClusterIP, and stopping leaves nothing.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { promisify } from "node:util";
import {
  realNodeUnavailable,
  startTestCluster,
  usingExistingCluster,
  type TestCluster,
} from "../cluster/testCluster.ts";
import { eventually } from "./fixtures/polling.ts";
import { idleContainer } from "./fixtures/idleContainer.ts";

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");
const RECEIVER_PORT = 5722;

// This suite is about our own node (its address, guard, teardown): on an existing cluster
// (OFFSITE_TEST_CLUSTER=existing) there is none to test.
const skip = usingExistingCluster() ? "tests the harness's own node" : realNodeUnavailable();

describe("real node", { skip }, () => {
  let cluster: (TestCluster & { stop(): Promise<void> }) | undefined;
  let work = "";
  let receiverCerts = "";
  let sourceCerts = "";
  let clusterIp = "";
  const serviceName = "receiver";

  const kubectl = async (args: string[], input?: string) => {
    const result = await cluster!.kubectl(["-n", cluster!.namespace, ...args], input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const apply = (object: object) => kubectl(["apply", "-f", "-"], JSON.stringify(object));

  const receiverPod = () => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "receiver", labels: { app: "receiver" } },
    spec: {
      terminationGracePeriodSeconds: 2,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
      containers: [
        {
          name: "receiver",
          image: cluster!.images!.agent.ref,
          imagePullPolicy: "Never",
          args: ["receive", "--root", "/data", "--certs", "/certs", "--port", String(RECEIVER_PORT)],
          ports: [{ containerPort: RECEIVER_PORT, name: "offsite" }],
          readinessProbe: { tcpSocket: { port: RECEIVER_PORT }, periodSeconds: 1 },
          securityContext: {
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ["ALL"] },
          },
          resources: { limits: { memory: "256Mi" } },
          volumeMounts: [
            { name: "data", mountPath: "/data" },
            { name: "certs", mountPath: "/certs", readOnly: true },
            { name: "tmp", mountPath: "/tmp" },
          ],
        },
      ],
      volumes: [
        { name: "data", persistentVolumeClaim: { claimName: "receiver-data" } },
        { name: "certs", secret: { secretName: "receiver-certs" } },
        { name: "tmp", emptyDir: {} },
      ],
    },
  });

  const waitReady = (pod: string) =>
    eventually(`pod ${pod} Ready`, async () => {
      const out = await kubectl([
        "get",
        "pod",
        pod,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      return out.trim() === "True" ? true : undefined;
    });

  /** Runs a Node script inside a pod (the agent image has Node and no shell). */
  const nodeIn = (pod: string, script: string) =>
    kubectl(["exec", pod, "--", "/nodejs/bin/node", "-e", script]);

  before(async () => {
    const started = performance.now();
    cluster = await startTestCluster({ node: "real", crds: false });
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(
      `[realNode] bring-up ${seconds.toFixed(1)} s; steps: ${JSON.stringify(cluster.node?.timings)}\n`,
    );
    work = mkdtempSync(join(tmpdir(), "offsite-e2e-"));
  });

  after(async () => {
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("registers a Ready node", async () => {
    const out = await kubectl(["get", "node", "offsite-node-0", "-o", "json"]);
    const node = JSON.parse(out) as {
      status: {
        conditions: { type: string; status: string }[];
        addresses: { type: string; address: string }[];
      };
    };
    assert.equal(node.status.conditions.find((c) => c.type === "Ready")?.status, "True");
    assert.deepEqual(
      node.status.addresses.find((a) => a.type === "InternalIP"),
      { type: "InternalIP", address: "198.18.0.1" },
    );
    // The guard that keeps our ranges off every other interface is in place.
    const { stdout: guard } = await execFileAsync("nft", ["list", "table", "inet", "offsite_guard"]);
    assert.match(guard, /ip saddr 198\.18\.0\.0\/15 drop/);
    assert.match(guard, /ip daddr 198\.18\.0\.0\/15 drop/);
  });

  it("runs the agent image's receiver as non-root on a read-only root, Ready by its probe", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: serviceName },
      spec: {
        selector: { app: "receiver" },
        ports: [{ name: "offsite", port: RECEIVER_PORT, targetPort: "offsite" }],
      },
    });
    clusterIp = (await kubectl(["get", "service", serviceName, "-o", "jsonpath={.spec.clusterIP}"])).trim();
    assert.match(clusterIp, /^198\.19\./);
    const dnsName = `${serviceName}.${cluster!.namespace}.svc`;
    const source = randomUUID();
    const certs = join(work, "certs");
    await execFileAsync(process.execPath, [
      join(ROOT, "agent", "main.mjs"),
      "certs",
      "--out",
      certs,
      "--host",
      dnsName,
      "--host",
      clusterIp,
      "--source",
      source,
    ]);
    receiverCerts = join(certs, "receiver");
    sourceCerts = join(certs, `source-${source}`);
    await kubectl([
      "create",
      "secret",
      "generic",
      "receiver-certs",
      `--from-file=ca.crt=${join(receiverCerts, "ca.crt")}`,
      `--from-file=tls.crt=${join(receiverCerts, "tls.crt")}`,
      `--from-file=tls.key=${join(receiverCerts, "tls.key")}`,
    ]);
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "receiver-data" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply(receiverPod());
    await waitReady("receiver");
    const status = JSON.parse(await kubectl(["get", "pod", "receiver", "-o", "json"])) as {
      status: { containerStatuses: { ready: boolean; state: { running?: object } }[] };
    };
    assert.ok(status.status.containerStatuses[0]?.state.running, "the receiver container is running");
    // The process inside is the agent, running as nonroot.
    const identity = await nodeIn("receiver", "console.log(process.getuid(), process.argv0)");
    assert.match(identity, /^65532 /);
    const pvc = await kubectl([
      "get",
      "pvc",
      "receiver-data",
      "-o",
      "jsonpath={.status.phase} {.spec.volumeName}",
    ]);
    assert.match(pvc, /^Bound offsite-local-\d+/);
  });

  it("answers on its ClusterIP from the host through kube-proxy, with TLS", async () => {
    const ca = readFileSync(join(sourceCerts, "ca.crt"));
    const cert = readFileSync(join(sourceCerts, "tls.crt"));
    const key = readFileSync(join(sourceCerts, "tls.key"));
    const authorized = await eventually(
      "a TLS handshake with the receiver via its ClusterIP",
      () =>
        new Promise<boolean | undefined>((resolve) => {
          const socket = connect({
            host: clusterIp,
            port: RECEIVER_PORT,
            ca,
            cert,
            key,
            servername: clusterIp,
            timeout: 3000,
          });
          socket.once("secureConnect", () => {
            resolve(socket.authorized || undefined);
            socket.destroy();
          });
          socket.once("error", () => resolve(undefined));
          socket.once("timeout", () => {
            socket.destroy();
            resolve(undefined);
          });
        }),
    );
    assert.equal(authorized, true);
  });

  it("is reached from another pod by its cluster DNS name", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "client" },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [idleContainer("client", cluster!.images!.agent.ref)],
      },
    });
    await waitReady("client");
    const name = `${serviceName}.${cluster!.namespace}.svc`;
    const script = `
      const dns = require("node:dns"), net = require("node:net");
      dns.lookup(${JSON.stringify(name)}, { family: 4 }, (error, address) => {
        if (error) { console.log(JSON.stringify({ error: error.code })); return; }
        const socket = net.connect(${RECEIVER_PORT}, ${JSON.stringify(name)}, () => {
          console.log(JSON.stringify({ address, connected: true })); socket.destroy();
        });
        socket.on("error", (e) => console.log(JSON.stringify({ address, error: e.code })));
      });`;
    const result = await eventually("DNS and a connection from the client pod", async () => {
      const parsed = JSON.parse(await nodeIn("client", script)) as { address?: string; connected?: boolean };
      return parsed.connected ? parsed : undefined;
    });
    assert.equal(result.address, clusterIp);
    // Names outside the cluster are not resolved: nothing is forwarded off the machine.
    const outside = await nodeIn(
      "client",
      `require("node:dns").lookup("example.com", (e) => console.log(e ? e.code : "resolved"))`,
    );
    assert.notEqual(outside.trim(), "resolved");
    // And pods have no default route: only 198.18/16 and 198.19/16 (and their own subnet).
    const routes = await nodeIn(
      "client",
      `process.stdout.write(require("node:fs").readFileSync("/proc/net/route", "utf8"))`,
    );
    const destinations = routes
      .trim()
      .split("\n")
      .slice(1)
      .map((line) => line.split(/\s+/)[1]);
    assert.ok(destinations.length > 0);
    assert.ok(!destinations.includes("00000000"), `no default route in a pod:\n${routes}`);
  });

  it("runs the operator image built from operator/Dockerfile", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "operator-help" },
      spec: {
        restartPolicy: "Never",
        securityContext: { runAsNonRoot: true },
        containers: [
          {
            name: "operator",
            image: cluster!.images!.operator.ref,
            imagePullPolicy: "Never",
            args: ["--help"],
            securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
          },
        ],
      },
    });
    const phase = await eventually("the operator pod to finish", async () => {
      const out = (await kubectl(["get", "pod", "operator-help", "-o", "jsonpath={.status.phase}"])).trim();
      return out === "Succeeded" || out === "Failed" ? out : undefined;
    });
    const logs = await kubectl(["logs", "operator-help"]);
    assert.equal(phase, "Succeeded", logs);
    assert.match(logs, /--metrics-address/);
  });

  it("keeps the PVC's data when the pod is deleted", async () => {
    await nodeIn("receiver", `require("node:fs").writeFileSync("/data/marker", "kept")`);
    await kubectl(["delete", "pod", "receiver", "--wait=true"]);
    await apply(receiverPod());
    await waitReady("receiver");
    const read = await nodeIn(
      "receiver",
      `process.stdout.write(require("node:fs").readFileSync("/data/marker", "utf8"))`,
    );
    assert.equal(read, "kept");
  });

  it("runs the test web app: Ready by its HTTP probe, files stored through its ClusterIP outlive its pod", async () => {
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "webapp-data" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "webapp" },
      spec: {
        replicas: 1,
        strategy: { type: "Recreate" },
        selector: { matchLabels: { app: "webapp" } },
        template: {
          metadata: { labels: { app: "webapp" } },
          spec: {
            terminationGracePeriodSeconds: 5,
            securityContext: { runAsNonRoot: true, fsGroup: 65532 },
            containers: [
              {
                name: "webapp",
                image: cluster!.images!.webApp.ref,
                imagePullPolicy: "Never",
                env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
                ports: [{ containerPort: 8080, name: "http" }],
                readinessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 1 },
                livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 5 },
                securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
                volumeMounts: [{ name: "data", mountPath: "/data" }],
              },
            ],
            volumes: [{ name: "data", persistentVolumeClaim: { claimName: "webapp-data" } }],
          },
        },
      },
    });
    await apply({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "webapp" },
      spec: { selector: { app: "webapp" }, ports: [{ port: 80, targetPort: "http" }] },
    });
    const ip = (await kubectl(["get", "service", "webapp", "-o", "jsonpath={.spec.clusterIP}"])).trim();
    assert.match(ip, /^198\.19\./);
    const podName = async () =>
      (await kubectl(["get", "pods", "-l", "app=webapp", "-o", "jsonpath={.items[0].metadata.name}"])).trim();
    /** GET / through the ClusterIP once the Service routes to a Ready pod named `pod`. */
    const whoAnswers = (pod: string) =>
      eventually(`the web app ${pod} answering on ${ip}`, async () => {
        const response = await fetch(`http://${ip}/`, { signal: AbortSignal.timeout(3000) }).catch(
          () => undefined,
        );
        if (!response?.ok) return undefined;
        const body = (await response.json()) as { pod: string; files: number };
        return body.pod === pod ? body : undefined;
      });
    const first = await podName();
    assert.deepEqual(await whoAnswers(first), { pod: first, files: 0 });

    const upload = Buffer.from(randomUUID().repeat(1000));
    const stored = await fetch(`http://${ip}/files/photo.jpg`, { method: "PUT", body: upload });
    assert.equal(stored.status, 201);
    const refused = await fetch(`http://${ip}/files/..%2Fescape`, { method: "PUT", body: "x" });
    assert.equal(refused.status, 404, "a name with a slash is refused");

    await kubectl(["delete", "pod", first, "--wait=true"]);
    const second = await eventually("a new web app pod", async () => {
      const name = await podName();
      return name && name !== first ? name : undefined;
    });
    assert.deepEqual(await whoAnswers(second), { pod: second, files: 1 });
    const served = await fetch(`http://${ip}/files/photo.jpg`);
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(upload), "the upload outlived its pod");
    assert.equal(await (await fetch(`http://${ip}/files`)).text(), "photo.jpg\n");
  });

  it("stops without leaving a process, mount, netns, link, chain or cgroup behind", async () => {
    const node = cluster!.node!;
    const pids = node.pids;
    assert.ok(pids.length >= 3);
    const started = performance.now();
    await cluster!.stop();
    cluster = undefined;
    process.stderr.write(
      `[realNode] teardown ${((performance.now() - started) / 1000).toFixed(1)} s; steps: ${JSON.stringify(node.timings)}\n`,
    );
    // Checked by stop() while the node still held the machine's lock (another suite's
    // node may start the moment it is released).
    assert.deepEqual(node.leftAfterStop, []);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), `process ${pid} is gone`);
  });
});
