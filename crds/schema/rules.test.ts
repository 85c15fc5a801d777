// The zod side of the validation rules; the API server side is in test/integration/crds.test.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DURATION, QUANTITY, durationToMs, msToDuration, sizeToBytes } from "../../contract/units.ts";
import { CRON } from "./fields.ts";
import { backupJobSpec } from "./backupJob.ts";
import { offsiteServerSpec } from "./offsiteServer.ts";
import { replicationPairSpec } from "./replicationPair.ts";

describe("validation rules", () => {
  it("accepts cron expressions CronJob accepts and refuses malformed ones", () => {
    for (const good of [
      "0 3 * * *",
      "*/15 * * * MON-FRI",
      "0,30 8-18 1 JAN-MAR 1-5",
      "@hourly",
      "59 23 31 12 7",
      "5 4 * * SUN",
    ]) {
      assert.ok(CRON.test(good), good);
    }
    for (const bad of [
      "",
      "* * * *",
      "60 * * * *",
      "* 24 * * *",
      "* * 0 * *",
      "* * * 13 *",
      "* * * * 8",
      "every day",
      "@often",
      "* * * * * *",
      "*/0 * * * *",
    ]) {
      assert.ok(!CRON.test(bad), bad);
    }
  });

  it("parses sizes and durations in Kubernetes formats", () => {
    assert.equal(sizeToBytes("10Gi"), 10 * 2 ** 30);
    assert.equal(sizeToBytes("1.5k"), 1500);
    assert.equal(sizeToBytes(42), 42);
    assert.throws(() => sizeToBytes("-1Gi"), /not a Kubernetes quantity/);
    assert.ok(!QUANTITY.test("10 Gi") && !QUANTITY.test("-5") && !QUANTITY.test("10GB"));
    assert.equal(durationToMs("1h30m"), 90 * 60_000);
    assert.equal(durationToMs("500ms"), 500);
    assert.ok(!DURATION.test("5 minutes") && !DURATION.test("-1s") && !DURATION.test("1d"));
    for (const ms of [1, 999, 1000, 90_000, 5_400_000, 3_600_000])
      assert.equal(durationToMs(msToDuration(ms)), ms);
  });

  it("fills defaults like the API server does", () => {
    const spec = offsiteServerSpec.parse({});
    assert.equal(spec.port, 5722);
    assert.equal(spec.retainPolicy, "Retain");
    assert.equal(spec.service.type, "ClusterIP");
    assert.deepEqual(spec.storage, { size: "10Gi" });
  });

  it("refuses the cross-field mistakes with the message the API server gives", () => {
    const issues = (result: { success: boolean; error?: { issues: { message: string }[] } }) =>
      result.error?.issues.map((i) => i.message).join("; ") ?? "";
    assert.match(issues(offsiteServerSpec.safeParse({ port: 80 })), /1024-49151/);
    const job = {
      source: { podSelector: { matchLabels: { app: "x" } } },
      target: { offsiteServer: { name: "v" } },
    };
    assert.ok(backupJobSpec.safeParse(job).success);
    assert.match(issues(backupJobSpec.safeParse({ ...job, schedule: "daily" })), /cron expression/);
    const bothTargets = {
      ...job,
      target: { offsiteServer: { name: "v" }, offsiteServerSelector: { matchLabels: { a: "b" } } },
    };
    assert.match(issues(backupJobSpec.safeParse(bothTargets)), /exactly one of offsiteServer/);
    assert.match(issues(backupJobSpec.safeParse({ ...job, target: {} })), /exactly one of offsiteServer/);
    assert.match(
      issues(backupJobSpec.safeParse({ ...job, compare: {} })),
      /only allowed when mode is Compare/,
    );
    const pair = { primary: { name: "a" }, standby: { name: "a" }, service: { name: "s" } };
    assert.match(issues(replicationPairSpec.safeParse(pair)), /must be different workloads/);
    assert.ok(
      replicationPairSpec.safeParse({ ...pair, standby: { name: "a", kind: "StatefulSet" } }).success,
    );
    assert.ok(!replicationPairSpec.safeParse({ ...pair, primary: { name: "Bad_Name" } }).success);
    assert.match(
      issues(offsiteServerSpec.safeParse({ storage: { size: "1Gi", existingClaim: "c" } })),
      /either existingClaim/,
    );
  });
});
