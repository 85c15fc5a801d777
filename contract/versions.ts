/**
 * Version IDs: the name of one point-in-time version of a source on a receiver, the UTC
 * time its job committed (`20261201T031500Z`, with `-N` when two commit in one second).
 * One rule for the protocol, the CLI's --version, the CRDs' compare/restore version and
 * the control channel; an absent version means the newest everywhere.
 */
import { z } from "zod";

/** `-N` from 2, without leading zeros: one id, one spelling (nextVersionId makes no other). */
export const VERSION_ID = /^[0-9]{8}T[0-9]{6}Z(-[2-9]|-[1-9][0-9]+)?$/;
export const VERSION_ID_MAX_LENGTH = 32;

export const versionIdRuleText = "a version ID such as 20261201T031500Z (as `offsite push` reports it)";

export function isVersionId(value: string): boolean {
  return value.length <= VERSION_ID_MAX_LENGTH && VERSION_ID.test(value);
}

/** The commit stamp and sequence of an id (`-N` from 2; none is 1). */
function versionIdParts(id: string): [string, number] {
  const dash = id.indexOf("-");
  return dash < 0 ? [id, 1] : [id.slice(0, dash), Number(id.slice(dash + 1))];
}

/**
 * Orders version ids oldest first. Plain string order is wrong past nine commits in one
 * second (`-10` sorts before `-2`).
 */
export function compareVersionIds(a: string, b: string): number {
  const [stampA, seqA] = versionIdParts(a);
  const [stampB, seqB] = versionIdParts(b);
  return stampA < stampB ? -1 : stampA > stampB ? 1 : seqA - seqB;
}

/**
 * The id for a commit at `now`, after every id in `existing`: the stamp of `now`, or, when
 * the newest id is of that second or later (several commits in one second, a clock set
 * back), the newest's stamp with the next sequence. (After a clock that ran ahead is set
 * back, ids keep the newest's stamp until the clock passes it, so retention's daily and
 * weekly buckets see those commits at that time.) Always after the newest, never only
 * "not taken": an id freed by pruning must not come back and sort before the versions kept.
 */
export function nextVersionId(now: Date, existing: Iterable<string>): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  let newest: string | undefined;
  for (const id of existing)
    if (VERSION_ID.test(id) && (!newest || compareVersionIds(id, newest) > 0)) newest = id;
  if (!newest) return stamp;
  const [newestStamp, newestSeq] = versionIdParts(newest);
  return stamp > newestStamp ? stamp : `${newestStamp}-${newestSeq + 1}`;
}

export const versionIdSchema = z
  .string()
  .max(VERSION_ID_MAX_LENGTH, `must be ${versionIdRuleText}`)
  .regex(VERSION_ID, `must be ${versionIdRuleText}`);
