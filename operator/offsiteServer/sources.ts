/**
 * OffsiteServer.status.sources, as pure functions: the union of the sources the receiver
 * reports (GET /v1/receiver, agent/CONTROL.md) and the sources the operator knows should
 * push here — the BackupJobs that target this server, and spec.suspendedSources — each
 * with the operator's judgement of its state:
 *
 * - Suspended: its GUID is in spec.suspendedSources (the receiver refuses its pushes);
 * - NeverCheckedIn: the receiver has no session of it (neither since it started, nor a
 *   version on disk);
 * - Online: its last session ended within its check-in window;
 * - Offline: otherwise.
 *
 * The window: a BackupJob with a schedule is expected at every slot, so twice its interval
 * plus 10 minutes (one missed slot is not yet Offline, a run takes a while); a source
 * without a scheduled job (no schedule, suspended, or known only to the receiver) 25 h.
 *
 * The subtle point: the receiver's facts and the operator's expectations are kept apart,
 * so a failed poll recomputes states from the last report (kept in status) without
 * inventing or dropping any: an entry with `versions` came from a report; one without is
 * only an expectation, and goes when its BackupJob does.
 */
import type { ReceiverReport } from "../../contract/reports.ts";
import type { BackupJob } from "../../crds/definitions.ts";
import { MAX_STATUS_SOURCES, type OffsiteServerStatus } from "../../crds/schema/offsiteServer.ts";
import { parseSchedule } from "../backupJob/schedule.ts";

export type SourceStatus = NonNullable<OffsiteServerStatus["sources"]>[number];
export type ReportedSource = ReceiverReport["sources"][number];

/** At most this many sources in status (sorted by site, then source); the CRD's list bound. */
export { MAX_STATUS_SOURCES };
/** A source without a scheduled BackupJob is Online for this long after its last session. */
export const UNSCHEDULED_WINDOW_MS = 25 * 3600 * 1000;
/** Slack on top of two schedule intervals: a run starts late and takes a while. */
export const SCHEDULE_SLACK_MS = 10 * 60 * 1000;
/** The site of a suspended source no BackupJob or report names: the receiver refuses it at any site. */
export const ANY_SITE = "*";
const MAX_NAME_LENGTH = 512;

/** A source the operator expects to push here: one BackupJob's view of it. */
export interface ExpectedSource {
  site: string;
  source: string;
  /** namespace/name of the BackupJob. */
  name: string;
  /** How long after its last session it is still Online; undefined: no schedule to judge by. */
  windowMs?: number;
}

/**
 * How long a source of this schedule stays Online after a session: twice its interval
 * plus SCHEDULE_SLACK_MS. The interval is the longer of the gap around `now` (the slot
 * before it to the one after it) and the gap after that, so a weekday schedule is not
 * Offline over the weekend. Undefined for a schedule croner cannot use.
 */
export function checkInWindowMs(
  schedule: string,
  timeZone: string | undefined,
  now: Date,
): number | undefined {
  try {
    const cron = parseSchedule(schedule, timeZone);
    const [next, afterNext] = cron.nextRuns(2, now);
    if (!next || !afterNext) return undefined;
    // The slot before `next`: at or before now.
    const [previous] = cron.previousRuns(1, next);
    const gaps = [afterNext.getTime() - next.getTime()];
    if (previous) gaps.push(next.getTime() - previous.getTime());
    return 2 * Math.max(...gaps) + SCHEDULE_SLACK_MS;
  } catch {
    return undefined;
  }
}

/**
 * The sources the BackupJobs (of any namespace) send to the OffsiteServer `server`: those
 * whose spec.target.offsiteServer names it (the namespace defaulting to the job's), or
 * whose status.server says their latest run went to it. Their GUIDs as the job's status
 * shows them, else as its spec says (source.guid, or the job's UID; siteGUID, or
 * `defaultSite`: the cluster's, the kube-system namespace's UID).
 */
export function expectedSources(
  server: { namespace: string; name: string },
  jobs: readonly BackupJob[],
  defaultSite: string | undefined,
  now: Date,
): ExpectedSource[] {
  const display = `${server.namespace}/${server.name}`;
  const expected: ExpectedSource[] = [];
  for (const job of jobs) {
    const namespace = job.metadata.namespace ?? "";
    const ref = job.spec?.target?.offsiteServer;
    const named =
      ref !== undefined && ref.name === server.name && (ref.namespace ?? namespace) === server.namespace;
    if (!named && job.status?.server !== display) continue;
    const site = job.status?.siteGUID ?? job.spec?.siteGUID ?? defaultSite;
    const source = job.status?.sourceGUID ?? job.spec?.source?.guid ?? job.metadata.uid;
    if (!site || !source) continue;
    const schedule = job.spec?.schedule;
    const windowMs =
      schedule !== undefined && job.spec?.suspend !== true
        ? checkInWindowMs(schedule, job.spec?.timeZone, now)
        : undefined;
    expected.push({
      site,
      source,
      name: `${namespace}/${job.metadata.name ?? ""}`,
      ...(windowMs !== undefined ? { windowMs } : {}),
    });
  }
  return expected;
}

/** Whether any BackupJob lacks the GUIDs status would show (so the cluster's site GUID is needed). */
export function needsDefaultSite(jobs: readonly BackupJob[]): boolean {
  return jobs.some((job) => !job.status?.siteGUID && !job.spec?.siteGUID);
}

/**
 * The receiver's facts as the last report left them in status: the entries a report made
 * (they carry `versions`), for when the receiver cannot be asked now.
 */
export function reportedFromStatus(previous: readonly SourceStatus[] | undefined): ReportedSource[] {
  return (previous ?? [])
    .filter((s) => s.versions !== undefined && s.site !== ANY_SITE)
    .map((s) => ({
      site: s.site,
      source: s.source,
      versions: s.versions!,
      bytesStored: s.bytesStored ?? 0,
      ...(s.lastCheckIn !== undefined ? { lastSessionAt: s.lastCheckIn } : {}),
      ...(s.latestVersion !== undefined ? { latestVersion: s.latestVersion } : {}),
    }));
}

export interface SourcesInput {
  reported: readonly ReportedSource[];
  expected: readonly ExpectedSource[];
  /** spec.suspendedSources: source GUIDs. */
  suspended: readonly string[];
  now: Date;
}

export interface SourcesOutcome {
  /** Sorted by site, then source; at most MAX_STATUS_SOURCES. */
  sources: SourceStatus[];
  /** How many there were before the bound. */
  total: number;
}

const keyOf = (site: string, source: string) => `${site}\u0000${source}`;

function joinNames(names: string[]): string | undefined {
  if (names.length === 0) return undefined;
  const joined = [...new Set(names)].sort().join(", ");
  return joined.length <= MAX_NAME_LENGTH ? joined : `${joined.slice(0, MAX_NAME_LENGTH - 1)}…`;
}

export function sourcesStatus({ reported, expected, suspended, now }: SourcesInput): SourcesOutcome {
  const entries = new Map<
    string,
    { site: string; source: string; report?: ReportedSource; names: string[]; windows: number[] }
  >();
  const entry = (site: string, source: string) => {
    const key = keyOf(site, source);
    let found = entries.get(key);
    if (!found) entries.set(key, (found = { site, source, names: [], windows: [] }));
    return found;
  };
  for (const report of reported) entry(report.site, report.source).report = report;
  for (const job of expected) {
    const found = entry(job.site, job.source);
    found.names.push(job.name);
    if (job.windowMs !== undefined) found.windows.push(job.windowMs);
  }
  const suspendedSet = new Set(suspended);
  const named = new Set([...entries.values()].map((e) => e.source));
  for (const source of suspendedSet) if (!named.has(source)) entry(ANY_SITE, source);

  const sources = [...entries.values()].map(({ site, source, report, names, windows }): SourceStatus => {
    // The tightest schedule among the jobs that push it: any of them checks in.
    const windowMs = windows.length > 0 ? Math.min(...windows) : UNSCHEDULED_WINDOW_MS;
    const lastCheckIn = report?.lastSessionAt;
    const state: SourceStatus["state"] = suspendedSet.has(source)
      ? "Suspended"
      : lastCheckIn === undefined
        ? "NeverCheckedIn"
        : now.getTime() - new Date(lastCheckIn).getTime() <= windowMs
          ? "Online"
          : "Offline";
    const name = joinNames(names);
    return {
      site,
      source,
      ...(name !== undefined ? { name } : {}),
      state,
      ...(lastCheckIn !== undefined ? { lastCheckIn } : {}),
      ...(report
        ? {
            versions: report.versions,
            ...(report.latestVersion !== undefined ? { latestVersion: report.latestVersion } : {}),
            bytesStored: report.bytesStored,
          }
        : {}),
    };
  });
  sources.sort((a, b) =>
    a.site < b.site ? -1 : a.site > b.site ? 1 : a.source < b.source ? -1 : a.source > b.source ? 1 : 0,
  );
  return { sources: sources.slice(0, MAX_STATUS_SOURCES), total: sources.length };
}
