/**
 * Everything the real test node changes on the host, in one place: the state directory,
 * the bridge holding the node IP, routes, the guard table, cgroups, sysctls, and what
 * kubelet, kube-proxy, containerd and CNI leave (mounts, network namespaces, veths,
 * iptables chains, nftables tables, conntrack entries, CNI cache files).
 *
 * `sweep()` removes all of it and is safe to run at any time: at the start of every run
 * (so a run killed with SIGKILL is cleaned up by the next), after a normal stop, and
 * twice in a row. `leftovers()` lists whatever of ours is still there, for tests.
 *
 * Every process of the node (containerd and its shims, kubelet, kube-proxy, every
 * container) runs inside the cgroup `/offsite-node` of every hierarchy, so "kill what is
 * ours" is "kill what is in those cgroups": no process is found by name.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const NODE_NETWORK = {
  bridge: "offsite0",
  nodeIp: "198.18.0.1",
  podSubnet: "198.18.0.0/24",
  clusterCidr: "198.18.0.0/16",
  serviceCidr: "198.19.0.0/16",
  apiServiceIp: "198.19.0.1",
  dnsServiceIp: "198.19.0.10",
  /** Both ranges: 198.18.0.0/15 is reserved for benchmarking (RFC 2544) and routed nowhere. */
  ours: "198.18.0.0/15",
  guardTable: "offsite_guard",
  cniNetwork: "offsite",
} as const;

export const CGROUP_NAME = "offsite-node";
const CGROUP_ROOT = "/sys/fs/cgroup";

/** The sysctls something of the node may change, restored by the sweep. */
const SYSCTLS = [
  "net/ipv4/ip_forward",
  "net/ipv4/conf/all/route_localnet",
  "net/ipv4/conf/all/forwarding",
  "net/ipv6/conf/all/forwarding",
  "net/bridge/bridge-nf-call-iptables",
  "net/bridge/bridge-nf-call-ip6tables",
  // kubelet sets these at start (its "kernel tunables"): restore them, a test machine
  // should not start panicking on an oops because a test ran.
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
  "net/netfilter/nf_conntrack_tcp_timeout_established",
  "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];

export function nodeStateDir(): string {
  return process.env.OFFSITE_NODE_STATE_DIR ?? "/var/lib/offsite-node";
}

/**
 * containerd's root (content store, image snapshots, metadata), kept between runs so a
 * warm start imports no image: only the state directory (mounts, sockets, tasks) is swept.
 */
export function containerdRootDir(): string {
  return join(
    process.env.OFFSITE_CACHE_DIR ?? join(homedir(), ".cache", "offsite"),
    "node",
    "containerd-root",
  );
}

function run(
  command: string,
  args: string[],
  input?: string,
): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: "utf8", input: input ?? "" });
  return { code: result.status ?? -1, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

function must(command: string, args: string[], input?: string): string {
  const result = run(command, args, input);
  if (result.code !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

/** The cgroup v1/v2 hierarchies mounted here (directories under /sys/fs/cgroup). */
function hierarchies(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" "))
    .filter(
      (fields) => fields[4]?.startsWith(`${CGROUP_ROOT}/`) && /\bcgroup2?\b/.test(fields.slice(7).join(" ")),
    )
    .map((fields) => fields[4]!)
    .filter((path) => !path.slice(CGROUP_ROOT.length + 1).includes("/"));
}

/** Our cgroup in every hierarchy, and the `system` child the node's daemons run in. */
export function createCgroups(): string[] {
  const system: string[] = [];
  for (const hierarchy of hierarchies()) {
    for (const dir of [join(hierarchy, CGROUP_NAME), join(hierarchy, CGROUP_NAME, "system")]) {
      mkdirSync(dir, { recursive: true });
      // A new cpuset cgroup has no CPUs or memory nodes, and nothing can join it until it does.
      for (const file of ["cpuset.cpus", "cpuset.mems"]) {
        const parent = join(dir, "..", file);
        if (existsSync(join(dir, file)) && readFileSync(join(dir, file), "utf8").trim() === "")
          writeFileSync(join(dir, file), readFileSync(parent, "utf8").trim());
      }
    }
    system.push(join(hierarchy, CGROUP_NAME, "system"));
  }
  return system;
}

/**
 * A command line that joins our `system` cgroups, then execs the binary: the daemon and
 * everything it ever forks (containerd's shims, their containers) stay findable.
 */
export function inOurCgroups(binary: string, args: string[]): { command: string; args: string[] } {
  const dirs = createCgroups();
  const script = `for d in ${dirs.map((d) => `'${d}'`).join(" ")}; do echo $$ > "$d/cgroup.procs"; done; exec "$@"`;
  return { command: "/bin/sh", args: ["-c", script, "sh", binary, ...args] };
}

function cgroupDirsDeepestFirst(): string[] {
  const dirs: string[] = [];
  const walk = (dir: string) => {
    dirs.push(dir);
    for (const entry of readdirSync(dir, { withFileTypes: true }))
      if (entry.isDirectory()) walk(join(dir, entry.name));
  };
  for (const hierarchy of hierarchies())
    if (existsSync(join(hierarchy, CGROUP_NAME))) walk(join(hierarchy, CGROUP_NAME));
  return dirs.sort((a, b) => b.split("/").length - a.split("/").length);
}

/** Every process in our cgroups. */
export function ourProcesses(): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirsDeepestFirst()) {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n"))
        if (line.trim()) pids.add(Number(line));
    } catch {
      // the cgroup went away meanwhile
    }
  }
  return [...pids];
}

/** Mount points of ours: under the state directory, and the network namespaces of our pods. */
export function ourMounts(): string[] {
  const prefixes = [nodeStateDir(), containerdRootDir()];
  const netns = new Set(ourNetns().map((name) => `/run/netns/${name}`));
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\040/g, " "))
    .filter((point): point is string => point !== undefined)
    .filter(
      (point) =>
        prefixes.some((prefix) => point === prefix || point.startsWith(`${prefix}/`)) ||
        netns.has(point) ||
        netns.has(point.replace(/^\/var/, "")),
    )
    .sort((a, b) => b.length - a.length);
}

/** Network namespaces containerd made for our pods: named cni-*, holding an address of ours. */
export function ourNetns(): string[] {
  if (!existsSync("/run/netns")) return [];
  return readdirSync("/run/netns")
    .filter((name) => name.startsWith("cni-"))
    .filter((name) => {
      const addresses = run("ip", ["-n", name, "-br", "addr"]);
      // A namespace whose interfaces are already gone (its veth died with the bridge) is
      // still ours if containerd left it in our range or left it empty.
      return (
        addresses.code !== 0 ||
        addresses.stdout.includes("198.18.") ||
        !/\d+\.\d+\.\d+\.\d+/.test(addresses.stdout)
      );
    });
}

function linkExists(name: string): boolean {
  return run("ip", ["link", "show", name]).code === 0;
}

function vethsOnBridge(): string[] {
  if (!linkExists(NODE_NETWORK.bridge)) return [];
  return run("ip", ["-o", "link", "show", "master", NODE_NETWORK.bridge])
    .stdout.split("\n")
    .map((line) => /^\d+:\s+([^:@]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
}

const NFT_TABLES_OF_OURS = [
  ["inet", NODE_NETWORK.guardTable],
  ["ip", "kube-proxy"],
  ["ip6", "kube-proxy"],
] as const;

function nftTables(): string[] {
  const out = run("nft", ["list", "tables"]);
  return out.code === 0
    ? out.stdout
        .split("\n")
        .map((line) => line.replace(/^table /, "").trim())
        .filter(Boolean)
    : [];
}

/** iptables chains kubelet, kube-proxy and the CNI plugins create: KUBE-* and CNI-*. */
function ourIptablesChains(tool: "iptables" | "ip6tables"): { table: string; chain: string }[] {
  const save = run(`${tool}-save`, []);
  if (save.code !== 0) return [];
  const chains: { table: string; chain: string }[] = [];
  let table = "";
  for (const line of save.stdout.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    const match = /^:((?:KUBE|CNI)-\S+)/.exec(line);
    if (match) chains.push({ table, chain: match[1]! });
  }
  return chains;
}

function deleteIptablesChains(tool: "iptables" | "ip6tables"): void {
  const save = run(`${tool}-save`, []);
  if (save.code !== 0) return;
  let table = "";
  // Rules in any chain that jump to one of ours first, then our chains themselves.
  for (const line of save.stdout.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    const rule = /^-A (\S+) (.*-j (?:KUBE|CNI)-\S+.*)$/.exec(line);
    if (rule && !/^(KUBE|CNI)-/.test(rule[1]!)) {
      const args = rule[2]!.match(/"[^"]*"|\S+/g)!.map((word) => word.replace(/^"|"$/g, ""));
      run(tool, ["-w", "-t", table, "-D", rule[1]!, ...args]);
    }
  }
  const chains = ourIptablesChains(tool);
  for (const { table: t, chain } of chains) run(tool, ["-w", "-t", t, "-F", chain]);
  for (const { table: t, chain } of chains) run(tool, ["-w", "-t", t, "-X", chain]);
}

interface Record_ {
  sysctls: Record<string, string>;
  nftTablesBefore: string[];
}

function ownedDirsPath(): string {
  return join(nodeStateDir(), "owned-dirs");
}

/** Records a directory (the control plane's) for the sweep to remove, should this run be killed. */
export function sweepOnNextStart(dir: string): void {
  mkdirSync(nodeStateDir(), { recursive: true });
  appendFileSync(ownedDirsPath(), `${dir}\n`);
}

function recordPath(): string {
  return join(nodeStateDir(), "host-record.json");
}

/**
 * Notes the host's settings before the node changes them. An existing record (from a run
 * that was killed) is kept: it holds the values from before that run.
 */
export function recordHost(): void {
  if (existsSync(recordPath())) return;
  mkdirSync(nodeStateDir(), { recursive: true });
  const sysctls: Record<string, string> = {};
  for (const name of SYSCTLS) {
    const path = join("/proc/sys", name);
    if (existsSync(path)) sysctls[name] = readFileSync(path, "utf8").trim();
  }
  const record: Record_ = { sysctls, nftTablesBefore: nftTables() };
  writeFileSync(recordPath(), JSON.stringify(record, null, 2));
}

/** The bridge with the node IP, routes for both ranges, and the guard table. */
export function setUpNetwork(): void {
  const { bridge, nodeIp, clusterCidr, serviceCidr, ours, guardTable } = NODE_NETWORK;
  must("ip", ["link", "add", bridge, "type", "bridge"]);
  must("ip", ["addr", "add", `${nodeIp}/24`, "dev", bridge]);
  must("ip", ["link", "set", bridge, "up"]);
  // Without the service route, a ClusterIP whose rules are not programmed yet would go to
  // the default gateway; with it, it goes nowhere.
  must("ip", ["route", "replace", clusterCidr, "dev", bridge]);
  must("ip", ["route", "replace", serviceCidr, "dev", bridge]);
  const guard = (hook: string) => `
  chain ${hook} {
    type filter hook ${hook} priority -10; policy accept;
    oifname != { "lo", "${bridge}" } ip saddr ${ours} drop
    oifname != { "lo", "${bridge}" } ip daddr ${ours} drop
  }`;
  must("nft", ["-f", "-"], `table inet ${guardTable} {${guard("forward")}${guard("output")}\n}\n`);
}

function writeSysctl(name: string, value: string): void {
  try {
    writeFileSync(join("/proc/sys", name), value);
  } catch {
    // not writable here (a namespaced /proc/sys): nothing to restore
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Removes everything of ours from the host. Idempotent. */
export function sweep(): Record<string, number> {
  const state = nodeStateDir();
  const timings: Record<string, number> = {};
  let last = performance.now();
  const lap = (step: string) => {
    const now = performance.now();
    timings[step] = Math.round(now - last);
    last = now;
  };
  // 1. Processes: every one in our cgroups, until none is left (a shim may fork meanwhile).
  for (let round = 0; round < 50; round++) {
    const pids = ourProcesses();
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    sleepSync(100);
  }
  lap("processes");
  // 2. Mounts, deepest first (overlay roots, projected volumes, shm, netns bind mounts).
  for (const point of ourMounts()) {
    if (run("umount", [point]).code !== 0) run("umount", ["-l", point]);
  }
  for (const name of ourNetns()) {
    run("ip", ["netns", "delete", name]);
    rmSync(join("/run/netns", name), { force: true });
  }
  lap("mounts");
  // 3. Links: veths left on the bridge, then the bridge (its routes go with it).
  for (const veth of vethsOnBridge()) run("ip", ["link", "delete", veth]);
  if (linkExists(NODE_NETWORK.bridge)) run("ip", ["link", "delete", NODE_NETWORK.bridge]);
  lap("links");
  // 4. Packet filtering: our nftables tables, kubelet's and CNI's iptables chains.
  const record = existsSync(recordPath())
    ? (JSON.parse(readFileSync(recordPath(), "utf8")) as Record_)
    : undefined;
  for (const [family, name] of NFT_TABLES_OF_OURS) run("nft", ["delete", "table", family, name]);
  deleteIptablesChains("iptables");
  deleteIptablesChains("ip6tables");
  // iptables-nft makes its tables (ip filter, ip nat, ...) on first use: remove the ones that
  // were not there before and hold no rule now.
  if (record) {
    for (const table of nftTables()) {
      if (record.nftTablesBefore.includes(table)) continue;
      const [family, name] = table.split(" ");
      if (!family || !name || !["ip", "ip6"].includes(family)) continue;
      const listing = run("nft", ["list", "table", family, name]).stdout;
      const hasRules = listing
        .split("\n")
        .some((line) => /^\s+(?!type |policy |chain |})\S/.test(line) && !line.trim().startsWith("chain"));
      if (!hasRules) run("nft", ["delete", "table", family, name]);
    }
  }
  lap("filters");
  // 5. Connection tracking entries of our ranges.
  for (const args of [
    ["-s", NODE_NETWORK.ours],
    ["-d", NODE_NETWORK.ours],
    ["--reply-src", NODE_NETWORK.ours],
  ]) {
    run("conntrack", ["-D", ...args]);
  }
  lap("conntrack");
  // 6. CNI's cache of our network's results (libcni keeps it in /var/lib/cni, not configurable in containerd 1.6).
  const cniResults = "/var/lib/cni/results";
  if (existsSync(cniResults)) {
    for (const name of readdirSync(cniResults))
      if (name.startsWith(`${NODE_NETWORK.cniNetwork}-`)) rmSync(join(cniResults, name), { force: true });
  }
  // 7. Sysctls back to what they were before the first run that changed them.
  if (record) for (const [name, value] of Object.entries(record.sysctls)) writeSysctl(name, value);
  lap("cni-sysctls");
  // 8. Cgroups, leaf first (they are empty now).
  for (const dir of cgroupDirsDeepestFirst()) {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        rmdirSync(dir);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") break;
        sleepSync(50);
      }
    }
  }
  lap("cgroups");
  // 9. The state directory, unless kept for a post-mortem (its logs), and the directories
  // recorded in it (a killed run's control plane). The lock stays.
  if (existsSync(ownedDirsPath()) && !process.env.OFFSITE_KEEP_TEST_CLUSTER) {
    for (const dir of readFileSync(ownedDirsPath(), "utf8").split("\n"))
      if (dir.trim()) rmSync(dir.trim(), { recursive: true, force: true });
  }
  if (existsSync(state)) {
    for (const entry of readdirSync(state)) {
      if (entry === "lock") continue;
      if (process.env.OFFSITE_KEEP_TEST_CLUSTER && entry === "logs") continue;
      rmSync(join(state, entry), { recursive: true, force: true });
    }
  }
  lap("state-dir");
  return timings;
}

/** What of ours is still on the host, one line per thing; empty after a clean teardown. */
export function leftovers(): string[] {
  const found: string[] = [];
  for (const pid of ourProcesses()) found.push(`process ${pid}`);
  for (const point of ourMounts()) found.push(`mount ${point}`);
  for (const name of ourNetns()) found.push(`netns ${name}`);
  if (linkExists(NODE_NETWORK.bridge)) found.push(`link ${NODE_NETWORK.bridge}`);
  const veths = run("ip", ["-o", "link", "show", "type", "veth"]).stdout.trim();
  if (veths) found.push(`veth links: ${veths}`);
  const tables = nftTables();
  for (const [family, name] of NFT_TABLES_OF_OURS)
    if (tables.includes(`${family} ${name}`)) found.push(`nft table ${family} ${name}`);
  for (const tool of ["iptables", "ip6tables"] as const)
    for (const { table, chain } of ourIptablesChains(tool)) found.push(`${tool} chain ${table}/${chain}`);
  for (const dir of cgroupDirsDeepestFirst()) found.push(`cgroup ${dir}`);
  const routes = run("ip", ["route", "show"]).stdout;
  if (/198\.1[89]\./.test(routes)) found.push(`routes: ${routes.trim()}`);
  const conntrack = run("conntrack", ["-L", "-s", NODE_NETWORK.ours]).stdout.trim();
  if (conntrack) found.push(`conntrack: ${conntrack}`);
  return found;
}

/** Whether this machine can run the node at all: Linux, root, the packages installed. */
export function nodeUnsupportedReason(ensurePackagesScript: string): string | undefined {
  if (process.platform !== "linux") return "the real node needs Linux";
  if (process.getuid?.() !== 0) return "the real node needs root (network, cgroups, mounts)";
  const packages = run("bash", [ensurePackagesScript]);
  if (packages.code !== 0) return `the real node's packages are missing: ${packages.stderr.trim()}`;
  return undefined;
}

export function execQuiet(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
