import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ReplicationReport } from "../../contract/reports.ts";
import { replicationPairSpec } from "../../crds/schema/replicationPair.ts";
import { newlyBlocked, pairStatus, type PairFindings, type SideFinding } from "./status.ts";

const spec = replicationPairSpec.parse({
  primary: { name: "web-a" },
  standby: { name: "web-b" },
  service: { name: "web" },
});
const now = new Date("2026-12-02T10:00:00Z");
const pods = (agents: number, missing = 0) => ({
  agents: Array.from({ length: agents }, (_, i) => ({ name: `pod-${i}`, uid: `uid-${i}`, ip: "198.18.0.9" })),
  missing: Array.from({ length: missing }, (_, i) => ({
    name: `bare-${i}`,
    why: "no offsite.dev/inject=true label",
  })),
  starting: [],
  total: agents + missing,
});
const report = (overrides: Partial<ReplicationReport>): ReplicationReport => ({
  at: now.toISOString(),
  role: "primary",
  state: "streaming",
  pendingChanges: 0,
  batchesApplied: 3,
  bytesSent: 100,
  blocked: 0,
  recentBlocked: [],
  recentProblems: [],
  ...overrides,
});
const healthy: SideFinding = { pods: pods(1), report: report({}) };
const findings = (overrides: Partial<PairFindings>): PairFindings => ({
  spec,
  generation: 2,
  now,
  primary: healthy,
  standby: { pods: pods(1), report: report({ role: "standby", state: "serving" }) },
  ...overrides,
});
const ready = (f: PairFindings) => pairStatus(undefined, f).conditions!.find((c) => c.type === "Ready")!;

describe("a ReplicationPair's status", () => {
  it("is InSync with the lag and nothing pending when the primary streams", () => {
    const status = pairStatus(
      undefined,
      findings({ primary: { pods: pods(1), report: report({ lastLagMs: 420 }) } }),
    );
    assert.equal(status.phase, "InSync");
    assert.equal(status.lagSeconds, "0.420");
    assert.equal(status.pendingChanges, 0);
    assert.equal(status.activeWorkload, "web-a");
    assert.equal(ready(findings({})).status, "True");
  });

  it("names the first thing missing: a workload, then the agent", () => {
    const missingWorkload = findings({
      standby: { problem: { reason: "WorkloadNotFound", message: "Deployment ns/web-b does not exist" } },
    });
    assert.equal(ready(missingWorkload).reason, "WorkloadNotFound");
    assert.equal(pairStatus(undefined, missingWorkload).phase, "Pending");
    const noAgent = findings({ primary: { pods: pods(0, 1) } });
    assert.equal(ready(noAgent).reason, "AgentMissing");
    assert.match(ready(noAgent).message, /offsite\.dev\/inject=true/);
  });

  it("says StandbyUnreachable while the primary journals, and CatchingUp while changes are on their way", () => {
    const away = findings({
      primary: {
        pods: pods(1),
        report: report({ state: "disconnected", pendingChanges: 40, message: "ECONNREFUSED" }),
      },
    });
    assert.equal(ready(away).reason, "StandbyUnreachable");
    assert.equal(pairStatus(undefined, away).phase, "Degraded");
    assert.equal(
      pairStatus(undefined, away).conditions!.find((c) => c.type === "StandbyReachable")!.status,
      "False",
    );
    const catching = findings({ primary: { pods: pods(1), report: report({ pendingChanges: 7 }) } });
    assert.equal(ready(catching).reason, "CatchingUp");
    assert.equal(pairStatus(undefined, catching).phase, "Syncing");
  });

  it("lists the files the firewall stopped on either side, newest last, at most 20", () => {
    const stopped = (n: number, side: string) =>
      Array.from({ length: n }, (_, i) => ({
        path: `${side}/f${i}.php`,
        reason: "firewall-script",
        at: new Date(now.getTime() + i * 1000).toISOString(),
      }));
    const status = pairStatus(
      undefined,
      findings({
        primary: { pods: pods(1), report: report({ blocked: 15, recentBlocked: stopped(15, "primary") }) },
        standby: {
          pods: pods(1),
          report: report({
            role: "standby",
            state: "serving",
            blocked: 10,
            recentBlocked: stopped(10, "standby"),
          }),
        },
      }),
    );
    assert.equal(status.blockedFiles, 25);
    assert.equal(status.recentBlocked!.length, 20);
    assert.ok(status.recentBlocked!.every((file) => file.reason === "firewall-script" && file.time));
    // The pair's Event names only what the last status did not list yet.
    const later = pairStatus(
      status,
      findings({
        primary: {
          pods: pods(1),
          report: report({
            blocked: 16,
            recentBlocked: [...stopped(15, "primary"), ...stopped(16, "new").slice(15)],
          }),
        },
      }),
    );
    assert.deepEqual(
      newlyBlocked(status, later).map((file) => file.path),
      ["new/f15.php"],
    );
    assert.deepEqual(newlyBlocked(later, later), []);
    assert.equal(newlyBlocked(undefined, status).length, 20);
  });

  it("is Paused, not failing, when the spec says so", () => {
    const paused = findings({ spec: { ...spec, paused: true } });
    assert.equal(pairStatus(undefined, paused).phase, "Paused");
  });
});

describe("a ReplicationPair's status writes", () => {
  it("keep lag, pending changes and heartbeats for a few seconds unless the phase or a condition changes", () => {
    const first = pairStatus(
      undefined,
      findings({ primary: { pods: pods(1), report: report({ lastLagMs: 40 }) } }),
    );
    const later = (ms: number, lastLagMs: number) =>
      pairStatus(first, {
        ...findings({ primary: { pods: pods(1), report: report({ lastLagMs }) } }),
        now: new Date(now.getTime() + ms),
      });
    assert.deepEqual(later(1000, 90), first, "within the interval nothing is written");
    assert.equal(later(6000, 90).lagSeconds, "0.090", "after it, the new lag is");
    const away = pairStatus(first, {
      ...findings({
        primary: { pods: pods(1), report: report({ state: "disconnected", pendingChanges: 3 }) },
      }),
      now: new Date(now.getTime() + 1000),
    });
    assert.equal(away.phase, "Degraded", "a change of phase is written at once");
    assert.equal(away.pendingChanges, 3);
  });
});
