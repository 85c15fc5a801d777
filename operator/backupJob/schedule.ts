/**
 * When a BackupJob runs: pure functions of its spec, its status and the time. A run is
 * due for a new spec.manualTrigger, for a schedule slot newer than the last one acted on,
 * or, for a job without a schedule, once after it is created.
 *
 * The subtle points: only the newest missed slot counts, so an operator that was down
 * for a day runs a job once when it is back, not once per missed slot (CronJob's
 * behaviour without its 100-slot failure); and nothing is due while a run is in flight,
 * so a trigger that arrives during a run waits in the spec and starts one run afterwards,
 * never a stack of them.
 */
import { Cron } from "croner";
import type { BackupJobSpec, BackupJobStatus } from "../../crds/schema/backupJob.ts";

export type Trigger = "Schedule" | "Manual" | "Created";

export interface DueRun {
  trigger: Trigger;
  /** The schedule slot this run stands for (what lastScheduleTime becomes). */
  slot?: Date;
}

type ScheduleFields = Pick<BackupJobSpec, "schedule" | "timeZone" | "suspend" | "manualTrigger">;

/** The schedule as a croner pattern that never fires by itself; throws with a readable message. */
export function parseSchedule(schedule: string, timeZone: string | undefined): Cron {
  try {
    return new Cron(schedule, { paused: true, ...(timeZone ? { timezone: timeZone } : {}), mode: "5-part" });
  } catch (error) {
    const what = timeZone
      ? `schedule ${JSON.stringify(schedule)} in time zone ${timeZone}`
      : `schedule ${JSON.stringify(schedule)}`;
    throw new Error(`${what} cannot be used: ${(error as Error).message}`, { cause: error });
  }
}

/** The problem with a spec's schedule and time zone, or undefined when they can be used. */
export function scheduleProblem(spec: ScheduleFields): string | undefined {
  if (spec.timeZone !== undefined && !isTimeZone(spec.timeZone))
    return `timeZone ${JSON.stringify(spec.timeZone)} is not an IANA time zone (e.g. Europe/Amsterdam, UTC)`;
  if (spec.schedule === undefined) return undefined;
  try {
    parseSchedule(spec.schedule, spec.timeZone);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The newest slot at or before `now`. */
function latestSlot(cron: Cron, now: Date): Date | undefined {
  // previousRuns excludes `now` itself; a slot exactly now is due now.
  const [previous] = cron.previousRuns(1, new Date(now.getTime() + 1));
  return previous ?? undefined;
}

export function dueRun(
  spec: ScheduleFields,
  status: Pick<BackupJobStatus, "lastRun" | "lastScheduleTime" | "lastManualTrigger"> | undefined,
  createdAt: Date,
  now: Date,
): DueRun | undefined {
  if (status?.lastRun?.result === "Running") return undefined;
  if (spec.manualTrigger !== undefined && spec.manualTrigger !== status?.lastManualTrigger)
    return { trigger: "Manual" };
  if (spec.schedule !== undefined) {
    if (spec.suspend) return undefined;
    const slot = latestSlot(parseSchedule(spec.schedule, spec.timeZone), now);
    const actedOn = status?.lastScheduleTime ? new Date(status.lastScheduleTime) : createdAt;
    return slot && slot > actedOn ? { trigger: "Schedule", slot } : undefined;
  }
  return status?.lastRun === undefined && spec.manualTrigger === undefined
    ? { trigger: "Created" }
    : undefined;
}

/** When the schedule starts the next run; undefined without a schedule or while suspended. */
export function nextScheduleTime(spec: ScheduleFields, now: Date): Date | undefined {
  if (spec.schedule === undefined || spec.suspend) return undefined;
  return parseSchedule(spec.schedule, spec.timeZone).nextRun(now) ?? undefined;
}
