/**
 * Which versions survive pruning (restic's and Velero's semantics): the newest `keepLast`,
 * plus the newest version of each of the most recent `keepDaily` days, `keepWeekly` ISO
 * weeks and `keepMonthly` months that have one. The current version always survives.
 * Pure: ids in, ids out. The policy and its defaults are the contract's (one set of
 * defaults for the OffsiteServer CRD and the receiver's flags).
 */
import { DEFAULT_RETENTION, type RetentionPolicy } from "../../contract/retention.ts";
import { compareVersionIds } from "../../contract/versions.ts";

export { DEFAULT_RETENTION, type RetentionPolicy };

function versionDate(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(id)!;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

function isoWeek(date: Date): string {
  const thursday = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  thursday.setUTCDate(thursday.getUTCDate() + 3 - ((thursday.getUTCDay() + 6) % 7));
  const firstThursday = new Date(Date.UTC(thursday.getUTCFullYear(), 0, 4));
  const week = 1 + Math.round((thursday.getTime() - firstThursday.getTime()) / (7 * 86_400_000));
  return `${thursday.getUTCFullYear()}-W${week}`;
}

/** The ids to keep, from `ids` (any order); everything else may be deleted. */
export function versionsToKeep(ids: string[], policy: RetentionPolicy, current: string | null): Set<string> {
  const newestFirst = [...ids].sort(compareVersionIds).reverse();
  const keep = new Set<string>(newestFirst.slice(0, policy.keepLast));
  if (current) keep.add(current);
  const byPeriod = (count: number, period: (d: Date) => string) => {
    const seen = new Set<string>();
    for (const id of newestFirst) {
      if (seen.size >= count) break;
      const key = period(versionDate(id));
      if (seen.has(key)) continue;
      seen.add(key);
      keep.add(id);
    }
  };
  byPeriod(policy.keepDaily, (d) => d.toISOString().slice(0, 10));
  byPeriod(policy.keepWeekly, isoWeek);
  byPeriod(policy.keepMonthly, (d) => d.toISOString().slice(0, 7));
  return keep;
}
