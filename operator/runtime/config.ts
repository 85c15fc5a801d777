/**
 * The operator's configuration: command-line flags, each with an OFFSITE_* environment
 * variable as fallback, validated by zod. A bad value stops start-up with a message that
 * names the flag and what it accepts.
 */
import { parseArgs } from "node:util";
import { hostname } from "node:os";
import { z } from "zod";
import { DURATION, QUANTITY, durationToMs, sizeToBytes } from "../../contract/units.ts";

// The one duration format and parser (contract/units.ts), as in the CRDs and the agent.
const durationMs = z
  .string()
  .regex(DURATION, "must be a duration like 500ms, 15s, 2m or 1h30m")
  .transform((value) => durationToMs(value));

const memory = z.string().regex(QUANTITY, "must be a memory quantity like 32Mi, 256Mi or 1Gi");
const cpu = z
  .string()
  .regex(/^([0-9]+(\.[0-9]+)?|\.[0-9]+)m?$/, "must be a CPU quantity like 10m, 250m or 1");

/** A comma-separated list; empty items dropped. */
const list = z.string().transform((value) =>
  value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== ""),
);

const configSchema = z
  .object({
    namespace: z.string().min(1).describe("namespace of the leader Lease (the operator's own)"),
    identity: z.string().min(1).describe("this replica's name in the Lease"),
    metricsAddress: z.string().regex(/^[^:]*:\d+$/, "must be host:port, e.g. :8080 or 127.0.0.1:8080"),
    leaderElection: z.enum(["true", "false"]).transform((v) => v === "true"),
    leaseName: z.string().min(1),
    leaseDuration: durationMs,
    renewDeadline: durationMs,
    retryPeriod: durationMs,
    agentImage: z.string().min(1),
    concurrency: z.coerce.number().int().min(1).max(64),
    relistPeriod: durationMs,
    logLevel: z.enum(["trace", "debug", "info", "warn", "error"]),
    kubeconfig: z.string().optional(),
    // The sidecar injection webhook (operator/webhook/): every replica serves it.
    webhookAddress: z
      .string()
      .regex(/^(|off|[^:]*:\d+)$/, 'must be host:port, e.g. :9443, or "off"')
      .transform((value) => (value === "" || value === "off" ? undefined : value)),
    webhookService: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a Service name"),
    webhookUrl: z
      .string()
      .regex(/^https:\/\/[^/]+(\/.*)?$/, "must be an https:// URL, e.g. https://127.0.0.1:9443/mutate-pods")
      .optional(),
    webhookHost: list,
    agentCpuRequest: cpu,
    agentMemoryRequest: memory,
    agentMemoryLimit: memory,
  })
  .refine((c) => c.renewDeadline < c.leaseDuration, {
    message: "--renew-deadline must be shorter than --lease-duration",
    path: ["renewDeadline"],
  })
  // Zod runs this even when a field above failed; a bad quantity is reported there.
  .refine(
    (c) =>
      !QUANTITY.test(c.agentMemoryRequest ?? "") ||
      !QUANTITY.test(c.agentMemoryLimit ?? "") ||
      sizeToBytes(c.agentMemoryRequest) <= sizeToBytes(c.agentMemoryLimit),
    {
      message: "--agent-memory-request must not exceed --agent-memory-limit",
      path: ["agentMemoryRequest"],
    },
  );

export type OperatorConfig = z.output<typeof configSchema>;

const FLAGS = {
  namespace: { env: "OFFSITE_NAMESPACE", default: "offsite-system" },
  identity: { env: "OFFSITE_IDENTITY", default: undefined },
  "metrics-address": { env: "OFFSITE_METRICS_ADDRESS", default: ":8080" },
  "leader-election": { env: "OFFSITE_LEADER_ELECTION", default: "true" },
  "lease-name": { env: "OFFSITE_LEASE_NAME", default: "offsite-operator" },
  "lease-duration": { env: "OFFSITE_LEASE_DURATION", default: "15s" },
  "renew-deadline": { env: "OFFSITE_RENEW_DEADLINE", default: "10s" },
  "retry-period": { env: "OFFSITE_RETRY_PERIOD", default: "2s" },
  "agent-image": { env: "OFFSITE_AGENT_IMAGE", default: "ghcr.io/offsite-dev/offsite-agent:0.1.0" },
  concurrency: { env: "OFFSITE_CONCURRENCY", default: "4" },
  "relist-period": { env: "OFFSITE_RELIST_PERIOD", default: "10m" },
  "log-level": { env: "OFFSITE_LOG_LEVEL", default: "info" },
  kubeconfig: { env: "KUBECONFIG", default: undefined },
  "webhook-address": { env: "OFFSITE_WEBHOOK_ADDRESS", default: ":9443" },
  "webhook-service": { env: "OFFSITE_WEBHOOK_SERVICE", default: "offsite-operator-webhook" },
  "webhook-url": { env: "OFFSITE_WEBHOOK_URL", default: undefined },
  "webhook-host": { env: "OFFSITE_WEBHOOK_HOST", default: "" },
  "agent-cpu-request": { env: "OFFSITE_AGENT_CPU_REQUEST", default: "10m" },
  "agent-memory-request": { env: "OFFSITE_AGENT_MEMORY_REQUEST", default: "32Mi" },
  "agent-memory-limit": { env: "OFFSITE_AGENT_MEMORY_LIMIT", default: "256Mi" },
} as const;

export const USAGE = `usage: offsite-operator [flags]
${Object.entries(FLAGS)
  .map(
    ([flag, { env, default: d }]) =>
      `  --${flag.padEnd(20)} (env ${env}${d !== undefined ? `, default ${d}` : ""})`,
  )
  .join("\n")}`;

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Parses flags and environment; throws an Error whose message lists every problem. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: "string" as const }])),
    strict: true,
  });
  const raw: Record<string, unknown> = {};
  for (const [flag, { env: name, default: fallback }] of Object.entries(FLAGS)) {
    raw[camel(flag)] = values[flag] ?? env[name] ?? fallback;
  }
  raw.identity ??= `${hostname()}-${process.pid}`;
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const flag = Object.keys(FLAGS).find((f) => camel(f) === key) ?? key;
      return `  --${flag}: ${issue.message}`;
    });
    throw new Error(`invalid configuration:\n${problems.join("\n")}\n${USAGE}`);
  }
  return parsed.data;
}
