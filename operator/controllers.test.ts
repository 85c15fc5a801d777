import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { CONTROLLERS } from "./controllers.ts";
import { ControllerRuntime } from "./runtime/controllerRuntime.ts";
import { OperatorMetrics } from "./runtime/metrics.ts";

/** The value of one series in the exposition text, or undefined when it is not there. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-z_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const series: Record<string, string> = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as const),
    );
    if (
      Object.entries(labels).every(([k, v]) => series[k] === v) &&
      Object.keys(series).length === Object.keys(labels).length
    )
      return Number(match[3]);
  }
  return undefined;
}

describe("the registered controllers", () => {
  it("have every labelled series at 0 from the start, before any reconcile or watch", async () => {
    const metrics = new OperatorMetrics();
    new ControllerRuntime({
      kc: new KubeConfig(),
      controllers: CONTROLLERS,
      metrics,
      logger: pino({ level: "silent" }),
      concurrency: 1,
      relistPeriodMs: 60_000,
      identity: "test",
      defaultImage: "offsite/agent:test",
      loadOperatorCa: () => Promise.reject(new Error("not started in this test")),
      operatorNamespace: "offsite-system",
    });
    const text = await metrics.registry.metrics();
    const zero = (name: string, labels: Record<string, string>) =>
      assert.equal(sample(text, name, labels), 0, `${name}${JSON.stringify(labels)}`);
    assert.deepEqual(
      CONTROLLERS.map((c) => c.kind),
      ["OffsiteServer", "BackupJob", "ReplicationPair"],
    );
    for (const { kind } of CONTROLLERS) {
      for (const result of ["success", "error"]) zero("offsite_reconcile_total", { kind, result });
      for (const reason of [
        "Conflict",
        "Invalid",
        "Forbidden",
        "NotFound",
        "Unexpected",
        ...(kind === "OffsiteServer" ? ["DeleteClaimFailed"] : []),
      ])
        zero("offsite_reconcile_errors_total", { kind, reason });
      zero("offsite_reconcile_duration_seconds_count", { kind });
      zero("offsite_workqueue_depth", { kind });
    }
    for (const resource of [
      "offsiteservers",
      "backupjobs",
      "statefulsets",
      "services",
      "secrets",
      "persistentvolumeclaims",
      "pods",
    ])
      zero("offsite_watch_restarts_total", { resource });
    zero("offsite_leader_is_leader", {});
    zero("offsite_leader_transitions_total", {});
  });
});
