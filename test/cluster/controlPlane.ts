/**
 * A throwaway Kubernetes control plane on loopback: etcd and kube-apiserver with a fresh
 * CA and an admin client certificate, and on request kube-controller-manager,
 * kube-scheduler and kwok with one fake Node, so Deployments and StatefulSets get Pods
 * that become Ready (kwok fakes pod status; no container runs).
 *
 * The subtle part is teardown: every process is a ManagedProcess, killed on stop() and,
 * as a safety net, when the test process exits however it exits.
 */
import { createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createCertificateAuthority,
  createPrivateKey,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import { binaryPath } from "./binaries.ts";
import { ManagedProcess, releaseOnExit, removeOnExit } from "./managedProcess.ts";
import { NODE_NETWORK, inOurCgroups, sweepOnNextStart } from "./node/hostState.ts";
import { RealNode, type RealNodeOptions } from "./node/realNode.ts";

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager, kube-scheduler and kwok with one fake Node. */
  controllers?: boolean;
  /**
   * The node pods run on (implies `controllers`): "kwok" (default) fakes pod status and
   * runs nothing; "real" runs a real kubelet, containerd, kube-proxy and CoreDNS on this
   * machine (root, Linux; see test/cluster/node/), one at a time per machine.
   */
  node?: "kwok" | "real";
  /** Settings of the real node. */
  realNode?: RealNodeOptions;
  /** How long to wait for each component to become healthy. */
  startTimeoutMs?: number;
}

const DAY_MS = 24 * 3600 * 1000;

/** A TCP port that is free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function kubeconfigYaml(
  server: string,
  ca: string,
  client: CertificateAndKey,
  user = "admin",
): string {
  const b64 = (text: string) => Buffer.from(text).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: offsite-test",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(ca)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${b64(client.certificatePem)}`,
    `    client-key-data: ${b64(client.privateKeyPem)}`,
    "contexts:",
    "- name: offsite-test",
    "  context:",
    "    cluster: offsite-test",
    `    user: ${user}`,
    "current-context: offsite-test",
    "",
  ].join("\n");
}

export class ControlPlane {
  readonly dir: string;
  readonly processes: ManagedProcess[] = [];
  server = "";
  kubeconfigPath = "";
  private ca!: CertificateAndKey;
  private admin!: CertificateAndKey;
  /** The real node, when one was asked for. */
  node: RealNode | undefined;

  private readonly options: ControlPlaneOptions;

  private constructor(options: ControlPlaneOptions) {
    this.options = options;
    this.dir = mkdtempSync(join(process.env.OFFSITE_TEST_TMPDIR ?? tmpdir(), "offsite-cp-"));
    removeOnExit(this.dir);
  }

  /** Starts a control plane; on any failure everything started so far is stopped again. */
  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const plane = new ControlPlane(options);
    try {
      await plane.startAll();
      return plane;
    } catch (error) {
      await plane.stop();
      throw error;
    }
  }

  /** The PIDs of every process started, for tests that prove teardown. */
  get pids(): number[] {
    return this.processes.map((p) => p.pid).filter((pid): pid is number => pid !== undefined);
  }

  private spawn(name: string, args: string[]): ManagedProcess {
    const binary = binaryPath(name as never);
    // With a real node, the control plane joins the node's cgroups too: a run killed with
    // SIGKILL leaves no API server behind either, the next run's sweep ends it.
    const command = this.node ? inOurCgroups(binary, args) : { command: binary, args };
    const process_ = new ManagedProcess(name, command.command, command.args, join(this.dir, `${name}.log`));
    this.processes.push(process_);
    return process_;
  }

  private async startAll(): Promise<void> {
    const timeout = this.options.startTimeoutMs ?? 60_000;
    const real = this.options.node === "real";
    // The node's bridge holds the address the API server binds, so the node comes first.
    if (real) {
      this.node = await RealNode.prepare(this.options.realNode);
      sweepOnNextStart(this.dir);
    }
    await this.writePki();

    const etcdPort = await freePort();
    const etcdPeerPort = await freePort();
    const etcd = this.spawn("etcd", [
      "--name=offsite-test",
      `--data-dir=${join(this.dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=offsite-test=http://127.0.0.1:${etcdPeerPort}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
    ]);
    await this.waitFor(etcd, timeout, async () => {
      const response = await fetch(`http://127.0.0.1:${etcdPort}/health`).catch(() => undefined);
      return response?.ok === true;
    });

    const apiPort = await freePort();
    // Pods reach the API server through the `kubernetes` Service, whose endpoint is the
    // advertised address: with a real node that is the node IP, not loopback.
    const apiAddress = real ? NODE_NETWORK.nodeIp : "127.0.0.1";
    this.server = `https://${apiAddress}:${apiPort}`;
    const realNodeFlags = real
      ? [
          `--service-cluster-ip-range=${NODE_NETWORK.serviceCidr}`,
          "--authorization-mode=Node,RBAC",
          "--enable-admission-plugins=NodeRestriction",
          `--kubelet-client-certificate=${join(this.dir, "kubelet-client.crt")}`,
          `--kubelet-client-key=${join(this.dir, "kubelet-client.key")}`,
          "--kubelet-preferred-address-types=InternalIP",
        ]
      : ["--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=RBAC"];
    const apiserver = this.spawn("kube-apiserver", [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${apiPort}`,
      `--bind-address=${apiAddress}`,
      `--advertise-address=${apiAddress}`,
      `--cert-dir=${join(this.dir, "apiserver-certs")}`,
      `--tls-cert-file=${join(this.dir, "serving.crt")}`,
      `--tls-private-key-file=${join(this.dir, "serving.key")}`,
      `--client-ca-file=${join(this.dir, "ca.crt")}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(this.dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(this.dir, "sa.key")}`,
      ...realNodeFlags,
      "--allow-privileged=true",
      "--enable-priority-and-fairness=false",
      "--v=1",
    ]);
    await this.waitFor(apiserver, timeout, () => this.apiReady());

    if (this.options.controllers || real) await this.startControllers(timeout);
    if (this.node) {
      await this.node.join({
        server: this.server,
        ca: this.ca,
        kubeconfig: (user, client) => kubeconfigYaml(this.server, this.ca.certificatePem, client, user),
        kubectl: (args, input) => this.kubectl(args, input),
      });
    }
  }

  private async writePki(): Promise<void> {
    this.ca = await createCertificateAuthority("offsite-test-ca", DAY_MS);
    const serving = await issueCertificate(this.ca, {
      commonName: "kube-apiserver",
      hosts: [
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        ...(this.options.node === "real" ? [NODE_NETWORK.apiServiceIp, NODE_NETWORK.nodeIp] : ["10.96.0.1"]),
      ],
      usage: "server",
      validForMs: DAY_MS,
    });
    this.admin = await issueCertificate(this.ca, {
      commonName: "offsite-test-admin",
      organizations: ["system:masters"],
      usage: "client",
      validForMs: DAY_MS,
    });
    if (this.options.node === "real") {
      // The API server's identity towards kubelets (logs, exec, port-forward).
      const kubeletClient = await issueCertificate(this.ca, {
        commonName: "kube-apiserver-kubelet-client",
        organizations: ["system:masters"],
        usage: "client",
        validForMs: DAY_MS,
      });
      writeFileSync(join(this.dir, "kubelet-client.crt"), kubeletClient.certificatePem);
      writeFileSync(join(this.dir, "kubelet-client.key"), kubeletClient.privateKeyPem, { mode: 0o600 });
    }
    const serviceAccountKey = await createPrivateKey();
    writeFileSync(join(this.dir, "ca.crt"), this.ca.certificatePem);
    writeFileSync(join(this.dir, "ca.key"), this.ca.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(this.dir, "serving.crt"), serving.certificatePem);
    writeFileSync(join(this.dir, "serving.key"), serving.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(this.dir, "sa.key"), serviceAccountKey, { mode: 0o600 });
    // The API server verifies tokens with the public half; it does not derive it from a PKCS#8 key.
    writeFileSync(
      join(this.dir, "sa.pub"),
      createPublicKey(serviceAccountKey).export({ type: "spki", format: "pem" }),
    );
  }

  private async apiReady(): Promise<boolean> {
    return new Promise((resolve) => {
      const req = request(
        `${this.server}/readyz`,
        {
          ca: this.ca.certificatePem,
          cert: this.admin.certificatePem,
          key: this.admin.privateKeyPem,
          timeout: 2000,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        },
      );
      req.on("error", () => resolve(false));
      req.on("timeout", () => req.destroy());
      req.end();
    });
  }

  private async startControllers(timeout: number): Promise<void> {
    this.kubeconfigPath ||= this.writeKubeconfig();
    const kc = this.kubeconfigPath;
    const manager = this.spawn("kube-controller-manager", [
      `--kubeconfig=${kc}`,
      `--authentication-kubeconfig=${kc}`,
      `--authorization-kubeconfig=${kc}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${await freePort()}`,
      `--cert-dir=${join(this.dir, "kcm-certs")}`,
      `--service-account-private-key-file=${join(this.dir, "sa.key")}`,
      `--root-ca-file=${join(this.dir, "ca.crt")}`,
      `--cluster-signing-cert-file=${join(this.dir, "ca.crt")}`,
      `--cluster-signing-key-file=${join(this.dir, "ca.key")}`,
      "--use-service-account-credentials=false",
      "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service,-route",
      // kwok nodes report Ready; a short grace keeps node lifecycle from evicting while they start.
      "--node-monitor-grace-period=60s",
      "--concurrent-deployment-syncs=5",
      "--v=1",
    ]);
    const scheduler = this.spawn("kube-scheduler", [
      `--kubeconfig=${kc}`,
      `--authentication-kubeconfig=${kc}`,
      `--authorization-kubeconfig=${kc}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${await freePort()}`,
      `--cert-dir=${join(this.dir, "scheduler-certs")}`,
      "--v=1",
    ]);
    if (this.options.node === "real") {
      // The real node registers itself; its kubelet makes pods Ready, its volumes come with it.
      await this.waitFor(manager, timeout, async () => {
        const out = await this.kubectl(["get", "serviceaccount", "default", "-n", "default", "-o", "name"]);
        return out.code === 0;
      });
      if (!scheduler.running) throw new Error(`kube-scheduler exited during start-up:\n${scheduler.tail()}`);
      return;
    }
    const kwok = this.spawn("kwok", [
      `--kubeconfig=${kc}`,
      "--manage-all-nodes=true",
      `--server-address=127.0.0.1:${await freePort()}`,
      "--node-ip=10.244.0.1",
      "--cidr=10.244.0.0/16",
      // Heartbeats by node Lease (renewed every 10 s). Without it kwok posts node status
      // about once a minute, and the node lifecycle controller (grace 60 s) marks every pod
      // NotReady about a minute into a suite, which kwok never undoes.
      "--node-lease-duration-seconds=40",
    ]);
    await this.applyFakeNode(timeout);
    await this.applyVolumePool();
    // Ready when the controllers made the default ServiceAccount, which every Pod needs.
    await this.waitFor(manager, timeout, async () => {
      const out = await this.kubectl(["get", "serviceaccount", "default", "-n", "default", "-o", "name"]);
      return out.code === 0;
    });
    for (const p of [scheduler, kwok]) {
      if (!p.running) throw new Error(`${p.name} exited during start-up:\n${p.tail()}`);
    }
  }

  private async applyFakeNode(timeout: number): Promise<void> {
    const node = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: "kwok-node-0",
        annotations: { "node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake" },
        labels: {
          "kubernetes.io/hostname": "kwok-node-0",
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": "amd64",
          type: "kwok",
        },
      },
      status: {
        allocatable: { cpu: "32", memory: "256Gi", pods: "250" },
        capacity: { cpu: "32", memory: "256Gi", pods: "250" },
      },
    };
    const applied = await this.kubectl(["apply", "-f", "-"], JSON.stringify(node));
    if (applied.code !== 0) throw new Error(`creating the fake node failed: ${applied.stderr}`);
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const ready = await this.kubectl([
        "get",
        "node",
        "kwok-node-0",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      if (ready.stdout.trim() === "True") return;
      await sleep(250);
    }
    throw new Error(
      `kwok did not make the fake node Ready within ${timeout} ms:\n${this.processes.at(-1)?.tail()}`,
    );
  }

  /**
   * No volume provisioner runs here, so a default StorageClass that allows expansion and
   * a pool of pre-made PersistentVolumes stand in: the real PV controller binds claims to
   * them, and claims can be grown (the resize request is recorded; nothing resizes).
   */
  private async applyVolumePool(size = 16): Promise<void> {
    const objects: object[] = [
      {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: {
          name: "offsite-test",
          annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        provisioner: "offsite.dev/test-pool",
        allowVolumeExpansion: true,
        volumeBindingMode: "Immediate",
        reclaimPolicy: "Retain",
      },
    ];
    for (let i = 0; i < size; i++) {
      objects.push({
        apiVersion: "v1",
        kind: "PersistentVolume",
        metadata: { name: `offsite-test-pv-${i}` },
        spec: {
          capacity: { storage: "1Ti" },
          accessModes: ["ReadWriteOnce"],
          persistentVolumeReclaimPolicy: "Retain",
          storageClassName: "offsite-test",
          hostPath: { path: join(this.dir, "volumes", String(i)) },
        },
      });
    }
    const list = JSON.stringify({ apiVersion: "v1", kind: "List", items: objects });
    const applied = await this.kubectl(["apply", "-f", "-"], list);
    if (applied.code !== 0) throw new Error(`creating the volume pool failed: ${applied.stderr}`);
  }

  private async waitFor(
    process_: ManagedProcess,
    timeoutMs: number,
    healthy: () => Promise<boolean>,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!process_.running) throw new Error(`${process_.name} exited during start-up:\n${process_.tail()}`);
      if (await healthy()) return;
      await sleep(100);
    }
    throw new Error(`${process_.name} was not healthy after ${timeoutMs} ms:\n${process_.tail()}`);
  }

  /** The admin kubeconfig, as YAML. */
  kubeconfigYaml(): string {
    return kubeconfigYaml(this.server, this.ca.certificatePem, this.admin);
  }

  /** Writes and returns the admin kubeconfig inside the control plane's directory. */
  writeKubeconfig(): string {
    const path = join(this.dir, "kubeconfig");
    writeFileSync(path, this.kubeconfigYaml(), { mode: 0o600 });
    this.kubeconfigPath = path;
    return path;
  }

  /** Runs the real kubectl against this control plane. */
  async kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    this.kubeconfigPath ||= this.writeKubeconfig();
    return runKubectl(this.kubeconfigPath, args, input);
  }

  /** Stops every process (newest first) and removes the directory. Safe to call twice. */
  async stop(): Promise<void> {
    // The node first: kubelet must not see its API server go, and pods must be removed
    // through the runtime while it still runs.
    await this.node?.stopDaemons();
    for (const p of [...this.processes].reverse()) await p.stop();
    await this.node?.stop();
    if (!process.env.OFFSITE_KEEP_TEST_CLUSTER) rmSync(this.dir, { recursive: true, force: true });
    releaseOnExit(this.dir);
  }
}

/** Runs kubectl with a kubeconfig; never throws for a non-zero exit. */
export async function runKubectl(
  kubeconfig: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { spawn } = await import("node:child_process");
  return new Promise((resolve, reject) => {
    const child = spawn(binaryPath("kubectl"), [`--kubeconfig=${kubeconfig}`, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    // kubectl may exit before it reads its input (a command that takes none, or a fast
    // failure): its exit code and stderr tell the story, not an EPIPE on our side.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}
