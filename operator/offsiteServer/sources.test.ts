import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { BackupJob } from "../../crds/definitions.ts";
import {
  ANY_SITE,
  MAX_STATUS_SOURCES,
  SCHEDULE_SLACK_MS,
  UNSCHEDULED_WINDOW_MS,
  checkInWindowMs,
  expectedSources,
  needsDefaultSite,
  reportedFromStatus,
  sourcesStatus,
  type ReportedSource,
} from "./sources.ts";

const now = new Date("2026-11-21T12:00:00Z");
const HOUR = 3600_000;
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
const SITE = "5f0c9a7e-1b2d-4e3f-8a9b-0c1d2e3f4a5b";
const OTHER_SITE = "6a1d0b8f-2c3e-4f40-9b0c-1d2e3f4a5b6c";

function aJob(
  name: string,
  spec: Record<string, unknown>,
  fields: { namespace?: string; uid?: string; status?: Record<string, unknown> } = {},
): BackupJob {
  return {
    apiVersion: "offsite.dev/v1alpha1",
    kind: "BackupJob",
    metadata: { name, namespace: fields.namespace ?? "apps", uid: fields.uid ?? `uid-${name}` },
    spec: {
      source: { podSelector: {} },
      target: { offsiteServer: { name: "vault", namespace: "backups" } },
      ...spec,
    },
    ...(fields.status ? { status: fields.status } : {}),
  } as unknown as BackupJob;
}

const reported = (source: string, fields: Partial<ReportedSource> = {}): ReportedSource => ({
  site: SITE,
  source,
  versions: 3,
  bytesStored: 1000,
  ...fields,
});

describe("status.sources", () => {
  it("judges each source: Online within its window, Offline past it, NeverCheckedIn without a session, Suspended when listed", () => {
    const { sources } = sourcesStatus({
      reported: [
        reported("a-recent", { lastSessionAt: ago(2 * HOUR), latestVersion: "20261121T100000Z" }),
        reported("b-stale", { lastSessionAt: ago(26 * HOUR) }),
        reported("c-empty", { versions: 0, bytesStored: 0 }),
        reported("d-suspended", { lastSessionAt: ago(HOUR) }),
      ],
      expected: [],
      suspended: ["d-suspended"],
      now,
    });
    assert.deepEqual(
      sources.map((s) => [s.source, s.state]),
      [
        ["a-recent", "Online"],
        ["b-stale", "Offline"],
        ["c-empty", "NeverCheckedIn"],
        ["d-suspended", "Suspended"],
      ],
    );
    assert.deepEqual(sources[0], {
      site: SITE,
      source: "a-recent",
      state: "Online",
      lastCheckIn: ago(2 * HOUR),
      versions: 3,
      latestVersion: "20261121T100000Z",
      bytesStored: 1000,
    });
  });

  it("adds the sources BackupJobs push here that never checked in, with the job's name", () => {
    const { sources } = sourcesStatus({
      reported: [reported("known", { lastSessionAt: ago(HOUR) })],
      expected: [
        { site: SITE, source: "known", name: "apps/orders" },
        { site: SITE, source: "new", name: "apps/billing" },
      ],
      suspended: [],
      now,
    });
    assert.deepEqual(sources, [
      {
        site: SITE,
        source: "known",
        name: "apps/orders",
        state: "Online",
        lastCheckIn: ago(HOUR),
        versions: 3,
        bytesStored: 1000,
      },
      { site: SITE, source: "new", name: "apps/billing", state: "NeverCheckedIn" },
    ]);
  });

  it("judges a scheduled source by its schedule: an hourly job is Offline after a few missed hours", () => {
    const hourly = checkInWindowMs("0 * * * *", undefined, now)!;
    assert.equal(hourly, 2 * HOUR + SCHEDULE_SLACK_MS);
    const judge = (lastSessionAt: string, windowMs?: number) =>
      sourcesStatus({
        reported: [reported("s", { lastSessionAt })],
        expected: [
          { site: SITE, source: "s", name: "apps/s", ...(windowMs !== undefined ? { windowMs } : {}) },
        ],
        suspended: [],
        now,
      }).sources[0]!.state;
    assert.equal(judge(ago(2 * HOUR), hourly), "Online");
    assert.equal(judge(ago(3 * HOUR), hourly), "Offline");
    assert.equal(judge(ago(3 * HOUR)), "Online", "without a schedule: 25 h");
    assert.equal(judge(ago(UNSCHEDULED_WINDOW_MS + 1)), "Offline");
    // Two jobs of one source: the tighter schedule decides.
    const both = sourcesStatus({
      reported: [reported("s", { lastSessionAt: ago(3 * HOUR) })],
      expected: [
        { site: SITE, source: "s", name: "apps/hourly", windowMs: hourly },
        { site: SITE, source: "s", name: "apps/adhoc" },
      ],
      suspended: [],
      now,
    }).sources[0]!;
    assert.equal(both.state, "Offline");
    assert.equal(both.name, "apps/adhoc, apps/hourly");
  });

  it("gives a weekday schedule its weekend gap, and ignores a schedule croner cannot use", () => {
    const saturday = new Date("2026-11-21T12:00:00Z");
    assert.equal(saturday.getUTCDay(), 6);
    // Friday 03:00 to Monday 03:00.
    assert.equal(checkInWindowMs("0 3 * * 1-5", "UTC", saturday), 2 * 72 * HOUR + SCHEDULE_SLACK_MS);
    assert.equal(checkInWindowMs("0 3 * * *", "UTC", saturday), 2 * 24 * HOUR + SCHEDULE_SLACK_MS);
    assert.equal(checkInWindowMs("not a schedule", undefined, saturday), undefined);
    assert.equal(checkInWindowMs("0 3 * * *", "Not/AZone", saturday), undefined);
  });

  it("lists a suspended source nothing else names under any site, and a suspended known source once", () => {
    const { sources } = sourcesStatus({
      reported: [reported("held", { lastSessionAt: ago(HOUR) })],
      expected: [],
      suspended: ["held", "orders-db"],
      now,
    });
    assert.deepEqual(
      sources.map((s) => [s.site, s.source, s.state]),
      [
        [ANY_SITE, "orders-db", "Suspended"],
        [SITE, "held", "Suspended"],
      ],
    );
  });

  it("sorts by site, then source, and keeps to the CRD's bound", () => {
    const many = Array.from({ length: MAX_STATUS_SOURCES + 5 }, (_, i) =>
      reported(`src-${String(i).padStart(5, "0")}`, { site: i % 2 ? OTHER_SITE : SITE }),
    );
    const { sources, total } = sourcesStatus({ reported: many.reverse(), expected: [], suspended: [], now });
    assert.equal(total, MAX_STATUS_SOURCES + 5);
    assert.equal(sources.length, MAX_STATUS_SOURCES);
    const keys = sources.map((s) => `${s.site}/${s.source}`);
    assert.deepEqual(keys, [...keys].sort());
    assert.equal(sources[0]!.source, "src-00000");
  });

  it("takes the receiver's facts back from a previous status, not the operator's expectations", () => {
    const first = sourcesStatus({
      reported: [reported("r", { lastSessionAt: ago(HOUR), latestVersion: "v1" })],
      expected: [{ site: SITE, source: "e", name: "apps/e" }],
      suspended: ["x"],
      now,
    }).sources;
    assert.deepEqual(reportedFromStatus(first), [
      {
        site: SITE,
        source: "r",
        versions: 3,
        bytesStored: 1000,
        lastSessionAt: ago(HOUR),
        latestVersion: "v1",
      },
    ]);
    // A day later, without a new report and with the job gone: r is judged again, e is gone.
    const later = sourcesStatus({
      reported: reportedFromStatus(first),
      expected: [],
      suspended: [],
      now: new Date(now.getTime() + 25 * HOUR),
    }).sources;
    assert.deepEqual(
      later.map((s) => [s.source, s.state]),
      [["r", "Offline"]],
    );
  });
});

describe("the sources BackupJobs send to a server", () => {
  const server = { namespace: "backups", name: "vault" };

  it("are the jobs whose target names it, the namespace defaulting to the job's", () => {
    const jobs = [
      aJob("named", {}),
      aJob("same-namespace", { target: { offsiteServer: { name: "vault" } } }, { namespace: "backups" }),
      aJob(
        "other-namespace-default",
        { target: { offsiteServer: { name: "vault" } } },
        { namespace: "apps" },
      ),
      aJob("other-server", { target: { offsiteServer: { name: "tape", namespace: "backups" } } }),
      aJob("external", { target: { external: { endpoint: "x:5722", tlsSecretName: "s" } } }),
      aJob(
        "went-here",
        { target: { offsiteServerSelector: {} } },
        { status: { server: "backups/vault", siteGUID: SITE, sourceGUID: "pooled" } },
      ),
    ];
    assert.deepEqual(
      expectedSources(server, jobs, SITE, now).map((e) => e.name),
      ["apps/named", "backups/same-namespace", "apps/went-here"],
    );
  });

  it("carry the GUIDs the job's status shows, else its spec's, else its UID and the cluster's site", () => {
    const fromStatus = aJob(
      "a",
      { siteGUID: "spec-site", source: { guid: "spec-source" } },
      {
        status: { siteGUID: OTHER_SITE, sourceGUID: "status-source" },
      },
    );
    const fromSpec = aJob("b", { siteGUID: "spec-site", source: { podSelector: {}, guid: "spec-source" } });
    const fromDefaults = aJob("c", {}, { uid: "9d8c7b6a-uid" });
    assert.equal(needsDefaultSite([fromStatus, fromSpec]), false);
    assert.equal(needsDefaultSite([fromDefaults]), true);
    assert.deepEqual(
      expectedSources(server, [fromStatus, fromSpec, fromDefaults], SITE, now).map((e) => [e.site, e.source]),
      [
        [OTHER_SITE, "status-source"],
        ["spec-site", "spec-source"],
        [SITE, "9d8c7b6a-uid"],
      ],
    );
  });

  it("give a scheduled job its window; a suspended or unscheduled job none", () => {
    const [scheduled, suspended, adhoc] = expectedSources(
      server,
      [
        aJob("scheduled", { schedule: "0 * * * *" }),
        aJob("suspended", { schedule: "0 * * * *", suspend: true }),
        aJob("adhoc", {}),
      ],
      SITE,
      now,
    );
    assert.equal(scheduled!.windowMs, 2 * HOUR + SCHEDULE_SLACK_MS);
    assert.equal(suspended!.windowMs, undefined);
    assert.equal(adhoc!.windowMs, undefined);
  });
});
