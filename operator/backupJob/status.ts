/**
 * A BackupJob's conditions and phase from what the reconcile found, in one pure function:
 *
 *   Ready     the job can run now: its target resolved, its certificate issued, and (for a
 *             podSelector) a pod with a running agent. False names the first thing missing
 *             (TargetNotFound, NoSourcePods, AgentMissing, CertificateInvalid, ...).
 *   Running   a run is in flight, or waits out the back-off of a failed attempt.
 *   Degraded  something needs a person although runs may work: the last run failed (its
 *             reason: ReceiverUnreachable, DiskFull, SourceSuspended, ...), some selected
 *             pods lack the agent, or the server is not Ready.
 */
import type { BackupJobSpec, BackupJobStatus } from "../../crds/schema/backupJob.ts";
import { setCondition, type Condition } from "../runtime/conditions.ts";
import type { RunSummary } from "./runs.ts";
import type { SourcePods } from "./sourcePods.ts";
import type { TargetProblem } from "./target.ts";

export interface Findings {
  spec: BackupJobSpec;
  generation: number | undefined;
  now: Date;
  targetProblem?: TargetProblem;
  targetNotReady?: string;
  /** Undefined for a claim source (a mover pod runs each job). */
  pods?: SourcePods;
  selector?: string;
}

interface ConditionValue {
  status: "True" | "False";
  reason: string;
  message: string;
}

function readiness(f: Findings): ConditionValue {
  if (f.targetProblem) return { status: "False", ...f.targetProblem };
  const pods = f.pods;
  if (pods && pods.total === 0)
    return {
      status: "False",
      reason: "NoSourcePods",
      message: `no pod in this namespace matches spec.source.podSelector (${f.selector}); start the application, or fix the selector`,
    };
  if (pods && pods.agents.length === 0 && pods.missing.length > 0)
    return { status: "False", reason: "AgentMissing", message: agentMissingMessage(pods, f.spec) };
  if (pods && pods.agents.length === 0)
    return {
      status: "False",
      reason: "AgentStarting",
      message: `the agent sidecar of ${pods.starting.join(", ")} is not running yet`,
    };
  const where = pods
    ? `the agent in ${pods.agents.length} of ${pods.total} pods`
    : `a mover pod for claim ${f.spec.source.persistentVolumeClaim!.claimName}`;
  return {
    status: "True",
    reason: "Ready",
    message: `runs go to ${f.spec.target.offsiteServer?.name ?? "the target"} from ${where}`,
  };
}

function agentMissingMessage(pods: SourcePods, spec: BackupJobSpec): string {
  const listed = pods.missing.slice(0, 5).map((p) => `${p.name} (${p.why})`);
  const more = pods.missing.length > 5 ? ` and ${pods.missing.length - 5} more` : "";
  return `pods without the ${spec.source.containerName} sidecar: ${listed.join("; ")}${more}`;
}

function degradation(f: Findings, lastRun: RunSummary | undefined): ConditionValue {
  if (lastRun?.result === "Failed" || (lastRun?.result === "Running" && lastRun.nextAttemptTime))
    return {
      status: "True",
      reason: lastRun.reason ?? "RunFailed",
      message: lastRun.message ?? "the last run failed",
    };
  if (f.pods && f.pods.missing.length > 0 && f.pods.agents.length > 0)
    return { status: "True", reason: "AgentMissing", message: agentMissingMessage(f.pods, f.spec) };
  if (f.targetNotReady) return { status: "True", reason: "TargetNotReady", message: f.targetNotReady };
  return { status: "False", reason: "AsExpected", message: "nothing needs attention" };
}

function running(lastRun: RunSummary | undefined): ConditionValue {
  if (lastRun?.result !== "Running") return { status: "False", reason: "Idle", message: "no run in flight" };
  if (lastRun.nextAttemptTime)
    return {
      status: "True",
      reason: "BackingOff",
      message: `attempt ${(lastRun.attempt ?? 1) + 1} starts at ${lastRun.nextAttemptTime}`,
    };
  return {
    status: "True",
    reason: "Running",
    message: `run ${lastRun.id}, attempt ${lastRun.attempt ?? 1}${lastRun.agent ? ` on ${lastRun.agent}` : ""}`,
  };
}

export function withConditions(status: BackupJobStatus, f: Findings): BackupJobStatus {
  let conditions: Condition[] | undefined = status.conditions;
  const set = (type: string, value: ConditionValue) => {
    conditions = setCondition(conditions, { type, ...value }, f.generation, f.now);
  };
  set("Ready", readiness(f));
  set("Running", running(status.lastRun));
  set("Degraded", degradation(f, status.lastRun));
  return { ...status, conditions: conditions!, phase: phaseOf(status, f.spec) };
}

function phaseOf(status: BackupJobStatus, spec: BackupJobSpec): NonNullable<BackupJobStatus["phase"]> {
  const result = status.lastRun?.result;
  if (result === "Running") return "Running";
  if (spec.suspend && spec.schedule !== undefined) return "Suspended";
  if (result === "Succeeded") return "Succeeded";
  if (result === "Failed") return "Failed";
  return "Pending";
}

/** The invalid-spec status: everything else as it was, Ready=False with what to fix. */
export function invalidSpecStatus(
  status: BackupJobStatus | undefined,
  reason: string,
  message: string,
  generation: number | undefined,
  now: Date,
): BackupJobStatus {
  return {
    ...status,
    phase: "Failed",
    observedGeneration: generation ?? 0,
    conditions: setCondition(
      status?.conditions,
      { type: "Ready", status: "False", reason, message },
      generation,
      now,
    ),
  };
}
