/**
 * The one way an integration or end-to-end suite gets a cluster:
 *
 *   const cluster = useTestCluster({ controllers: true });
 *   it("...", async () => { const api = cluster.kc.makeApiClient(CoreV1Api); ... });
 *
 * By default each suite (test file) starts its own throwaway control plane and stops it
 * in an `after` hook, which runs even when tests fail. With OFFSITE_TEST_CLUSTER=existing
 * the suite uses the cluster KUBECONFIG points at (kind, or any real cluster) instead.
 * Either way the suite works in its own namespace, deleted at the end, so the same
 * suite runs unchanged on both.
 */
import { after, before } from "node:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { installCrds } from "../../crds/install.ts";
import { ControlPlane, runKubectl, type ControlPlaneOptions } from "./controlPlane.ts";
import { buildWorkloadImages, type WorkloadImages } from "./images/images.ts";
import { RealNode } from "./node/realNode.ts";

export interface TestClusterOptions extends ControlPlaneOptions {
  /** Install the Offsite CRDs (default true). */
  crds?: boolean;
}

export interface TestCluster {
  /** A client configuration for the cluster, admin rights. */
  readonly kc: KubeConfig;
  readonly kubeconfigPath: string;
  /** A namespace of this suite's own. */
  readonly namespace: string;
  /** The throwaway control plane, when the suite started one. */
  readonly controlPlane: ControlPlane | undefined;
  /** The real node (`node: "real"`), when the suite started one. */
  readonly node: RealNode | undefined;
  /**
   * The images built here, for pod specs: imported into our real node, or, on an existing
   * cluster, built on first use and expected there already (test/cluster/images/build.ts
   * --kind-cluster loads them). Undefined on a kwok plane.
   */
  readonly images: WorkloadImages | undefined;
  kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * A kubeconfig that authenticates as ServiceAccount `name` in the suite's namespace
   * (token from the TokenRequest API), to prove a component works with its own RBAC.
   */
  serviceAccountKubeconfig(name: string): Promise<string>;
}

export function usingExistingCluster(): boolean {
  return process.env.OFFSITE_TEST_CLUSTER === "existing";
}

/**
 * Why a suite asking for `node: "real"` cannot run here (not root, not Linux, packages
 * missing), or undefined when it can; for `describe(..., { skip })`.
 */
export function realNodeUnavailable(): string | undefined {
  return usingExistingCluster() ? undefined : RealNode.unsupportedReason();
}

/** Starts (or connects to) a cluster for this suite; the handle is usable inside tests. */
export async function startTestCluster(
  options: TestClusterOptions = {},
): Promise<TestCluster & { stop(): Promise<void> }> {
  let controlPlane: ControlPlane | undefined;
  let kubeconfigPath: string;
  if (usingExistingCluster()) {
    kubeconfigPath = process.env.KUBECONFIG?.split(":")[0] ?? join(homedir(), ".kube", "config");
  } else {
    controlPlane = await ControlPlane.start(options);
    kubeconfigPath = controlPlane.writeKubeconfig();
  }
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    if (options.crds !== false) await installCrds(kc);
    const namespace = `offsite-test-${randomBytes(4).toString("hex")}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    let existingImages: WorkloadImages | undefined;
    return {
      kc,
      kubeconfigPath,
      namespace,
      controlPlane,
      node: controlPlane?.node,
      get images() {
        if (controlPlane) return controlPlane.node?.images;
        return (existingImages ??= buildWorkloadImages());
      },
      kubectl: (args, input) => runKubectl(kubeconfigPath, args, input),
      serviceAccountKubeconfig: (name) => serviceAccountKubeconfig(kc, kubeconfigPath, namespace, name),
      async stop() {
        if (controlPlane) {
          await controlPlane.stop();
        } else {
          await kc
            .makeApiClient(CoreV1Api)
            .deleteNamespace({ name: namespace })
            .catch(() => undefined);
        }
      },
    };
  } catch (error) {
    await controlPlane?.stop();
    throw error;
  }
}

/** Registers before/after hooks that start and stop a cluster for the enclosing suite. */
export function useTestCluster(options: TestClusterOptions = {}): TestCluster {
  let cluster: (TestCluster & { stop(): Promise<void> }) | undefined;
  before(async () => {
    cluster = await startTestCluster(options);
  });
  after(async () => {
    await cluster?.stop();
  });
  const get = (): TestCluster => {
    if (!cluster)
      throw new Error("the test cluster is not started yet: use it inside tests, not at module level");
    return cluster;
  };
  return {
    get kc() {
      return get().kc;
    },
    get kubeconfigPath() {
      return get().kubeconfigPath;
    },
    get namespace() {
      return get().namespace;
    },
    get controlPlane() {
      return get().controlPlane;
    },
    get node() {
      return get().node;
    },
    get images() {
      return get().images;
    },
    kubectl: (args, input) => get().kubectl(args, input),
    serviceAccountKubeconfig: (name) => get().serviceAccountKubeconfig(name),
  };
}

async function serviceAccountKubeconfig(
  kc: KubeConfig,
  adminKubeconfig: string,
  namespace: string,
  name: string,
): Promise<string> {
  const token = await runKubectl(adminKubeconfig, [
    "create",
    "token",
    name,
    "-n",
    namespace,
    "--duration=2h",
  ]);
  if (token.code !== 0) throw new Error(`could not get a token for ServiceAccount ${name}: ${token.stderr}`);
  const cluster = kc.getCurrentCluster()!;
  const scoped = new KubeConfig();
  scoped.loadFromOptions({
    clusters: [cluster],
    users: [{ name, token: token.stdout.trim() }],
    contexts: [{ name, cluster: cluster.name, user: name, namespace }],
    currentContext: name,
  });
  const path = join(tmpdir(), `offsite-sa-${namespace}-${name}.kubeconfig`);
  writeFileSync(path, scoped.exportConfig(), { mode: 0o600 });
  return path;
}
