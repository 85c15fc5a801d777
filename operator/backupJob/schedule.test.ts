import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { dueRun, nextScheduleTime, scheduleProblem } from "./schedule.ts";

const created = new Date("2026-12-01T00:00:00Z");
const at = (iso: string) => new Date(iso);

describe("when a BackupJob runs", () => {
  it("runs once after creation when it has no schedule, then only on a new manual trigger", () => {
    assert.deepEqual(dueRun({ suspend: false }, undefined, created, at("2026-12-01T00:00:05Z")), {
      trigger: "Created",
    });
    const ran = { lastRun: { result: "Succeeded" as const } } as never;
    assert.equal(dueRun({ suspend: false }, ran, created, at("2026-12-02T00:00:00Z")), undefined);
    assert.deepEqual(
      dueRun({ suspend: false, manualTrigger: "a" }, ran, created, at("2026-12-02T00:00:00Z")),
      {
        trigger: "Manual",
      },
    );
    const actedOn = { lastRun: { result: "Succeeded" }, lastManualTrigger: "a" } as never;
    assert.equal(
      dueRun({ suspend: false, manualTrigger: "a" }, actedOn, created, at("2026-12-03T00:00:00Z")),
      undefined,
    );
  });

  it("runs a missed schedule once, at its newest slot, after any downtime", () => {
    const spec = { schedule: "*/15 * * * *", suspend: false };
    // Four slots passed since the last one acted on: one run, for the newest.
    const status = { lastScheduleTime: "2026-12-01T10:00:00Z", lastRun: { result: "Succeeded" } } as never;
    assert.deepEqual(dueRun(spec, status, created, at("2026-12-01T11:07:00Z")), {
      trigger: "Schedule",
      slot: at("2026-12-01T11:00:00Z"),
    });
    const caughtUp = { lastScheduleTime: "2026-12-01T11:00:00Z", lastRun: { result: "Succeeded" } } as never;
    assert.equal(dueRun(spec, caughtUp, created, at("2026-12-01T11:14:59Z")), undefined);
    // A slot exactly now is due now.
    assert.equal(dueRun(spec, caughtUp, created, at("2026-12-01T11:15:00Z"))?.trigger, "Schedule");
  });

  it("does not count slots before the job existed", () => {
    const spec = { schedule: "0 3 * * *", suspend: false };
    assert.equal(dueRun(spec, undefined, at("2026-12-01T04:00:00Z"), at("2026-12-01T05:00:00Z")), undefined);
    assert.equal(
      dueRun(spec, undefined, at("2026-12-01T04:00:00Z"), at("2026-12-02T03:00:01Z"))?.trigger,
      "Schedule",
    );
  });

  it("starts nothing while a run is in flight; a trigger meanwhile waits and starts one run after", () => {
    const spec = { schedule: "* * * * *", suspend: false, manualTrigger: "b" };
    const running = { lastRun: { result: "Running" }, lastManualTrigger: "a" } as never;
    assert.equal(dueRun(spec, running, created, at("2026-12-01T10:00:00Z")), undefined);
    const done = { lastRun: { result: "Succeeded" }, lastManualTrigger: "a" } as never;
    assert.equal(dueRun(spec, done, created, at("2026-12-01T10:10:00Z"))?.trigger, "Manual");
  });

  it("skips scheduled runs while suspended, but a manual trigger still runs", () => {
    const spec = { schedule: "* * * * *", suspend: true };
    assert.equal(dueRun(spec, undefined, created, at("2026-12-01T10:00:00Z")), undefined);
    assert.equal(nextScheduleTime(spec, at("2026-12-01T10:00:00Z")), undefined);
    assert.equal(
      dueRun({ ...spec, manualTrigger: "x" }, undefined, created, at("2026-12-01T10:00:00Z"))?.trigger,
      "Manual",
    );
  });

  it("reads the schedule in its time zone, across a daylight saving change", () => {
    const spec = { schedule: "30 2 * * *", timeZone: "Europe/Amsterdam", suspend: false };
    assert.deepEqual(nextScheduleTime(spec, at("2026-12-01T12:00:00Z")), at("2026-12-02T01:30:00Z"));
    assert.deepEqual(nextScheduleTime(spec, at("2026-07-01T12:00:00Z")), at("2026-07-02T00:30:00Z"));
    assert.deepEqual(
      nextScheduleTime({ schedule: "@hourly", suspend: false }, at("2026-12-01T12:10:00Z")),
      at("2026-12-01T13:00:00Z"),
    );
  });

  it("names what is wrong with a schedule or time zone", () => {
    assert.equal(
      scheduleProblem({ schedule: "0 3 * * *", timeZone: "Europe/Amsterdam", suspend: false }),
      undefined,
    );
    assert.match(
      scheduleProblem({ schedule: "0 3 * * *", timeZone: "Mars/Olympus", suspend: false })!,
      /IANA/,
    );
    assert.match(scheduleProblem({ schedule: "61 * * * *", suspend: false })!, /minute/);
  });
});
