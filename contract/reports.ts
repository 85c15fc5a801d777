/**
 * What agents report back to the operator, and what the operator asks of them: the
 * messages of the control channel specified in agent/CONTROL.md (the data session is
 * agent/PROTOCOL.md). Both sides validate with these schemas; a message that does not
 * parse is reported in status as Unknown with the parse error, never acted upon.
 *
 * The one subtle point: every message names the agent's identity and, for a pair, the
 * epoch it acts in, so the operator can tell a late report of an old primary from a
 * current one (fencing, when failover comes).
 */
import { z } from "zod";
import { globPattern } from "./filters.ts";
import { guidSchema } from "./guid.ts";
import { versionIdSchema } from "./versions.ts";

export const CONTROL_API_VERSION = "v1";
/** The default port of an agent's control endpoint (the data session's is 5722). */
export const DEFAULT_CONTROL_PORT = 5723;

/**
 * Who may call an agent's control endpoint: a client certificate from the **operator's
 * CA** with exactly this subject (CN and O). The operator's CA issues nothing else but
 * agents' control serving certificates (CN `offsite-agent`), and no source certificate
 * ever comes from it, so no site or source GUID can pose as the operator.
 */
export const OPERATOR_CONTROL_IDENTITY = { commonName: "offsite-operator", organization: "offsite-operator" };
/** The subject of an agent's control serving certificate (issued by the operator's CA). */
export const AGENT_CONTROL_COMMON_NAME = "offsite-agent";

const guid = guidSchema();
const timestamp = z.iso.datetime();
const count = z.number().int().nonnegative();
const versionId = versionIdSchema;

/** GET /v1/receiver: a receiver's facts about its own disk. */
export const receiverReport = z.strictObject({
  reportedAt: timestamp,
  /** The data volume as statfs sees it. */
  volume: z.strictObject({ totalBytes: count, usedBytes: count }),
  jobsRunning: count,
  sources: z
    .array(
      z.strictObject({
        site: guid,
        source: guid,
        /** When a session of this source last ended, whatever its outcome. */
        lastSessionAt: timestamp.optional(),
        lastOutcome: z.enum(["committed", "compared", "restored", "failed", "refused"]).optional(),
        versions: count,
        latestVersion: versionId.optional(),
        bytesStored: count,
      }),
    )
    .max(100_000),
});
export type ReceiverReport = z.infer<typeof receiverReport>;

const pem = z.string().min(1).max(16384);
/** What a sending agent selects and what its content firewall stops (jobs and replication). */
const filterFields = {
  filters: z.strictObject({
    include: z.array(globPattern).max(1000),
    exclude: z.array(globPattern).max(1000),
    maxFileSize: count.optional(),
  }),
  contentFirewall: z.strictObject({
    enabled: z.boolean(),
    blockExecutables: z.boolean(),
    blockScripts: z.boolean(),
    blockPatterns: z.array(globPattern).max(1000),
    allowPatterns: z.array(globPattern).max(1000),
  }),
};

/** POST /v1/jobs: the whole job in one request (the BackupJob controller sends it). */
export const jobRequest = z.strictObject({
  /** The operator's run id; a request with the id of a running or finished job attaches to it. */
  jobId: z.string().min(1).max(128),
  mode: z.enum(["push", "compare", "restore"]),
  site: guid,
  source: guid,
  /** The directory inside the agent's view of the volume. */
  path: z.string().min(1).max(4096),
  target: z.strictObject({
    /** host:port of the receiver (an OffsiteServer's Service name inside the cluster). */
    endpoint: z.string().min(1).max(300),
    /** The receiver's CA (PEM); its serving certificate must chain to it. */
    caCertificate: pem,
    /** Verify the receiver's certificate for this name instead of the endpoint's host. */
    serverName: z.string().min(1).max(253).optional(),
  }),
  /**
   * The source's client certificate for the data session (CN = source, O = site, from the
   * target's CA) and its key, PEM. It travels with each job, so a sidecar holds no data-
   * plane credential between jobs, a rotated certificate takes effect at the next job,
   * and one sidecar can serve several BackupJobs with different targets.
   */
  credentials: z.strictObject({ certificate: pem, privateKey: pem }),
  ...filterFields,
  checksum: z.boolean(),
  /** compare and restore: the version; the newest when absent. */
  version: versionId.optional(),
  /** restore: remove files under `path` that the version does not hold (rsync --delete). */
  deleteExtra: z.boolean().optional(),
  /** The run is abandoned (and resumes next time) past this many milliseconds. */
  deadlineMs: z.number().int().positive(),
});
export type JobRequest = z.infer<typeof jobRequest>;

/** One line of the job's NDJSON stream while it runs. */
export const jobProgress = z.strictObject({
  type: z.literal("progress"),
  jobId: z.string().max(128),
  at: timestamp,
  phase: z.enum(["scanning", "sending", "committing", "restoring"]),
  filesDone: count,
  filesTotal: count,
  bytesDone: count,
  bytesTotal: count,
});

/** The last line of the stream: how the job ended. */
export const jobResult = z.strictObject({
  type: z.literal("result"),
  jobId: z.string().max(128),
  at: timestamp,
  /** partial: the job completed without some entries, each listed in `problems`. */
  outcome: z.enum(["succeeded", "partial", "failed"]),
  version: versionId.optional(),
  /** For a failure: the protocol's or the agent's stable code (busy, suspended, disk-full, ...). */
  code: z.string().max(64).optional(),
  message: z.string().max(4096).optional(),
  /**
   * scanned: entries on the source; changed: sent or linked with new metadata (restore:
   * written); deleted: removed from the version (restore: extra files removed); filtered:
   * left out by filters; stopped: left out by the content firewall.
   */
  files: z.strictObject({ scanned: count, changed: count, deleted: count, filtered: count, stopped: count }),
  /** sent: on the wire to the receiver; changed: content of the changed files (restore: written). */
  bytes: z.strictObject({ sent: count, changed: count }),
  /** push: the job continued a session interrupted before (only what was not durable was sent). */
  resumed: z.boolean().optional(),
  /** compare: the counts and the first differences; the full report is GET /v1/jobs/{jobId}/report. */
  compare: z
    .strictObject({
      match: z.boolean(),
      added: count,
      changed: count,
      missing: count,
      metadata: count,
      first: z
        .array(
          z.strictObject({
            path: z.string().max(4096),
            kind: z.enum(["added", "changed", "missing", "metadata"]),
          }),
        )
        .max(100),
    })
    .optional(),
  problems: z.array(z.strictObject({ path: z.string().max(4096), reason: z.string().max(256) })).max(1000),
});
export type JobResult = z.infer<typeof jobResult>;
export type JobProgress = z.infer<typeof jobProgress>;
export const jobEvent = z.discriminatedUnion("type", [jobProgress, jobResult]);
export type JobEvent = z.infer<typeof jobEvent>;

/** Where a standby's agent listens for its primary unless told otherwise. */
export const DEFAULT_REPLICATION_PORT = 5725;

/**
 * PUT /v1/replication: the role this agent plays in a ReplicationPair. The controller sends
 * the whole desired role on every reconcile; the same request again changes nothing (it is
 * level-based), another one restarts the role with it, DELETE stops it.
 */
export const replicationRequest = z.strictObject({
  /** The pair's GUID: the `source` of the replication session, the primary certificate's CN. */
  pair: guid,
  site: guid,
  role: z.enum(["primary", "standby"]),
  /** Raised by every failover; a standby refuses a primary of an older one. */
  epoch: z
    .number()
    .int()
    .nonnegative()
    .max(2 ** 31 - 1),
  /** The replicated directory inside the agent's view of the volume. */
  path: z.string().min(1).max(4096),
  /** The pair's CA (PEM): the other side's certificate must chain to it. */
  caCertificate: pem,
  /** primary: its client certificate (CN = pair, O = site); standby: its serving certificate. */
  credentials: z.strictObject({ certificate: pem, privateKey: pem }),
  /** primary: the standby's agent, host:port (the pair's standby Service). */
  standby: z
    .strictObject({
      endpoint: z.string().min(1).max(300),
      /** Verify the standby's certificate for this name instead of the endpoint's host. */
      serverName: z.string().min(1).max(253).optional(),
    })
    .optional(),
  /** standby: the port to listen on (DEFAULT_REPLICATION_PORT when absent). */
  listenPort: z.number().int().min(1).max(65535).optional(),
  /** primary: where its journal lives (a directory that survives the agent's restart). */
  stateDir: z.string().min(1).max(4096).optional(),
  ...filterFields,
  batchWindowMs: z.number().int().min(1).max(60_000),
});
export type ReplicationRequest = z.infer<typeof replicationRequest>;

const recentFile = z.strictObject({ path: z.string().max(4096), reason: z.string().max(256), at: timestamp });

/** GET /v1/replication: what the role is doing, for the pair's status and metrics. */
export const replicationReport = z.strictObject({
  at: timestamp,
  role: z.enum(["primary", "standby", "none"]),
  pair: guid.optional(),
  epoch: z.number().int().nonnegative().optional(),
  /**
   * primary: connecting, syncing (the catch-up runs), streaming, disconnected (the standby is
   * away; changes are journaled), failed (refused for good: another pair, an older epoch);
   * standby: listening (no primary connected), serving, failed.
   */
  state: z.enum([
    "none",
    "connecting",
    "syncing",
    "streaming",
    "disconnected",
    "listening",
    "serving",
    "failed",
  ]),
  message: z.string().max(4096).optional(),
  /** primary: changes seen and not yet durable on the standby. */
  pendingChanges: count,
  /** primary: change → durable on the standby, of the last batch acknowledged, in milliseconds. */
  lastLagMs: count.optional(),
  /** primary: when the standby last caught up completely (nothing pending). */
  lastSyncTime: timestamp.optional(),
  /** standby: when it last made a batch durable. */
  lastAppliedAt: timestamp.optional(),
  batchesApplied: count,
  bytesSent: count,
  /** Files the content firewall stopped so far, and the most recent ones. */
  blocked: count,
  recentBlocked: z.array(recentFile).max(20),
  /** Entries that could not be read (the standby keeps its last good copy), most recent. */
  recentProblems: z.array(recentFile).max(20),
});
export type ReplicationReport = z.infer<typeof replicationReport>;

/** One line of GET /v1/heartbeat?watch=1, every heartbeatInterval (replicate and standby roles). */
export const heartbeat = z.strictObject({
  at: timestamp,
  role: z.enum(["primary", "standby"]),
  /** The epoch of the pair the agent acts in; the operator raises it at each failover. */
  epoch: z.number().int().nonnegative(),
  healthy: z.boolean(),
  /** primary: changes not yet durable on the standby; standby: the newest change applied. */
  pendingChanges: count,
  lastAppliedAt: timestamp.optional(),
  message: z.string().max(1024).optional(),
});
export type Heartbeat = z.infer<typeof heartbeat>;
