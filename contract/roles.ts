/**
 * The options of each agent role, as flag tables (flags.ts): the `offsite` CLI parses
 * them, the operator renders container arguments from them, and a test runs every
 * rendered argument list back through the agent's parser.
 *
 * The one subtle point: the receiver's options are what an OffsiteServer's spec says
 * (retention, concurrency, suspended sources), so a field added to that CRD must appear
 * here or it would silently never reach the receiver.
 */
import { DEFAULT_RETENTION, RETENTION_LIMIT, type RetentionPolicy } from "./retention.ts";
import type { FilterOptions } from "./filters.ts";
import { flags, type OptionsOf } from "./flags.ts";
import { DEFAULT_CONTROL_PORT } from "./reports.ts";

export const DEFAULT_PORT = 5722;
/** Where a standby listens for its primary (`offsite standby --port`). */
export const DEFAULT_STANDBY_PORT = 5725;
/** Where the operator has a receiver serve its probes (`--health-port`). */
export const DEFAULT_HEALTH_PORT = 5724;
export const DEFAULT_MAX_CONCURRENT_JOBS = 16;
/** A receiver ends a session whose client is silent this long (agent/PROTOCOL.md, "Timeouts"). */
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;

/** Files of a certificate directory (`--certs DIR`), and the keys of a TLS Secret. */
export const CERT_FILES = { ca: "ca.crt", cert: "tls.crt", key: "tls.key" } as const;

const retentionCount = (what: string, min: number, fallback: number) =>
  flags.integer(what, { min, max: RETENTION_LIMIT }, { default: fallback });

export const receiveFlags = {
  root: flags.text("Directory of the store: DIR/<site GUID>/<source GUID>/ holds a source's versions.", {
    required: true,
    placeholder: "DIR",
  }),
  certs: flags.text("Directory with ca.crt, tls.crt and tls.key (the receiver's certificate and its CA).", {
    required: true,
    placeholder: "DIR",
  }),
  host: flags.text("Address to listen on.", { default: "0.0.0.0", placeholder: "ADDRESS" }),
  port: flags.integer(
    "TCP port to listen on (0: any free port).",
    { min: 0, max: 65535 },
    { default: DEFAULT_PORT },
  ),
  keepLast: retentionCount("Keep each source's newest N versions.", 1, DEFAULT_RETENTION.keepLast),
  keepDaily: retentionCount(
    "Also keep the newest version of each of the last N days.",
    0,
    DEFAULT_RETENTION.keepDaily,
  ),
  keepWeekly: retentionCount("... of each of the last N ISO weeks.", 0, DEFAULT_RETENTION.keepWeekly),
  keepMonthly: retentionCount("... of each of the last N months.", 0, DEFAULT_RETENTION.keepMonthly),
  maxConcurrentJobs: flags.integer(
    "Jobs (push, compare, restore sessions) served at once; one more is refused as busy.",
    { min: 1, max: 1024 },
    { default: DEFAULT_MAX_CONCURRENT_JOBS },
  ),
  suspendedSources: flags.guids("A source whose pushes are refused as suspended (repeat the flag).", {
    flag: "suspended-source",
  }),
  idleTimeout: flags.duration(
    "End a session whose client sends or reads nothing for this long, freeing its source.",
    { default: DEFAULT_IDLE_TIMEOUT_MS },
  ),
  healthPort: flags.integer(
    "Serve probes over HTTP on this port (0: off): GET /healthz answers while the process works, " +
      "GET /readyz once it accepts TLS connections.",
    { min: 0, max: 65535 },
    { default: 0 },
  ),
  controlPort: flags.integer(
    "Serve the control endpoint (GET /v1/receiver: check-ins and usage for the operator) on this " +
      "port (0: off); needs --control-certs.",
    { min: 0, max: 65535 },
    { default: 0 },
  ),
  controlCerts: flags.text(
    "Directory with the control endpoint's tls.crt and tls.key and ca.crt (the operator's CA), " +
      "as for `offsite agent`.",
    { placeholder: "DIR" },
  ),
};
export type ReceiveOptions = OptionsOf<typeof receiveFlags>;

/** Where a job's pusher keeps its cache of what the receiver holds (agent/PROTOCOL.md, "Receiver state cache"). */
const cacheFlag = (fallback: string) =>
  flags.text(
    "Directory of the cache of what the receiver holds, which spares an incremental push " +
      `downloading the receiver's entries (${fallback}; 'none': no cache).`,
    { placeholder: "DIR" },
  );

/**
 * `offsite agent`: the long-lived agent beside the data (a BackupJob's sidecar, a mover
 * pod) that runs the jobs the operator sends to its control port (agent/CONTROL.md).
 * It holds no data-plane credential: each job brings its own.
 */
export const agentFlags = {
  controlCerts: flags.text(
    "Directory with tls.crt and tls.key (this agent's control serving certificate) and ca.crt " +
      "(the operator's CA: only its offsite-operator client certificate may send jobs). " +
      "Read again at every connection, so a rotated Secret takes effect without a restart; " +
      "while it is missing or unreadable the agent waits, reports it, and refuses connections.",
    { required: true, placeholder: "DIR" },
  ),
  host: flags.text("Address to listen on.", { default: "0.0.0.0", placeholder: "ADDRESS" }),
  controlPort: flags.integer(
    "TCP port of the control endpoint (0: any free port).",
    { min: 0, max: 65535 },
    { default: DEFAULT_CONTROL_PORT },
  ),
  healthPort: flags.integer(
    "Serve probes over HTTP on this port (0: off): GET /healthz while the process works, " +
      "GET /readyz once the control endpoint accepts connections.",
    { min: 0, max: 65535 },
    { default: 0 },
  ),
  allowStandby: flags.switch(
    "Accept the standby role of a ReplicationPair (PUT /v1/replication), which writes into the " +
      "data: on only in a pair's standby pods, whose data mount is writable.",
  ),
  cache: cacheFlag("for push jobs; default none"),
  allowRestore: flags.switch(
    "Accept restore jobs. Off for a backup sidecar (its data mount is read-only too), so the " +
      "agent that protects the data can never write it; on in the operator's restore mover pods.",
  ),
};
export type AgentOptions = OptionsOf<typeof agentFlags>;

export function retentionOf(options: ReceiveOptions): RetentionPolicy {
  const { keepLast, keepDaily, keepWeekly, keepMonthly } = options;
  return { keepLast, keepDaily, keepWeekly, keepMonthly };
}

/** Who the client is on a receiver: its certificate directory and, optionally, GUIDs that override it. */
const identityFlags = {
  certs: flags.text("Directory with this source's client certificate (ca.crt, tls.crt, tls.key).", {
    placeholder: "DIR",
  }),
  site: flags.guid("Site GUID; the client certificate's O when absent."),
  source: flags.guid(
    "Source GUID; the client certificate's CN when absent (for a local DIR: derived from SRC).",
  ),
  tlsServerName: flags.text(
    "Verify the receiver's certificate for this name instead of HOST (through a tunnel or kubectl port-forward).",
    { placeholder: "NAME" },
  ),
};

/** What a sending job selects; filters run on the agent, so filtered data never leaves. */
const selectionFlags = {
  include: flags.texts("Only files matching this glob (repeat; '**' crosses directories).", {
    placeholder: "GLOB",
  }),
  exclude: flags.texts("Leave out files and directories matching this glob (repeat).", {
    placeholder: "GLOB",
  }),
  maxFileSize: flags.size("Leave out files larger than this (e.g. 1Gi)."),
  firewall: flags.switch("Content firewall: stop executables and scripts (by content) from crossing."),
  firewallExecutables: flags.switch("The firewall stops ELF, PE and Mach-O binaries.", { default: true }),
  firewallScripts: flags.switch("The firewall stops scripts (#! or a script extension).", { default: true }),
  firewallBlock: flags.texts("The firewall also stops files matching this glob (repeat).", {
    placeholder: "GLOB",
  }),
  firewallAllow: flags.texts("The firewall lets files matching this glob through (repeat).", {
    placeholder: "GLOB",
  }),
  checksum: flags.switch("Hash every file instead of trusting size, mtime and mode."),
};

/** --to / --from: where the job goes or comes from. */
const receiverAddress = () =>
  flags.text("The receiver (HOST:PORT, with --certs) or a local directory.", {
    required: true,
    placeholder: "HOST:PORT|DIR",
  });
const versionFlag = (what: string) => flags.version(`The version to ${what}; the newest when absent.`);

const sendingFlags = {
  to: receiverAddress(),
  ...identityFlags,
  ...selectionFlags,
};

export const pushFlags = {
  ...sendingFlags,
  cache: cacheFlag("default $XDG_CACHE_HOME/offsite, else ~/.cache/offsite, as restic keeps its cache"),
};
export type PushOptions = OptionsOf<typeof pushFlags>;

export const compareFlags = {
  ...sendingFlags,
  version: versionFlag("compare with"),
};
export type CompareOptions = OptionsOf<typeof compareFlags>;

export const restoreFlags = {
  from: receiverAddress(),
  ...identityFlags,
  version: versionFlag("restore"),
};
export type RestoreOptions = OptionsOf<typeof restoreFlags>;

/** A replicator compares by content only where it must (the journal's suspects): no --checksum. */
function withoutChecksum<T extends { checksum: unknown }>(table: T): Omit<T, "checksum"> {
  const { checksum: _, ...rest } = table;
  return rest;
}

/** `offsite replicate`: the primary side of a replication pair (agent/PROTOCOL.md, "Replication"). */
export const replicateFlags = {
  to: flags.text("The standby (HOST:PORT of `offsite standby`, with --certs) or a local directory.", {
    required: true,
    placeholder: "HOST:PORT|DIR",
  }),
  ...identityFlags,
  ...withoutChecksum(selectionFlags),
  firewall: flags.switch(
    "Content firewall: stop executables and scripts (by content) from crossing (on for pairs).",
    { default: true },
  ),
  epoch: flags.integer(
    "The pair's epoch; every failover raises it.",
    { min: 0, max: 2 ** 31 - 1 },
    { default: 0 },
  ),
  batchWindow: flags.duration(
    "Changes within this window travel together; a file is sent once it is quiet for this long.",
    { default: 50 },
  ),
  state: flags.text("Directory of the journal (default SRC/.offsite, which is never replicated).", {
    placeholder: "DIR",
  }),
};
export type ReplicateOptions = OptionsOf<typeof replicateFlags>;

/** `offsite standby`: the standby side of a pair, a live tree served as it is kept current. */
export const standbyFlags = {
  root: flags.text(
    "The live tree the primary's changes are applied to (DIR/.offsite is the standby's own).",
    {
      required: true,
      placeholder: "DIR",
    },
  ),
  certs: flags.text(
    "Directory with ca.crt, tls.crt and tls.key (the standby's certificate and the pair's CA).",
    {
      required: true,
      placeholder: "DIR",
    },
  ),
  host: flags.text("Address to listen on.", { default: "0.0.0.0", placeholder: "ADDRESS" }),
  port: flags.integer(
    "TCP port to listen on (0: any free port).",
    { min: 0, max: 65535 },
    { default: DEFAULT_STANDBY_PORT },
  ),
  pair: flags.guid(
    "The pair (the primary certificate's CN) this standby serves; the first primary's when absent.",
  ),
  firewall: flags.switch(
    "Keep executables and scripts (by content) out of the tree, whatever the primary sends.",
    {
      default: true,
    },
  ),
  healthPort: flags.integer(
    "Serve probes over HTTP on this port (0: off).",
    { min: 0, max: 65535 },
    { default: 0 },
  ),
};
export type StandbyOptions = OptionsOf<typeof standbyFlags>;

export const certsFlags = {
  out: flags.text("Directory for the CA (DIR/ca, reused), receiver and source certificates.", {
    required: true,
    placeholder: "DIR",
  }),
  hosts: flags.texts("A DNS name or IP the receiver's certificate is valid for (repeat).", {
    flag: "host",
    placeholder: "NAME",
  }),
  site: flags.guid("Site GUID of the client certificates; a new random one when absent."),
  sources: flags.guids("Issue a client certificate for this source (repeat).", { flag: "source" }),
};
export type CertsOptions = OptionsOf<typeof certsFlags>;

/** The filters a push or compare runs with, from its options. */
export function filterOptionsOf(options: PushOptions | CompareOptions | ReplicateOptions): FilterOptions {
  return {
    include: options.include,
    exclude: options.exclude,
    ...(options.maxFileSize !== undefined ? { maxFileSize: options.maxFileSize } : {}),
    firewall: {
      enabled: options.firewall,
      blockExecutables: options.firewallExecutables,
      blockScripts: options.firewallScripts,
      blockPatterns: options.firewallBlock,
      allowPatterns: options.firewallAllow,
    },
  };
}

/** Every role's table, for the CLI's dispatch and the round-trip test. */
export const ROLE_FLAGS = {
  receive: receiveFlags,
  agent: agentFlags,
  push: pushFlags,
  compare: compareFlags,
  restore: restoreFlags,
  replicate: replicateFlags,
  standby: standbyFlags,
  certs: certsFlags,
} as const;
export type Role = keyof typeof ROLE_FLAGS;
