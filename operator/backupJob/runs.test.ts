import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { JobResult } from "../../contract/reports.ts";
import { backupJobSpec, backupJobStatus } from "../../crds/schema/backupJob.ts";
import {
  backoffMs,
  deadlineLeftMs,
  failAttempt,
  failureOfCode,
  finishRun,
  isWaitingToRetry,
  jobIdOf,
  nextAttempt,
  runIdOf,
  startRun,
  withHistory,
  type RunSummary,
} from "./runs.ts";

const uid = "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44";
const started = new Date("2026-12-02T03:15:00.250Z");
const later = (ms: number) => new Date(started.getTime() + ms);
const spec = backupJobSpec.parse({
  source: { podSelector: { matchLabels: { app: "db" } } },
  target: { offsiteServer: { name: "vault" } },
});

const aRun = (): RunSummary => startRun({ trigger: "Schedule" }, spec, uid, started);
/** The run as the API server would take it into status (the CRD's schema). */
const fitsStatus = (run: RunSummary) => backupJobStatus.parse({ lastRun: run, history: [run] });

function aResult(overrides: Partial<JobResult> = {}): JobResult {
  return {
    type: "result",
    jobId: aRun().jobId!,
    at: later(61_000).toISOString(),
    outcome: "succeeded",
    version: "20261202T031601Z",
    files: { scanned: 120, changed: 7, deleted: 2, filtered: 3, stopped: 1 },
    bytes: { sent: 4096, changed: 8192 },
    problems: [],
    ...overrides,
  };
}

describe("a BackupJob run", () => {
  it("backs off 10 s, doubling per failed attempt, at most 5 minutes", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 20].map(backoffMs),
      [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000],
    );
  });

  it("starts as attempt 1 with a job id of its own, named by its start time", () => {
    const run = aRun();
    assert.deepEqual(run, {
      id: "20261202T031500Z",
      mode: "Backup",
      trigger: "Schedule",
      startTime: started.toISOString(),
      result: "Running",
      attempt: 1,
      jobId: `${uid}-20261202t031500z-1`,
    });
    assert.equal(runIdOf(new Date("2026-01-05T00:00:09Z")), "20260105T000009Z");
    fitsStatus(run);
  });

  it("keeps job ids within the contract's 128 characters, one per job, run and attempt", () => {
    assert.ok(jobIdOf(uid, "20261202T031500Z", 100).length <= 128);
    assert.ok(jobIdOf("x".repeat(300), "20261202T031500Z", 100).length <= 128);
    const ids = new Set([
      jobIdOf(uid, "20261202T031500Z", 1),
      jobIdOf(uid, "20261202T031500Z", 2),
      jobIdOf(uid, "20261202T031501Z", 1),
      jobIdOf(uid.replace("0b5e", "1b5e"), "20261202T031500Z", 1),
    ]);
    assert.equal(ids.size, 4);
    assert.equal(jobIdOf(uid.toUpperCase(), "20261202T031500Z", 1), jobIdOf(uid, "20261202T031500Z", 1));
  });

  it("waits out the back-off after a failed attempt within backoffLimit, still Running", () => {
    const running = { ...aRun(), agent: "db-0" };
    const failed = failAttempt(
      running,
      { reason: "ReceiverUnreachable", message: "connection refused" },
      3,
      later(5_000),
    );
    assert.equal(failed.result, "Running");
    assert.equal(failed.reason, "ReceiverUnreachable");
    assert.equal(failed.message, "attempt 1 failed: connection refused; retrying");
    assert.equal(failed.nextAttemptTime, later(15_000).toISOString());
    assert.equal(failed.agent, undefined, "the next attempt chooses its agent again");
    assert.equal(failed.completionTime, undefined);
    assert.equal(failed.jobId, running.jobId);
    fitsStatus(failed);

    assert.equal(isWaitingToRetry(failed, later(14_999)), true);
    assert.equal(isWaitingToRetry(failed, later(15_000)), false);
    assert.equal(isWaitingToRetry(running, later(5_000)), false);
    assert.equal(isWaitingToRetry(undefined, later(5_000)), false);

    const second = nextAttempt(failed, uid);
    assert.equal(second.attempt, 2);
    assert.equal(second.jobId, jobIdOf(uid, running.id, 2));
    assert.notEqual(second.jobId, running.jobId);
    assert.equal(second.nextAttemptTime, undefined);
    assert.equal(second.result, "Running");
    assert.equal(second.startTime, running.startTime, "the run keeps its start");

    const secondFailed = failAttempt(second, { reason: "ReceiverBusy", message: "busy" }, 3, later(30_000));
    assert.equal(secondFailed.nextAttemptTime, later(50_000).toISOString(), "20 s after attempt 2");
  });

  it("fails past backoffLimit, with its completion time and duration", () => {
    let run = aRun();
    for (let attempt = 1; attempt <= 3; attempt++) {
      run = failAttempt(run, { reason: "DiskFull", message: "no space" }, 3, later(attempt * 1000));
      assert.equal(run.result, "Running", `attempt ${attempt} is retried`);
      run = nextAttempt(run, uid);
    }
    assert.equal(run.attempt, 4);
    const failed = failAttempt(
      { ...run, agent: "db-0" },
      { reason: "DiskFull", message: "no space" },
      3,
      later(61_540),
    );
    assert.equal(failed.result, "Failed");
    assert.equal(failed.reason, "DiskFull");
    assert.equal(failed.message, "no space (attempt 4 of 4)");
    assert.equal(failed.completionTime, later(61_540).toISOString());
    assert.equal(failed.durationSeconds, 61.5);
    assert.equal(failed.nextAttemptTime, undefined);
    assert.equal(failed.agent, undefined);
    fitsStatus(failed);
  });

  it("fails at once for a final failure, and with backoffLimit 0", () => {
    const final = failAttempt(
      aRun(),
      { reason: "VersionNotFound", message: "no version 20250101T000000Z", final: true },
      3,
      later(2_000),
    );
    assert.equal(final.result, "Failed");
    assert.equal(final.message, "no version 20250101T000000Z");
    assert.equal(final.durationSeconds, 2);
    const noRetries = failAttempt(aRun(), { reason: "RunFailed", message: "broken" }, 0, later(1_000));
    assert.equal(noRetries.result, "Failed");
    assert.equal(noRetries.nextAttemptTime, undefined);
  });

  it("keeps the longest message the agent may send within the status's 4096 characters", () => {
    const message = "m".repeat(4096);
    const retrying = failAttempt(aRun(), { reason: "RunFailed", message }, 3, later(1_000));
    assert.ok(retrying.message!.length <= 4096);
    fitsStatus(retrying);
    const last = failAttempt({ ...aRun(), attempt: 4 }, { reason: "RunFailed", message }, 3, later(1_000));
    assert.ok(last.message!.length <= 4096);
    fitsStatus(last);
    const partial = finishRun(
      aRun(),
      aResult({ outcome: "partial", problems: [{ path: "p".repeat(4096), reason: "r".repeat(256) }] }),
      later(1_000),
    );
    assert.ok(partial.message!.length <= 4096);
    fitsStatus(partial);
  });

  it("finishes with the agent's result as its summary", () => {
    const waited = { ...failAttempt(aRun(), { reason: "X", message: "y" }, 3, later(1_000)), agent: "db-1" };
    const run = finishRun(nextAttempt(waited, uid), aResult({ resumed: true }), later(61_000));
    assert.deepEqual(run, {
      id: "20261202T031500Z",
      mode: "Backup",
      trigger: "Schedule",
      startTime: started.toISOString(),
      result: "Succeeded",
      attempt: 2,
      jobId: jobIdOf(uid, "20261202T031500Z", 2),
      completionTime: later(61_000).toISOString(),
      durationSeconds: 61,
      version: "20261202T031601Z",
      resumed: true,
      filesScanned: 120,
      filesChanged: 7,
      filesDeleted: 2,
      filesFiltered: 3,
      filesStopped: 1,
      bytesSent: 4096,
      bytesChanged: 8192,
    });
    fitsStatus(run);
  });

  it("counts unreadable entries of a partial result, Succeeded with a message", () => {
    const run = finishRun(
      aRun(),
      aResult({
        outcome: "partial",
        problems: [
          { path: "logs/locked.db", reason: "EACCES" },
          { path: "tmp/gone", reason: "ENOENT" },
        ],
      }),
      later(10_000),
    );
    assert.equal(run.result, "Succeeded");
    assert.equal(run.filesUnreadable, 2);
    assert.match(run.message ?? "", /^2 entries could not be read.*first: logs\/locked\.db: EACCES/);
    assert.equal(finishRun(aRun(), aResult(), later(1)).filesUnreadable, undefined);
    assert.equal(finishRun(aRun(), aResult({ version: undefined }), later(1)).version, undefined);
  });

  it("keeps history newest first, bounded, each run once", () => {
    const run = (id: string, result: RunSummary["result"] = "Succeeded"): RunSummary => ({
      ...aRun(),
      id,
      result,
    });
    let history = withHistory(undefined, run("1"), 3);
    history = withHistory(history, run("2"), 3);
    history = withHistory(history, run("3"), 3);
    history = withHistory(history, run("4"), 3);
    assert.deepEqual(
      history.map((r) => r.id),
      ["4", "3", "2"],
    );
    // A run recorded again (e.g. a reconcile repeated after a conflict) replaces itself.
    history = withHistory(history, run("4", "Failed"), 3);
    assert.deepEqual(
      history.map((r) => [r.id, r.result]),
      [
        ["4", "Failed"],
        ["3", "Succeeded"],
        ["2", "Succeeded"],
      ],
    );
    assert.deepEqual(withHistory(history, run("5"), 0), []);
  });

  it("tells what is left of the active deadline", () => {
    const run = aRun();
    assert.equal(deadlineLeftMs(run, 60_000, later(10_000)), 50_000);
    assert.equal(deadlineLeftMs(run, 60_000, later(70_000)), -10_000);
  });
});

describe("the failure of an agent's code", () => {
  const reasons: [string | undefined, string, boolean][] = [
    ["unreachable", "ReceiverUnreachable", false],
    ["idle-timeout", "ReceiverUnreachable", false],
    ["timeout", "ReceiverUnreachable", false],
    ["busy", "ReceiverBusy", false],
    ["suspended", "SourceSuspended", false],
    ["disk-full", "DiskFull", false],
    ["certificate", "CertificateInvalid", false],
    ["forbidden", "CertificateInvalid", false],
    ["deadline", "DeadlineExceeded", false],
    ["source-missing", "SourcePathMissing", false],
    ["no-such-version", "VersionNotFound", true],
    ["damaged-store", "DamagedStore", false],
    ["restore-not-allowed", "RestoreNotAllowed", true],
    ["bad-request", "InvalidRequest", true],
    ["internal", "RunFailed", false],
    ["something-new", "RunFailed", false],
    [undefined, "RunFailed", false],
  ];
  for (const [code, reason, final] of reasons) {
    it(`maps ${code ?? "no code"} to ${reason}${final ? ", final" : ", retried"}`, () => {
      const failure = failureOfCode(code, "what the agent said");
      assert.equal(failure.reason, reason);
      assert.equal(failure.final ?? false, final);
      if (code === "suspended")
        assert.match(failure.message, /^what the agent said; .*spec\.suspendedSources/);
      else assert.equal(failure.message, "what the agent said");
      assert.ok(failure.reason.length <= 64);
    });
  }

  it("keeps the receiver's refusal of a suspended source, which says what to change, and adds it otherwise", () => {
    const said =
      "the receiver at vault.backups.svc:5722: source orders-db is suspended on this receiver (spec.suspendedSources of its OffsiteServer); " +
      "its versions are kept and can be compared and restored; remove it from the list to push again";
    assert.deepEqual(failureOfCode("suspended", said), { reason: "SourceSuspended", message: said });
    assert.match(
      failureOfCode("suspended", undefined).message,
      /^the server refuses this source's pushes: .*spec\.suspendedSources of the OffsiteServer \(status\.server\); remove it there/,
    );
  });

  it("says what the agent reported when it gave no message", () => {
    assert.equal(failureOfCode("busy", undefined).message, "the agent reported busy without a message");
    assert.equal(
      failureOfCode(undefined, undefined).message,
      "the agent reported a failure without a message",
    );
  });
});
