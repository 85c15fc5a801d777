/**
 * Version IDs: the name of one point-in-time version of a source on a receiver, the UTC
 * time its job committed (`20261201T031500Z`, with `-N` when two commit in one second).
 * One rule for the protocol, the CLI's --version, the CRDs' compare/restore version and
 * the control channel; an absent version means the newest everywhere.
 */
import { z } from "zod";

export const VERSION_ID = /^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$/;
export const VERSION_ID_MAX_LENGTH = 32;

export const versionIdRuleText = "a version ID such as 20261201T031500Z (as `offsite push` reports it)";

export function isVersionId(value: string): boolean {
  return value.length <= VERSION_ID_MAX_LENGTH && VERSION_ID.test(value);
}

export const versionIdSchema = z
  .string()
  .max(VERSION_ID_MAX_LENGTH, `must be ${versionIdRuleText}`)
  .regex(VERSION_ID, `must be ${versionIdRuleText}`);
