/**
 * Which point-in-time versions a receiver keeps for a source: restic's and Velero's
 * semantics (the newest N, then the newest version of each of the last N days, ISO weeks
 * and months). One policy and one set of defaults for the OffsiteServer CRD, the
 * receiver's flags and the receiver itself.
 */
import { z } from "zod";

export interface RetentionPolicy {
  keepLast: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = {
  keepLast: 7,
  keepDaily: 7,
  keepWeekly: 4,
  keepMonthly: 6,
};

export const RETENTION_LIMIT = 10_000;

/** The fields with their rules and descriptions (the CRDs show them in `kubectl explain`). */
export const retentionFields = {
  keepLast: z.number().int().min(1).max(RETENTION_LIMIT).meta({ description: "Keep the newest N versions." }),
  keepDaily: z
    .number()
    .int()
    .min(0)
    .max(RETENTION_LIMIT)
    .meta({ description: "Keep the newest version of each of the last N days that have one." }),
  keepWeekly: z
    .number()
    .int()
    .min(0)
    .max(RETENTION_LIMIT)
    .meta({ description: "Keep the newest version of each of the last N ISO weeks that have one." }),
  keepMonthly: z
    .number()
    .int()
    .min(0)
    .max(RETENTION_LIMIT)
    .meta({ description: "Keep the newest version of each of the last N calendar months that have one." }),
};
