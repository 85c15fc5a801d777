/**
 * The one GUID rule. A GUID names a site (a source cluster) or a source (a protected
 * workload or volume) and becomes a directory name on the receiver's disk, a certificate's
 * O or CN, a CRD field and a protocol field — so one rule serves all four.
 *
 * Lower-case letters, digits and '-' (a DNS label): a Kubernetes UID fits, and so does a
 * readable name such as `orders-db`. Nothing that could walk a path ('/', '.') or differ
 * only by case on a case-insensitive disk is accepted. The regex is valid in both
 * JavaScript and RE2, so the CRDs enforce it with CEL too.
 */
import { z } from "zod";

export const GUID_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const GUID_MAX_LENGTH = 63;

export const guidRuleText =
  "1-63 lower-case letters, digits or '-', starting and ending with a letter or digit (a Kubernetes UID or a name such as orders-db)";

export function isGuid(value: string): boolean {
  return value.length <= GUID_MAX_LENGTH && GUID_PATTERN.test(value);
}

/** A zod schema of the rule, with a message naming what the GUID identifies. */
export function guidSchema(what = "a site or source"): z.ZodString {
  return z
    .string()
    .max(GUID_MAX_LENGTH, `must identify ${what}: ${guidRuleText}`)
    .regex(GUID_PATTERN, `must identify ${what}: ${guidRuleText}`);
}
