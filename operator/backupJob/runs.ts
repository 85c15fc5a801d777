/**
 * A run's life as status records it, in pure functions: started (attempt 1, with the job
 * id the agent will know it by), an attempt failed (back-off, then the next attempt —
 * which resumes, since the data session keeps what was durable), finished. The status is
 * the only memory: whatever process reconciles next reads the run from it and carries on.
 *
 * The subtle point: the job id is written to status *before* any request reaches an
 * agent, and agents treat a second request with the same id as "attach to it". So an
 * operator that restarts, or loses the leader Lease, mid-run asks for the same job again
 * and gets the one run — never a second one (agent/CONTROL.md, idempotency).
 */
import type { JobResult } from "../../contract/reports.ts";
import type { BackupJobSpec, BackupJobStatus } from "../../crds/schema/backupJob.ts";
import type { DueRun } from "./schedule.ts";

export type RunSummary = NonNullable<BackupJobStatus["lastRun"]>;

/** Back-off before attempt n+1 after attempt n failed: 10 s, 20 s, 40 s, … at most 5 min. */
export function backoffMs(failedAttempt: number): number {
  return Math.min(10_000 * 2 ** (failedAttempt - 1), 5 * 60_000);
}

/** 20261202T031500Z: sortable, and the form version IDs take. */
export function runIdOf(now: Date): string {
  return now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

/** The agent's id of one attempt: unique per job, run and attempt, within the contract's 128 characters. */
export function jobIdOf(jobUid: string, runId: string, attempt: number): string {
  return `${jobUid.slice(0, 36)}-${runId}-${attempt}`.toLowerCase();
}

export function startRun(due: DueRun, spec: BackupJobSpec, jobUid: string, now: Date): RunSummary {
  const id = runIdOf(now);
  return {
    id,
    mode: spec.mode,
    trigger: due.trigger,
    startTime: now.toISOString(),
    result: "Running",
    attempt: 1,
    jobId: jobIdOf(jobUid, id, 1),
  };
}

export interface AttemptFailure {
  reason: string;
  message: string;
}

/**
 * An attempt ended without a result worth keeping: wait and try again, or, past
 * backoffLimit retries, the run failed. A failure the next attempt cannot fix (an invalid
 * request) is final at once.
 */
export function failAttempt(
  run: RunSummary,
  failure: AttemptFailure & { final?: boolean },
  backoffLimit: number,
  now: Date,
): RunSummary {
  const attempt = run.attempt ?? 1;
  const { agent: _agent, nextAttemptTime: _next, ...rest } = run;
  if (failure.final || attempt > backoffLimit) {
    return {
      ...rest,
      result: "Failed",
      reason: failure.reason,
      message:
        attempt > 1
          ? fitted("", failure.message, ` (attempt ${attempt} of ${backoffLimit + 1})`)
          : fitted("", failure.message),
      completionTime: now.toISOString(),
      durationSeconds: secondsBetween(run.startTime, now),
    };
  }
  return {
    ...rest,
    reason: failure.reason,
    message: fitted(`attempt ${attempt} failed: `, failure.message, "; retrying"),
    nextAttemptTime: new Date(now.getTime() + backoffMs(attempt)).toISOString(),
  };
}

/** The back-off is over: the next attempt, with a job id of its own. */
export function nextAttempt(run: RunSummary, jobUid: string): RunSummary {
  const attempt = (run.attempt ?? 1) + 1;
  const { nextAttemptTime: _next, agent: _agent, ...rest } = run;
  return { ...rest, attempt, jobId: jobIdOf(jobUid, run.id, attempt) };
}

export function isWaitingToRetry(run: RunSummary | undefined, now: Date): boolean {
  return run?.nextAttemptTime !== undefined && new Date(run.nextAttemptTime) > now;
}

/** The agent's result of a completed job (succeeded or partial) as the run's summary. */
export function finishRun(run: RunSummary, result: JobResult, now: Date): RunSummary {
  const { agent: _agent, nextAttemptTime: _next, reason: _reason, message: _message, ...rest } = run;
  const unreadable = result.problems.length;
  return {
    ...rest,
    result: "Succeeded",
    completionTime: now.toISOString(),
    durationSeconds: secondsBetween(run.startTime, now),
    ...(result.version ? { version: result.version } : {}),
    ...(result.resumed !== undefined ? { resumed: result.resumed } : {}),
    ...(unreadable > 0
      ? {
          message: fitted(
            `${unreadable} entries could not be read; the version keeps their previous copy (first: `,
            `${result.problems[0]!.path}: ${result.problems[0]!.reason}`,
            ")",
          ),
        }
      : {}),
    filesScanned: result.files.scanned,
    filesChanged: result.files.changed,
    filesDeleted: result.files.deleted,
    filesFiltered: result.files.filtered,
    filesStopped: result.files.stopped,
    ...(unreadable > 0 ? { filesUnreadable: unreadable } : {}),
    bytesSent: result.bytes.sent,
    bytesChanged: result.bytes.changed,
  };
}

/** Newest first, at most `limit`. */
export function withHistory(history: RunSummary[] | undefined, run: RunSummary, limit: number): RunSummary[] {
  return [run, ...(history ?? []).filter((r) => r.id !== run.id)].slice(0, limit);
}

/** status.lastRun.message holds 4096 characters (the CRD); the agent's text is cut to fit. */
const MESSAGE_LIMIT = 4096;
function fitted(prefix: string, text: string, suffix = ""): string {
  const room = MESSAGE_LIMIT - prefix.length - suffix.length;
  return prefix + (text.length <= room ? text : `${text.slice(0, room - 1)}…`) + suffix;
}

function secondsBetween(startIso: string, end: Date): number {
  return Math.max(0, Math.round((end.getTime() - new Date(startIso).getTime()) / 100) / 10);
}

/**
 * The reason of a failed job from the agent's stable code (contract/reports.ts jobResult,
 * agent/PROTOCOL.md's error codes), and whether another attempt could help.
 */
export function failureOfCode(
  code: string | undefined,
  message: string | undefined,
): AttemptFailure & { final?: boolean } {
  const reasons: Record<string, string> = {
    unreachable: "ReceiverUnreachable",
    "idle-timeout": "ReceiverUnreachable",
    // The receiver went away mid-session (its pod was deleted or restarted).
    "connection-lost": "ReceiverUnreachable",
    // The agent was stopped mid-job (its pod is being deleted).
    shutdown: "AgentGone",
    timeout: "ReceiverUnreachable",
    busy: "ReceiverBusy",
    suspended: "SourceSuspended",
    "disk-full": "DiskFull",
    certificate: "CertificateInvalid",
    forbidden: "CertificateInvalid",
    deadline: "DeadlineExceeded",
    "source-missing": "SourcePathMissing",
    "no-such-version": "VersionNotFound",
    "damaged-store": "DamagedStore",
    "restore-not-allowed": "RestoreNotAllowed",
    // The agent's answer to a request that does not fit the contract: the same request again would too.
    "bad-request": "InvalidRequest",
  };
  const reason = reasons[code ?? ""] ?? "RunFailed";
  // The receiver's own refusal names the field (agent/receiver/receiverServer.ts); another
  // receiver's, or none at all, gets what to change from us.
  const hint =
    code === "suspended" && !/suspendedSources/.test(message ?? "")
      ? "the server refuses this source's pushes: its GUID (status.sourceGUID) is in spec.suspendedSources of the OffsiteServer (status.server); remove it there to push again (its versions are kept)"
      : undefined;
  return {
    reason,
    message:
      message !== undefined && hint
        ? `${message}; ${hint}`
        : (message ?? hint ?? `the agent reported ${code ?? "a failure"} without a message`),
    ...(reason === "VersionNotFound" || reason === "RestoreNotAllowed" || reason === "InvalidRequest"
      ? { final: true }
      : {}),
  };
}

/** What is left of the run's activeDeadline (negative once it has passed). */
export function deadlineLeftMs(run: RunSummary, activeDeadlineMs: number, now: Date): number {
  return new Date(run.startTime).getTime() + activeDeadlineMs - now.getTime();
}
