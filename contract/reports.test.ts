import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { heartbeat, jobEvent, receiverReport } from "./reports.ts";

describe("control-channel messages", () => {
  it("accept a receiver's report and refuse unknown fields and GUIDs that break the rule", () => {
    const report = {
      reportedAt: "2026-12-01T10:00:00Z",
      volume: { totalBytes: 10, usedBytes: 4 },
      jobsRunning: 0,
      sources: [{ site: "shop-eu", source: "orders-db", versions: 2, bytesStored: 4 }],
    };
    assert.equal(receiverReport.safeParse(report).success, true);
    assert.equal(receiverReport.safeParse({ ...report, extra: 1 }).success, false);
    const badGuid = { ...report, sources: [{ ...report.sources[0], source: "../etc" }] };
    assert.equal(receiverReport.safeParse(badGuid).success, false);
  });

  it("tell progress from results, and carry a pair's epoch in heartbeats", () => {
    const progress = jobEvent.parse({
      type: "progress",
      jobId: "r1",
      at: "2026-12-01T10:00:00Z",
      phase: "sending",
      filesDone: 1,
      filesTotal: 2,
      bytesDone: 3,
      bytesTotal: 4,
    });
    assert.equal(progress.type, "progress");
    assert.equal(jobEvent.safeParse({ type: "result", jobId: "r1" }).success, false);
    const beat = { at: "2026-12-01T10:00:00Z", role: "primary", epoch: 3, healthy: true, pendingChanges: 0 };
    assert.equal(heartbeat.parse(beat).epoch, 3);
    assert.equal(heartbeat.safeParse({ ...beat, epoch: -1 }).success, false);
  });
});
