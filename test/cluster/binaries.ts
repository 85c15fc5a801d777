/**
 * Finds the control-plane binaries: a user's own (envtest's TEST_ASSET_* variables or
 * KUBEBUILDER_ASSETS), else the ones build-binaries.sh builds from Go modules into the
 * cache directory keyed by versions.env. Building takes many minutes cold, so the harness
 * runs the script only when nothing else is there (`npm test` runs it up front).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

export type BinaryName =
  | "etcd"
  | "kube-apiserver"
  | "kube-controller-manager"
  | "kube-scheduler"
  | "kubectl"
  | "kwok"
  | "helm"
  | "kubelet"
  | "kube-proxy"
  | "crictl"
  | "coredns";

/** The pinned versions, read from the one file that pins them. */
export function pinnedVersions(): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const line of readFileSync(join(HERE, "versions.env"), "utf8").split("\n")) {
    const match = /^([A-Z_]+)=(\S+)$/.exec(line.trim());
    if (match) versions[match[1]!] = match[2]!;
  }
  return versions;
}

/** Where build-binaries.sh puts its links to every binary. */
export function builtBinaryDir(): string {
  const v = pinnedVersions();
  const cache = process.env.OFFSITE_CACHE_DIR ?? join(homedir(), ".cache", "offsite");
  return join(
    cache,
    "bin",
    `all-k8s${v.KUBERNETES_VERSION}-etcd${v.ETCD_VERSION}-kwok${v.KWOK_VERSION}-helm${v.HELM_VERSION}` +
      `-crictl${v.CRICTL_VERSION}-coredns${v.COREDNS_VERSION}`,
  );
}

function envtestVariable(name: BinaryName): string {
  return `TEST_ASSET_${name.toUpperCase().replace(/-/g, "_")}`;
}

/** The path of one binary; builds the pinned set when no other source has it. */
export function binaryPath(name: BinaryName): string {
  const explicit = process.env[envtestVariable(name)];
  if (explicit) {
    if (!existsSync(explicit)) throw new Error(`${envtestVariable(name)}=${explicit} does not exist`);
    return explicit;
  }
  const assets = process.env.KUBEBUILDER_ASSETS;
  if (assets && existsSync(join(assets, name))) return join(assets, name);
  const built = join(builtBinaryDir(), name);
  if (!existsSync(built)) {
    process.stderr.write(
      `[test-cluster] ${name} not built yet; running test/cluster/build-binaries.sh (slow when cold)\n`,
    );
    execFileSync("bash", [join(HERE, "build-binaries.sh")], { stdio: ["ignore", "ignore", "inherit"] });
  }
  if (!existsSync(built)) throw new Error(`build-binaries.sh finished but ${built} is missing`);
  return built;
}
