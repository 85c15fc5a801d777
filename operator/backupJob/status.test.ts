import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { backupJobSpec, backupJobStatus, type BackupJobStatus } from "../../crds/schema/backupJob.ts";
import type { RunSummary } from "./runs.ts";
import type { SourcePods } from "./sourcePods.ts";
import { invalidSpecStatus, withConditions, type Findings } from "./status.ts";

const now = new Date("2026-12-02T03:15:00Z");
const later = new Date("2026-12-02T03:20:00Z");

const spec = (fields: Record<string, unknown> = {}) =>
  backupJobSpec.parse({
    source: { podSelector: { matchLabels: { app: "db" } } },
    target: { offsiteServer: { name: "vault" } },
    ...fields,
  });

const pods = (overrides: Partial<SourcePods> = {}): SourcePods => ({
  agents: [{ name: "db-0", uid: "u0", ip: "10.0.0.7" }],
  missing: [],
  starting: [],
  total: 1,
  ...overrides,
});

function findings(overrides: Partial<Findings> = {}): Findings {
  return { spec: spec(), generation: 4, now, pods: pods(), selector: "app=db", ...overrides };
}

const run = (overrides: Partial<RunSummary> = {}): RunSummary => ({
  id: "20261202T031500Z",
  mode: "Backup",
  trigger: "Schedule",
  startTime: now.toISOString(),
  result: "Running",
  attempt: 1,
  jobId: "j-1",
  ...overrides,
});

function statusOf(status: BackupJobStatus, f: Findings = findings()) {
  const next = withConditions(status, f);
  backupJobStatus.parse(next); // what the API server would take
  const condition = (type: string) => {
    const c = next.conditions?.find((x) => x.type === type);
    assert.ok(c, `no ${type} condition`);
    return c;
  };
  return { status: next, condition };
}

describe("a BackupJob's Ready condition", () => {
  it("is True with where runs go, for pods and for a claim", () => {
    const { condition, status } = statusOf({}, findings({ pods: pods({ total: 3 }) }));
    assert.deepEqual(condition("Ready"), {
      type: "Ready",
      status: "True",
      reason: "Ready",
      message: "runs go to vault from the agent in 1 of 3 pods",
      observedGeneration: 4,
      lastTransitionTime: now.toISOString(),
    });
    assert.equal(status.phase, "Pending");
    const claim = spec({ source: { persistentVolumeClaim: { claimName: "db-data" } } });
    const forClaim = statusOf({}, findings({ spec: claim, pods: undefined }));
    assert.equal(forClaim.condition("Ready").status, "True");
    assert.match(forClaim.condition("Ready").message, /a mover pod for claim db-data/);
  });

  it("is False with the target's problem first", () => {
    const { condition } = statusOf(
      {},
      findings({
        targetProblem: { reason: "TargetNotFound", message: "no OffsiteServer vault" },
        pods: pods({ total: 0, agents: [] }),
      }),
    );
    assert.equal(condition("Ready").status, "False");
    assert.equal(condition("Ready").reason, "TargetNotFound");
    assert.equal(condition("Ready").message, "no OffsiteServer vault");
  });

  it("is False without pods, naming the selector", () => {
    const { condition } = statusOf({}, findings({ pods: pods({ total: 0, agents: [] }) }));
    assert.equal(condition("Ready").status, "False");
    assert.equal(condition("Ready").reason, "NoSourcePods");
    assert.match(condition("Ready").message, /\(app=db\)/);
  });

  it("is False when no pod has the agent, saying why for each", () => {
    const missing = Array.from({ length: 7 }, (_, i) => ({ name: `db-${i}`, why: `reason ${i}` }));
    const { condition } = statusOf(
      {},
      findings({ pods: pods({ agents: [], missing, starting: ["db-9"], total: 8 }) }),
    );
    assert.equal(condition("Ready").status, "False");
    assert.equal(condition("Ready").reason, "AgentMissing");
    assert.match(condition("Ready").message, /without the offsite-agent sidecar: db-0 \(reason 0\);/);
    assert.match(condition("Ready").message, /db-4 \(reason 4\) and 2 more$/);
  });

  it("is False while the only sidecars are starting", () => {
    const { condition } = statusOf(
      {},
      findings({ pods: pods({ agents: [], starting: ["db-0", "db-1"], total: 2 }) }),
    );
    assert.equal(condition("Ready").status, "False");
    assert.equal(condition("Ready").reason, "AgentStarting");
    assert.match(condition("Ready").message, /db-0, db-1 is not running yet/);
  });
});

describe("a BackupJob's Degraded condition", () => {
  it("is False when nothing needs attention", () => {
    const { condition } = statusOf({ lastRun: run({ result: "Succeeded" }) });
    assert.equal(condition("Degraded").status, "False");
    assert.equal(condition("Degraded").reason, "AsExpected");
  });

  it("is True with the last run's failure", () => {
    const failed = run({ result: "Failed", reason: "DiskFull", message: "no space left" });
    const { condition, status } = statusOf({ lastRun: failed });
    assert.equal(condition("Degraded").status, "True");
    assert.equal(condition("Degraded").reason, "DiskFull");
    assert.equal(condition("Degraded").message, "no space left");
    assert.equal(status.phase, "Failed");
    const bare = statusOf({ lastRun: run({ result: "Failed" }) });
    assert.equal(bare.condition("Degraded").reason, "RunFailed");
    assert.equal(bare.condition("Degraded").message, "the last run failed");
  });

  it("is True while an attempt waits out its back-off", () => {
    const backingOff = run({
      reason: "ReceiverUnreachable",
      message: "attempt 1 failed: refused; retrying",
      nextAttemptTime: "2026-12-02T03:15:10Z",
    });
    const { condition } = statusOf({ lastRun: backingOff });
    assert.equal(condition("Degraded").status, "True");
    assert.equal(condition("Degraded").reason, "ReceiverUnreachable");
    assert.equal(statusOf({ lastRun: run() }).condition("Degraded").status, "False", "not while it runs");
  });

  it("is True when some selected pods lack the agent", () => {
    const { condition } = statusOf(
      {},
      findings({ pods: pods({ missing: [{ name: "db-1", why: "no label" }], total: 2 }) }),
    );
    assert.equal(condition("Ready").status, "True");
    assert.equal(condition("Degraded").status, "True");
    assert.equal(condition("Degraded").reason, "AgentMissing");
    assert.match(condition("Degraded").message, /db-1 \(no label\)/);
  });

  it("is True when the target is not Ready", () => {
    const { condition } = statusOf({}, findings({ targetNotReady: "OffsiteServer vault is Provisioning" }));
    assert.equal(condition("Ready").status, "True");
    assert.equal(condition("Degraded").status, "True");
    assert.equal(condition("Degraded").reason, "TargetNotReady");
    assert.equal(condition("Degraded").message, "OffsiteServer vault is Provisioning");
  });
});

describe("a BackupJob's Running condition and phase", () => {
  it("is Running while a run is in flight, on its agent", () => {
    const { condition, status } = statusOf({ lastRun: run({ attempt: 2, agent: "db-0" }) });
    assert.equal(condition("Running").status, "True");
    assert.equal(condition("Running").reason, "Running");
    assert.equal(condition("Running").message, "run 20261202T031500Z, attempt 2 on db-0");
    assert.equal(status.phase, "Running");
  });

  it("is BackingOff while a failed attempt waits, naming the next attempt", () => {
    const { condition, status } = statusOf({
      lastRun: run({ reason: "ReceiverBusy", nextAttemptTime: "2026-12-02T03:15:10Z" }),
    });
    assert.equal(condition("Running").status, "True");
    assert.equal(condition("Running").reason, "BackingOff");
    assert.equal(condition("Running").message, "attempt 2 starts at 2026-12-02T03:15:10Z");
    assert.equal(status.phase, "Running");
  });

  it("is Idle otherwise", () => {
    for (const lastRun of [undefined, run({ result: "Succeeded" }), run({ result: "Failed" })]) {
      const { condition } = statusOf(lastRun ? { lastRun } : {});
      assert.equal(condition("Running").status, "False");
      assert.equal(condition("Running").reason, "Idle");
    }
  });

  it("names the latest run's result as the phase, or Suspended for a suspended schedule", () => {
    const phase = (lastRun: RunSummary | undefined, fields: Record<string, unknown> = {}) =>
      statusOf(lastRun ? { lastRun } : {}, findings({ spec: spec(fields) })).status.phase;
    assert.equal(phase(undefined), "Pending");
    assert.equal(phase(run({ result: "Succeeded" })), "Succeeded");
    assert.equal(phase(run({ result: "Failed" })), "Failed");
    assert.equal(phase(run()), "Running");
    const suspended = { schedule: "0 3 * * *", suspend: true };
    assert.equal(phase(undefined, suspended), "Suspended");
    assert.equal(phase(run({ result: "Succeeded" }), suspended), "Suspended");
    assert.equal(phase(run({ result: "Failed" }), suspended), "Suspended");
    assert.equal(phase(run(), suspended), "Running", "a running job finishes");
    assert.equal(phase(run({ result: "Succeeded" }), { suspend: true }), "Succeeded", "nothing to suspend");
  });

  it("has the three conditions, sorted, and keeps the rest of the status", () => {
    const { status } = statusOf({ sourceGUID: "orders", lastRun: run({ result: "Succeeded" }) });
    assert.deepEqual(
      status.conditions?.map((c) => c.type),
      ["Degraded", "Ready", "Running"],
    );
    assert.equal(status.sourceGUID, "orders");
  });
});

describe("a BackupJob's condition times", () => {
  it("keep lastTransitionTime while a status stays, and move it when it changes", () => {
    const first = statusOf({ lastRun: run() }).status;
    const again = statusOf(first, findings({ now: later, generation: 5 })).status;
    for (const type of ["Ready", "Running", "Degraded"]) {
      const before = first.conditions?.find((c) => c.type === type);
      const after = again.conditions?.find((c) => c.type === type);
      assert.equal(after?.lastTransitionTime, before?.lastTransitionTime, type);
      assert.equal(after?.observedGeneration, 5);
    }
    const done = statusOf(
      { ...again, lastRun: run({ result: "Succeeded" }) },
      findings({ now: later }),
    ).status;
    assert.equal(done.conditions?.find((c) => c.type === "Running")?.lastTransitionTime, later.toISOString());
    assert.equal(done.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime, now.toISOString());
  });
});

describe("an invalid spec's status", () => {
  it("is Failed with Ready False, keeping the rest", () => {
    const before = statusOf({ lastRun: run({ result: "Succeeded" }), sourceGUID: "orders" }).status;
    const status = invalidSpecStatus(before, "InvalidSpec", "schedule: bad cron", 7, later);
    backupJobStatus.parse(status);
    assert.equal(status.phase, "Failed");
    assert.equal(status.observedGeneration, 7);
    assert.equal(status.sourceGUID, "orders");
    assert.deepEqual(status.lastRun, before.lastRun);
    const ready = status.conditions?.find((c) => c.type === "Ready");
    assert.deepEqual(ready, {
      type: "Ready",
      status: "False",
      reason: "InvalidSpec",
      message: "schedule: bad cron",
      observedGeneration: 7,
      lastTransitionTime: later.toISOString(),
    });
    assert.equal(status.conditions?.length, 3, "the other conditions stay");
    const fresh = invalidSpecStatus(undefined, "InvalidSpec", "x", undefined, later);
    assert.equal(fresh.observedGeneration, 0);
    assert.equal(fresh.conditions?.length, 1);
  });
});
