/**
 * Runs the real operator (node operator/main.ts) against a test cluster, as a process a
 * test can read (logs, /metrics) and kill (SIGTERM for a graceful stop, SIGKILL for a crash).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { freePort } from "../cluster/controlPlane.ts";
import type { TestCluster } from "../cluster/testCluster.ts";

const MAIN = join(import.meta.dirname, "..", "..", "operator", "main.ts");
const RBAC = join(import.meta.dirname, "..", "..", "operator", "deploy", "rbac.yaml");

/**
 * The operator's ServiceAccount in the cluster's namespace, bound to exactly the rules of
 * operator/deploy/rbac.yaml (and, unless `leaderElection` is false, the leader-election
 * Role), so a rule the operator lacks fails the suite. Returns its kubeconfig.
 */
export async function operatorServiceAccount(
  cluster: Pick<TestCluster, "namespace" | "kubectl" | "serviceAccountKubeconfig">,
  options: { leaderElection?: boolean } = {},
): Promise<string> {
  const namespace = cluster.namespace;
  const steps = [
    ["apply", "-n", namespace, "-f", RBAC],
    ["create", "serviceaccount", "offsite-operator", "-n", namespace],
    [
      "create",
      "clusterrolebinding",
      `offsite-operator-${namespace}`,
      "--clusterrole=offsite-operator",
      `--serviceaccount=${namespace}:offsite-operator`,
    ],
    ...(options.leaderElection === false
      ? []
      : [
          [
            "create",
            "rolebinding",
            "offsite-operator-leader-election",
            "-n",
            namespace,
            "--role=offsite-operator-leader-election",
            `--serviceaccount=${namespace}:offsite-operator`,
          ],
        ]),
  ];
  for (const args of steps) {
    const done = await cluster.kubectl(args);
    if (done.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed: ${done.stderr}`);
  }
  return cluster.serviceAccountKubeconfig("offsite-operator");
}

export interface OperatorProcess {
  readonly identity: string;
  readonly child: ChildProcess;
  logs(): string;
  /** Parsed JSON log lines. */
  logLines(): Record<string, unknown>[];
  metrics(): Promise<string>;
  /** The value of a metric series, e.g. metric('offsite_leader_is_leader'). */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface OperatorOptions {
  kubeconfig: string;
  /** Where the leader Lease lives. */
  namespace: string;
  identity: string;
  leaseDuration?: string;
  renewDeadline?: string;
  retryPeriod?: string;
  extraArgs?: string[];
}

export async function startOperator(options: OperatorOptions): Promise<OperatorProcess> {
  const port = await freePort();
  const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
  const child = spawn(
    process.execPath,
    [
      MAIN,
      `--kubeconfig=${options.kubeconfig}`,
      `--namespace=${options.namespace}`,
      `--identity=${options.identity}`,
      `--metrics-address=127.0.0.1:${port}`,
      `--lease-duration=${options.leaseDuration ?? "3s"}`,
      `--renew-deadline=${options.renewDeadline ?? "2s"}`,
      `--retry-period=${options.retryPeriod ?? "250ms"}`,
      "--agent-image=offsite/agent:test",
      // Off unless a suite asks for it (extraArgs win): the default :9443 would be one port
      // for every operator process on this machine.
      "--webhook-address=off",
      ...(options.extraArgs ?? []),
    ],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  const metrics = async () => {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    return response.text();
  };
  const handle: OperatorProcess = {
    identity: options.identity,
    child,
    logs: () => output,
    logLines: () =>
      output
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    metrics,
    async metric(name, labels = {}) {
      const text = await metrics().catch(() => "");
      for (const line of text.split("\n")) {
        const match = /^([a-z_:]+)(\{([^}]*)\})? ([-+0-9.eE]+|NaN)$/.exec(line);
        if (!match || match[1] !== name) continue;
        const series = Object.fromEntries(
          [...(match[3] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]] as [string, string]),
        );
        if (Object.entries(labels).every(([k, v]) => series[k] === v)) return Number(match[4]);
      }
      return undefined;
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  // Wait until it serves /metrics (or dies trying). Start-up takes well under a second on
  // an idle machine but over 10 s on a shared, loaded one (CI): the bound is generous, and
  // a process that never came up is killed rather than left behind the test.
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the operator exited at start-up:\n${output}`);
    if (
      await metrics().then(
        () => true,
        () => false,
      )
    )
      return handle;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await handle.stop("SIGKILL");
  throw new Error(`the operator never served /metrics within ${START_TIMEOUT_MS} ms:\n${output}`);
}

const START_TIMEOUT_MS = 90_000;

/** Polls `probe` until it returns a value; fails with `what` and the operator's logs. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 60_000,
  logsOf: OperatorProcess[] = [],
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const logs = logsOf
        .map((o) => `--- ${o.identity}\n${o.logs().split("\n").slice(-25).join("\n")}`)
        .join("\n");
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${logs}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
