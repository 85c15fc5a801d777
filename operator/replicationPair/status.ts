/**
 * A ReplicationPair's status from what the reconcile found, in one pure function:
 *
 *   Ready             the pair replicates: both workloads and their agents are there, each
 *                     agent plays its role, and the primary streams to the standby. False
 *                     names the first thing missing (WorkloadNotFound, NoPods, AgentMissing,
 *                     AgentStarting, AgentUnreachable, ServiceNotFound, StandbyUnreachable,
 *                     Refused, CatchingUp, Paused).
 *   StandbyReachable  the primary's agent has a session with the standby's.
 *   InSync            nothing is pending: the standby has every change (CatchingUp otherwise).
 */
import type { ReplicationReport } from "../../contract/reports.ts";
import type { ReplicationPairSpec, ReplicationPairStatus } from "../../crds/schema/replicationPair.ts";
import { setCondition } from "../runtime/conditions.ts";
import type { SourcePods } from "../backupJob/sourcePods.ts";

export type SideFinding =
  | { problem: { reason: string; message: string } }
  | { pods: SourcePods; report?: ReplicationReport; unreachable?: string };

export interface PairFindings {
  spec: ReplicationPairSpec;
  generation: number | undefined;
  now: Date;
  primary: SideFinding;
  standby: SideFinding;
  serviceProblem?: string;
}

interface Verdict {
  status: "True" | "False";
  reason: string;
  message: string;
}

const RECENT = 20;
/** The least time between two writes of the per-poll fields (lag, pending, heartbeats). */
export const VOLATILE_MS = 5_000;

function sideProblem(name: string, finding: SideFinding, containerName: string): Verdict | undefined {
  if ("problem" in finding) return { status: "False", ...finding.problem };
  const { pods } = finding;
  if (pods.total === 0)
    return {
      status: "False",
      reason: "NoPods",
      message: `the ${name} workload has no running pod; start it (replicas: 1)`,
    };
  if (pods.agents.length === 0 && pods.missing.length > 0)
    return {
      status: "False",
      reason: "AgentMissing",
      message:
        `the ${name}'s pod ${pods.missing[0]!.name} has no ${containerName} sidecar: ${pods.missing[0]!.why}; ` +
        "label the workload's pod template offsite.dev/inject=true and re-create its pods",
    };
  if (pods.agents.length === 0)
    return { status: "False", reason: "AgentStarting", message: `the ${name}'s agent is not running yet` };
  if (finding.unreachable)
    return {
      status: "False",
      reason: "AgentUnreachable",
      message: `the ${name}'s agent in ${pods.agents[0]!.name} does not answer: ${finding.unreachable}`,
    };
  return undefined;
}

function readiness(f: PairFindings): Verdict {
  const problem =
    sideProblem("primary", f.primary, f.spec.primary.containerName) ??
    sideProblem("standby", f.standby, f.spec.standby.containerName);
  if (problem) return problem;
  if (f.serviceProblem) return { status: "False", reason: "ServiceNotFound", message: f.serviceProblem };
  if (f.spec.paused)
    return {
      status: "False",
      reason: "Paused",
      message: "spec.paused: changes stay on the primary until it is false",
    };
  const report = primaryReport(f);
  switch (report?.state) {
    case "streaming":
      return report.pendingChanges > 0
        ? {
            status: "False",
            reason: "CatchingUp",
            message: "changes are on their way to the standby (status.pendingChanges)",
          }
        : { status: "True", reason: "InSync", message: "the standby has every change of the primary" };
    case "failed":
      return {
        status: "False",
        reason: "Refused",
        message: report.message ?? "the standby refused the primary",
      };
    case "disconnected":
    case "connecting":
      return {
        status: "False",
        reason: "StandbyUnreachable",
        message: `the primary cannot reach the standby's agent${report.message ? `: ${report.message}` : ""}; changes are journaled and sent once it is back`,
      };
    default:
      return {
        status: "False",
        reason: "CatchingUp",
        message: "the primary compares its tree with the standby's",
      };
  }
}

function primaryReport(f: PairFindings): ReplicationReport | undefined {
  return "report" in f.primary ? f.primary.report : undefined;
}
function standbyReport(f: PairFindings): ReplicationReport | undefined {
  return "report" in f.standby ? f.standby.report : undefined;
}

function phaseOf(ready: Verdict): NonNullable<ReplicationPairStatus["phase"]> {
  if (ready.reason === "Paused") return "Paused";
  if (ready.status === "True") return "InSync";
  if (ready.reason === "CatchingUp") return "Syncing";
  if (["WorkloadNotFound", "NoPods", "AgentMissing", "AgentStarting", "InvalidSpec"].includes(ready.reason))
    return "Pending";
  return "Degraded";
}

export function pairStatus(
  previous: ReplicationPairStatus | undefined,
  f: PairFindings,
): ReplicationPairStatus {
  const ready = readiness(f);
  const report = primaryReport(f);
  const standby = standbyReport(f);
  let conditions = setCondition(previous?.conditions, { type: "Ready", ...ready }, f.generation, f.now);
  const reachable: Verdict =
    report?.state === "streaming" || report?.state === "syncing"
      ? {
          status: "True",
          reason: "Connected",
          message: "the primary's agent has a session with the standby's",
        }
      : { status: "False", reason: "StandbyUnreachable", message: report?.message ?? "no session yet" };
  conditions = setCondition(conditions, { type: "StandbyReachable", ...reachable }, f.generation, f.now);
  const inSync: Verdict =
    report?.state === "streaming" && report.pendingChanges === 0
      ? { status: "True", reason: "InSync", message: "nothing is pending" }
      : {
          status: "False",
          reason: "CatchingUp",
          message: report ? `changes are pending (the primary is ${report.state})` : "not replicating yet",
        };
  conditions = setCondition(conditions, { type: "InSync", ...inSync }, f.generation, f.now);
  // Lag, pending changes and heartbeats move with every poll; each status write is an event
  // that queues the pair again, so they are written at most every VOLATILE_MS (the issue's
  // bounded write rate) unless the phase or a condition changed.
  const lastWritten = previous?.lastHeartbeat?.primary ?? previous?.lastHeartbeat?.standby;
  const fresh = lastWritten !== undefined && f.now.getTime() - new Date(lastWritten).getTime() < VOLATILE_MS;
  const blocked = [...(report?.recentBlocked ?? []), ...(standby?.recentBlocked ?? [])]
    .sort((a, b) => a.at.localeCompare(b.at))
    .slice(-RECENT)
    .map((file) => ({ path: file.path, reason: file.reason, time: file.at }));
  const volatile: Pick<ReplicationPairStatus, "lastHeartbeat" | "lagSeconds" | "pendingChanges"> = {
    ...(report || standby
      ? {
          lastHeartbeat: {
            ...(report ? { primary: f.now.toISOString() } : {}),
            ...(standby ? { standby: f.now.toISOString() } : {}),
          },
        }
      : {}),
    ...(report?.lastLagMs !== undefined && report.state === "streaming"
      ? { lagSeconds: (report.lastLagMs / 1000).toFixed(3) }
      : {}),
    ...(report ? { pendingChanges: report.pendingChanges } : {}),
  };
  const phase = phaseOf(ready);
  const unchanged =
    fresh && previous?.phase === phase && JSON.stringify(previous?.conditions) === JSON.stringify(conditions);
  if (unchanged) {
    volatile.lastHeartbeat = previous?.lastHeartbeat;
    volatile.lagSeconds = previous?.lagSeconds;
    volatile.pendingChanges = previous?.pendingChanges;
    for (const key of ["lastHeartbeat", "lagSeconds", "pendingChanges"] as const)
      if (volatile[key] === undefined) delete volatile[key];
  }
  return {
    phase,
    activeSide: "primary",
    activeWorkload: f.spec.primary.name,
    ...volatile,
    ...(report?.lastSyncTime
      ? { lastSyncTime: report.lastSyncTime }
      : previous?.lastSyncTime
        ? { lastSyncTime: previous.lastSyncTime }
        : {}),
    blockedFiles: Math.max(previous?.blockedFiles ?? 0, (report?.blocked ?? 0) + (standby?.blocked ?? 0)),
    recentBlocked: blocked.length > 0 ? blocked : (previous?.recentBlocked ?? []),
    failoverCount: previous?.failoverCount ?? 0,
    ...(f.generation !== undefined ? { observedGeneration: f.generation } : {}),
    conditions,
  };
}

/**
 * The files in `next`'s recent list that `previous` did not list: what the content firewall
 * stopped since the last status write, for the pair's Event.
 */
export function newlyBlocked(
  previous: ReplicationPairStatus | undefined,
  next: ReplicationPairStatus,
): NonNullable<ReplicationPairStatus["recentBlocked"]> {
  const before = previous?.recentBlocked ?? [];
  const known = new Set(before.map((file) => `${file.time} ${file.path}`));
  // Older than the newest already listed: one the list had dropped for room, not a new stop.
  const newest = before.reduce((latest, file) => (file.time > latest ? file.time : latest), "");
  return (next.recentBlocked ?? []).filter(
    (file) => file.time >= newest && !known.has(`${file.time} ${file.path}`),
  );
}
