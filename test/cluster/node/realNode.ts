/**
 * A real Kubernetes node on this machine, beside the throwaway control plane: containerd
 * (Debian's, with a private root, state and socket), the CNI bridge and host-local
 * plugins on a bridge that holds the node IP 198.18.0.1, kubelet and kube-proxy (built
 * from Go modules by build-binaries.sh), CoreDNS in the cluster behind the kube-dns
 * Service 198.19.0.10, and a default StorageClass of local volumes on the node.
 *
 * Pods really run: images are built here (../images/) and imported into containerd; no
 * image is ever pulled. One node per machine at a time (fixed addresses and bridge), so
 * start() takes a lock that later starters wait for. Everything the node changes on the
 * host is in hostState.ts, and swept at the start of every run and at stop.
 *
 * The recipe and its pitfalls: shared/notes/real-node.md.
 */
import { execFile, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { issueCertificate, type CertificateAndKey } from "../../../pki/certificates.ts";
import { binaryPath } from "../binaries.ts";
import { buildNodeImages, type NodeImages } from "../images/images.ts";
import type { BuiltImage } from "../images/ociImage.ts";
import { ManagedProcess } from "../managedProcess.ts";
import {
  NODE_NETWORK,
  CGROUP_NAME,
  containerdRootDir,
  inOurCgroups,
  nodeStateDir,
  nodeUnsupportedReason,
  recordHost,
  setUpNetwork,
  leftovers,
  sweep,
} from "./hostState.ts";

const execFileAsync = promisify(execFile);
const DAY_MS = 24 * 3600 * 1000;
export const NODE_NAME = "offsite-node-0";
export const ENSURE_PACKAGES = join(import.meta.dirname, "ensure-packages.sh");

/** What the node needs from the control plane it joins. */
export interface ControlPlaneAccess {
  server: string;
  ca: CertificateAndKey;
  kubeconfig(user: string, client: CertificateAndKey): string;
  kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface RealNodeOptions {
  /** Local PersistentVolumes in the default StorageClass (default 8). */
  volumes?: number;
  /** Run CoreDNS (default true). */
  dns?: boolean;
  startTimeoutMs?: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

/**
 * Runs `check` while holding the machine's node lock: for a test that inspects the host
 * after a node it did not own (another process's) has stopped, so no other suite's node
 * is half started meanwhile.
 */
export async function whileHoldingNodeLock<T>(check: () => T | Promise<T>): Promise<T> {
  const release = await acquireLock(600_000);
  try {
    return await check();
  } finally {
    release();
  }
}

/** One node per machine: a lock file holding the owner's PID; a dead owner's lock is taken over. */
async function acquireLock(timeoutMs: number): Promise<() => void> {
  const dir = nodeStateDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "lock");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        if (existsSync(path) && readFileSync(path, "utf8").trim() === String(process.pid)) rmSync(path);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(readFileSync(path, "utf8").trim() || "0");
      if (!owner || !alive(owner)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`the real node is in use by process ${owner} (${path})`, { cause: error });
      await sleep(500);
    }
  }
}

export class RealNode {
  readonly stateDir = nodeStateDir();
  readonly name = NODE_NAME;
  readonly processes: ManagedProcess[] = [];
  images!: NodeImages;
  private imported: Promise<void> | undefined;
  private releaseLock: (() => void) | undefined;
  private readonly options: RealNodeOptions;
  private readonly paths;
  /** Seconds each bring-up step took, for reports. */
  readonly timings: Record<string, number> = {};

  private constructor(options: RealNodeOptions) {
    this.options = options;
    const s = this.stateDir;
    this.paths = {
      logs: join(s, "logs"),
      containerdConfig: join(s, "containerd.toml"),
      containerdRoot: containerdRootDir(),
      containerdState: join(s, "containerd", "state"),
      socket: join(s, "containerd.sock"),
      cniConf: join(s, "cni", "net.d"),
      cniData: join(s, "cni", "ipam"),
      kubeletRoot: join(s, "kubelet"),
      config: join(s, "config"),
      volumes: join(s, "volumes"),
    };
  }

  static unsupportedReason(): string | undefined {
    return nodeUnsupportedReason(ENSURE_PACKAGES);
  }

  /**
   * Phase one, before the API server starts (it binds the node IP): lock, sweep what an
   * earlier run left, network, containerd, and the images imported in the background.
   */
  static async prepare(options: RealNodeOptions = {}): Promise<RealNode> {
    const reason = RealNode.unsupportedReason();
    if (reason) throw new Error(reason);
    const node = new RealNode(options);
    node.releaseLock = await acquireLock(options.startTimeoutMs ?? 300_000);
    // However the test process exits (a failed assertion, SIGTERM, Ctrl-C), the exit
    // handlers of managedProcess.ts kill our daemons and this one sweeps up the rest:
    // shims, containers, mounts, links (sweep is synchronous, as exit handlers must be).
    // Only SIGKILL skips it; the next run's sweep cleans up then.
    // What it left is checked before the lock goes (then another suite's node may start):
    // said on stderr, for whoever ran this process (npm start's Ctrl-C test reads it).
    const onExit = () => {
      if (!node.releaseLock) return;
      sweep();
      const left = leftovers();
      process.stderr.write(
        left.length === 0
          ? "[real node] swept at exit: nothing left\n"
          : `[real node] left behind after the sweep at exit: ${left.join("; ")}\n`,
      );
      node.releaseLock();
    };
    process.once("exit", onExit);
    try {
      await node.time("sweep", () => sweep());
      recordHost();
      for (const dir of Object.values(node.paths))
        if (!dir.endsWith(".toml") && !dir.endsWith(".sock")) mkdirSync(dir, { recursive: true });
      await node.time("network", () => setUpNetwork());
      await node.time("images", () => {
        node.images = buildNodeImages(binaryPath("coredns"));
      });
      await node.time("containerd", () => node.startContainerd());
      node.imported = node.time("import", () => node.importImages());
      node.imported.catch(() => undefined);
      return node;
    } catch (error) {
      await node.stop();
      throw error;
    }
  }

  private async time<T>(step: string, work: () => T | Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.timings[step] = Math.round(performance.now() - started) / 1000;
    }
  }

  private spawn(name: string, binary: string, args: string[]): ManagedProcess {
    const wrapped = inOurCgroups(binary, args);
    const managed = new ManagedProcess(
      name,
      wrapped.command,
      wrapped.args,
      join(this.paths.logs, `${name}.log`),
    );
    this.processes.push(managed);
    return managed;
  }

  private async waitFor(
    process_: ManagedProcess,
    what: string,
    healthy: () => Promise<boolean>,
  ): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 120_000);
    while (Date.now() < deadline) {
      if (!process_.running) throw new Error(`${process_.name} exited during start-up:\n${process_.tail()}`);
      if (await healthy()) return;
      await sleep(100);
    }
    throw new Error(`${what} not ready in time:\n${process_.tail()}`);
  }

  private async startContainerd(): Promise<void> {
    const p = this.paths;
    // The kept root only grows: containerd 1.6 did not collect the snapshots and blobs of
    // removed images here (ctr images rm --sync). Past a few image generations, start over
    // (the next import takes ~10-20 s once).
    const snapshots = join(p.containerdRoot, "io.containerd.snapshotter.v1.overlayfs", "snapshots");
    // Removing ~4 GB of small files takes minutes on this disk: move it aside at once and
    // delete it in the background (a leftover from a killed run goes the same way).
    if (existsSync(snapshots) && readdirSync(snapshots).length > 16)
      renameSync(p.containerdRoot, `${p.containerdRoot}.old-${process.pid}`);
    const parent = dirname(p.containerdRoot);
    const old = existsSync(parent) ? readdirSync(parent).filter((name) => name.includes(".old-")) : [];
    if (old.length > 0) {
      spawn("rm", ["-rf", ...old.map((name) => join(parent, name))], {
        detached: true,
        stdio: "ignore",
      }).unref();
    }
    mkdirSync(p.containerdRoot, { recursive: true });
    const cri = `plugins."io.containerd.grpc.v1.cri"`;
    writeFileSync(
      p.containerdConfig,
      `version = 2
root = "${p.containerdRoot}"
state = "${p.containerdState}"
# /opt/containerd and the snapshotters we do not use stay untouched.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${p.socket}"
[ttrpc]
  address = "${p.socket}.ttrpc"
[metrics]
  address = ""
[${cri}]
  sandbox_image = "${this.images.pause.ref}"
  # Without CAP_SYS_RESOURCE (this VM) every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [${cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${p.cniConf}"
    max_conf_num = 1
`,
    );
    writeFileSync(
      join(p.cniConf, "10-offsite.conflist"),
      JSON.stringify(
        {
          cniVersion: "1.0.0",
          name: NODE_NETWORK.cniNetwork,
          plugins: [
            {
              type: "bridge",
              bridge: NODE_NETWORK.bridge,
              isGateway: true,
              ipMasq: false,
              hairpinMode: true,
              ipam: {
                type: "host-local",
                dataDir: p.cniData,
                ranges: [[{ subnet: NODE_NETWORK.podSubnet, gateway: NODE_NETWORK.nodeIp }]],
                // Pods get routes to our two ranges only: no default route, nothing leaves.
                routes: [{ dst: NODE_NETWORK.clusterCidr }, { dst: NODE_NETWORK.serviceCidr }],
              },
            },
            { type: "portmap", capabilities: { portMappings: true } },
          ],
        },
        null,
        2,
      ),
    );
    const containerd = this.spawn("containerd", "/usr/bin/containerd", ["--config", p.containerdConfig]);
    await this.waitFor(containerd, "containerd", async () => (await this.ctr(["version"])).code === 0);
    // The kept root may still list pods of a run that was killed (their processes, mounts
    // and namespaces are swept already): remove them through the CRI before kubelet starts.
    const stale = await this.crictl(["pods", "-q"]);
    if (stale.stdout.trim()) await this.crictl(["rmp", "--force", "--all"]);
  }

  /** Runs ctr against our containerd, in the namespace the CRI plugin uses. */
  async ctr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(
        "ctr",
        ["--address", this.paths.socket, "-n", "k8s.io", ...args],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : 1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? String(error),
      };
    }
  }

  /** Runs crictl against our containerd. */
  async crictl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const endpoint = `unix://${this.paths.socket}`;
    try {
      const { stdout, stderr } = await execFileAsync(
        binaryPath("crictl"),
        [`--runtime-endpoint=${endpoint}`, `--image-endpoint=${endpoint}`, "--timeout=30s", ...args],
        { maxBuffer: 64 * 1024 * 1024 },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : 1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? String(error),
      };
    }
  }

  /**
   * Imports the images containerd's kept root does not have yet, and removes our images of
   * earlier inputs (containerd's GC then drops their content and snapshots).
   */
  private async importImages(): Promise<void> {
    const { pause, agent, operator, coredns, webApp } = this.images;
    const images: BuiltImage[] = [pause, agent, coredns, webApp, operator];
    const listed = await this.ctr(["images", "ls", "-q"]);
    const present = new Set(listed.stdout.split("\n").map((line) => line.trim()));
    const wanted = new Set(images.map((image) => image.ref));
    const stale = [...present].filter((ref) => ref.startsWith("offsite.local/") && !wanted.has(ref));
    if (stale.length > 0) await this.ctr(["images", "rm", "--sync", ...stale]);
    for (const image of images) {
      if (present.has(image.ref)) continue;
      const result = await this.ctr(["images", "import", image.archive]);
      if (result.code !== 0) throw new Error(`importing ${image.ref} failed: ${result.stderr}`);
    }
  }

  /** Phase two, once the API server and controllers run: kubelet, kube-proxy, DNS, storage. */
  async join(plane: ControlPlaneAccess): Promise<void> {
    const p = this.paths;
    await this.time("import-wait", () => this.imported);
    const kubeletClient = await issueCertificate(plane.ca, {
      commonName: `system:node:${this.name}`,
      organizations: ["system:nodes"],
      usage: "client",
      validForMs: DAY_MS,
    });
    const proxyClient = await issueCertificate(plane.ca, {
      commonName: "system:kube-proxy",
      usage: "client",
      validForMs: DAY_MS,
    });
    const kubeletKubeconfig = join(p.config, "kubelet.kubeconfig");
    const proxyKubeconfig = join(p.config, "kube-proxy.kubeconfig");
    writeFileSync(kubeletKubeconfig, plane.kubeconfig(`system:node:${this.name}`, kubeletClient), {
      mode: 0o600,
    });
    writeFileSync(proxyKubeconfig, plane.kubeconfig("system:kube-proxy", proxyClient), { mode: 0o600 });
    writeFileSync(join(p.config, "ca.crt"), plane.ca.certificatePem);
    // Pods must not get the machine's resolver (a private range): DNS is cluster DNS only.
    writeFileSync(
      join(p.config, "resolv.conf"),
      `nameserver ${NODE_NETWORK.dnsServiceIp}\noptions ndots:5\n`,
    );
    writeFileSync(
      join(p.config, "kubelet.yaml"),
      JSON.stringify({
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        address: NODE_NETWORK.nodeIp,
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: "127.0.0.1",
        healthzPort: 10248,
        containerRuntimeEndpoint: `unix://${p.socket}`,
        cgroupDriver: "cgroupfs",
        cgroupRoot: `/${CGROUP_NAME}`,
        failSwapOn: false,
        failCgroupV1: false,
        authentication: {
          anonymous: { enabled: false },
          webhook: { enabled: true },
          x509: { clientCAFile: join(p.config, "ca.crt") },
        },
        authorization: { mode: "Webhook" },
        clusterDNS: [NODE_NETWORK.dnsServiceIp],
        clusterDomain: "cluster.local",
        resolvConf: join(p.config, "resolv.conf"),
        // The defaults (10-15 %) taint a fuller CI disk with DiskPressure.
        evictionHard: { "nodefs.available": "1%", "imagefs.available": "1%", "memory.available": "100Mi" },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        serializeImagePulls: false,
        nodeStatusUpdateFrequency: "4s",
        syncFrequency: "10s",
        fileCheckFrequency: "20s",
        shutdownGracePeriod: "0s",
        maxPods: 110,
        volumePluginDir: join(p.kubeletRoot, "volume-plugins"),
      }),
    );
    const kubelet = this.spawn("kubelet", binaryPath("kubelet"), [
      `--config=${join(p.config, "kubelet.yaml")}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--hostname-override=${this.name}`,
      `--node-ip=${NODE_NETWORK.nodeIp}`,
      `--root-dir=${p.kubeletRoot}`,
      `--cert-dir=${join(p.kubeletRoot, "pki")}`,
      "--v=1",
    ]);
    writeFileSync(
      join(p.config, "kube-proxy.yaml"),
      JSON.stringify({
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        mode: "nftables",
        clientConnection: { kubeconfig: proxyKubeconfig },
        hostnameOverride: this.name,
        clusterCIDR: NODE_NETWORK.clusterCidr,
        // NodePorts on the node IP only. No bindAddress: 127.0.0.1 would make the node IP loopback.
        nodePortAddresses: ["primary"],
        healthzBindAddress: "127.0.0.1:10256",
        metricsBindAddress: "127.0.0.1:10249",
        // 0: leave the machine's conntrack table size and timeouts alone.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
        nftables: { minSyncPeriod: "100ms", syncPeriod: "30s" },
      }),
    );
    const proxy = this.spawn("kube-proxy", binaryPath("kube-proxy"), [
      `--config=${join(p.config, "kube-proxy.yaml")}`,
      "--v=1",
    ]);
    // kubelet, kube-proxy, the volumes and CoreDNS come up side by side: each waits for
    // what it needs (the scheduler for the Ready node, CoreDNS for the kubernetes Service).
    const kubeletReady = this.time("kubelet-ready", () =>
      this.waitFor(kubelet, `node ${this.name} Ready`, async () => {
        const ready = await plane.kubectl([
          "get",
          "node",
          this.name,
          "-o",
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        return ready.stdout.trim() === "True";
      }),
    );
    const proxyReady = this.time("kube-proxy-ready", () =>
      this.waitFor(proxy, "kube-proxy", async () => {
        const response = await fetch("http://127.0.0.1:10256/healthz").catch(() => undefined);
        return response?.ok === true;
      }),
    );
    const storage = this.time("storage", () => this.applyStorage(plane));
    const dns =
      this.options.dns !== false ? this.time("dns", () => this.applyDns(plane, kubelet)) : undefined;
    // Every promise is awaited (allSettled), so a failure in one leaves none unhandled.
    const results = await Promise.allSettled([kubeletReady, proxyReady, storage, dns]);
    for (const result of results) if (result.status === "rejected") throw result.reason;
  }

  private async apply(plane: ControlPlaneAccess, objects: object[], what: string): Promise<void> {
    const applied = await plane.kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
    );
    if (applied.code !== 0) throw new Error(`applying ${what} failed: ${applied.stderr}`);
  }

  /**
   * A default StorageClass of `local` volumes on the node (binding waits for the first pod,
   * as with kind's local-path): data stays in the volume's directory when the pod goes.
   */
  private async applyStorage(plane: ControlPlaneAccess): Promise<void> {
    const objects: object[] = [
      {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: {
          name: "offsite-local",
          annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        provisioner: "kubernetes.io/no-provisioner",
        volumeBindingMode: "WaitForFirstConsumer",
        allowVolumeExpansion: true,
        reclaimPolicy: "Retain",
      },
    ];
    for (let i = 0; i < (this.options.volumes ?? 8); i++) {
      const path = join(this.paths.volumes, String(i));
      mkdirSync(path, { recursive: true, mode: 0o777 });
      // Non-root pods write here; kubelet applies no fsGroup to local volumes.
      await execFileAsync("chmod", ["0777", path]);
      objects.push({
        apiVersion: "v1",
        kind: "PersistentVolume",
        metadata: { name: `offsite-local-${i}` },
        spec: {
          capacity: { storage: "100Gi" },
          accessModes: ["ReadWriteOnce"],
          persistentVolumeReclaimPolicy: "Retain",
          storageClassName: "offsite-local",
          volumeMode: "Filesystem",
          local: { path },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [this.name] }],
                },
              ],
            },
          },
        },
      });
    }
    await this.apply(plane, objects, "the local volumes");
  }

  /** CoreDNS as kubeadm deploys it (ServiceAccount, RBAC, ConfigMap, Deployment, kube-dns Service). */
  private async applyDns(plane: ControlPlaneAccess, kubelet: ManagedProcess): Promise<void> {
    const labels = { "k8s-app": "kube-dns" };
    // No `forward`: names outside the cluster are not resolved, so nothing leaves the machine.
    const corefile = `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
`;
    await this.apply(
      plane,
      [
        { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "coredns", namespace: "kube-system" } },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRole",
          metadata: { name: "system:coredns" },
          rules: [
            {
              apiGroups: [""],
              resources: ["endpoints", "services", "pods", "namespaces"],
              verbs: ["list", "watch"],
            },
            { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
          ],
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRoleBinding",
          metadata: { name: "system:coredns" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:coredns" },
          subjects: [{ kind: "ServiceAccount", name: "coredns", namespace: "kube-system" }],
        },
        {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "coredns", namespace: "kube-system" },
          data: { Corefile: corefile },
        },
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "coredns", namespace: "kube-system", labels },
          spec: {
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
              metadata: { labels },
              spec: {
                serviceAccountName: "coredns",
                dnsPolicy: "Default",
                priorityClassName: "system-cluster-critical",
                containers: [
                  {
                    name: "coredns",
                    image: this.images.coredns.ref,
                    imagePullPolicy: "Never",
                    args: ["-conf", "/etc/coredns/Corefile"],
                    ports: [
                      { name: "dns", containerPort: 53, protocol: "UDP" },
                      { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                    ],
                    readinessProbe: { httpGet: { path: "/ready", port: 8181 }, periodSeconds: 1 },
                    livenessProbe: { httpGet: { path: "/health", port: 8080 }, periodSeconds: 10 },
                    resources: { limits: { memory: "170Mi" }, requests: { cpu: "50m", memory: "70Mi" } },
                    volumeMounts: [{ name: "config", mountPath: "/etc/coredns", readOnly: true }],
                  },
                ],
                volumes: [{ name: "config", configMap: { name: "coredns" } }],
              },
            },
          },
        },
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "kube-dns", namespace: "kube-system", labels },
          spec: {
            selector: labels,
            clusterIP: NODE_NETWORK.dnsServiceIp,
            ports: [
              { name: "dns", port: 53, targetPort: 53, protocol: "UDP" },
              { name: "dns-tcp", port: 53, targetPort: 53, protocol: "TCP" },
            ],
          },
        },
      ],
      "CoreDNS",
    );
    await this.waitFor(kubelet, "CoreDNS", async () => {
      const ready = await plane.kubectl([
        "get",
        "deployment",
        "coredns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.status.readyReplicas}",
      ]);
      return ready.stdout.trim() === "1";
    });
  }

  /** The node's processes that are still running (kubelet, kube-proxy, containerd). */
  get pids(): number[] {
    return this.processes.map((p) => p.pid).filter((pid): pid is number => pid !== undefined);
  }

  /**
   * Stops the node's daemons: kubelet and kube-proxy, kube-proxy's rules, every pod
   * through the CRI (so CNI releases addresses and veths), containerd. Safe twice.
   */
  async stopDaemons(): Promise<void> {
    const byName = (name: string) => this.processes.find((p) => p.name === name);
    const proxy = byName("kube-proxy");
    const containerd = byName("containerd");
    await this.time("stop-kubelet", () => byName("kubelet")?.stop());
    if (proxy) {
      await this.time("stop-kube-proxy", async () => {
        await proxy.stop();
        await execFileAsync(binaryPath("kube-proxy"), [
          "--cleanup",
          `--config=${join(this.paths.config, "kube-proxy.yaml")}`,
        ]).catch(() => undefined);
      });
    }
    if (containerd?.running) {
      await this.time("stop-pods", () => this.crictl(["rmp", "--force", "--all"]));
      await this.time("stop-containerd", () => containerd.stop());
    }
    for (const p of this.processes) await p.stop();
  }

  /**
   * What of ours was still on the host right after the last stop(), checked while this
   * node still held the machine's lock (afterwards another suite's node may be starting,
   * and its processes, links and chains would look like ours).
   */
  leftAfterStop: string[] | undefined;

  /** Stops the node and sweeps the host (and whatever else is in our cgroups). Safe twice. */
  async stop(): Promise<void> {
    await this.stopDaemons();
    const swept = sweep();
    for (const [step, ms] of Object.entries(swept)) this.timings[`sweep-${step}`] = ms / 1000;
    if (this.releaseLock) this.leftAfterStop = leftovers();
    this.releaseLock?.();
    this.releaseLock = undefined;
  }
}
