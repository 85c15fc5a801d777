/**
 * Field builders shared by the three Offsite APIs. What the agent reads too (GUIDs,
 * sizes, durations, retention, glob patterns) comes from contract/, so the CRDs, the
 * operator and the agent share one rule and one parser for each.
 *
 * Every rule that a person can break in YAML is written once here and enforced in
 * two places: by zod in TypeScript (the operator, the agent, the tests) and by the
 * Kubernetes API server through the generated CRD. The subtle part is the second
 * one: OpenAPI `pattern` errors print the raw regex, so rules with a pattern are
 * expressed as CEL (`x-kubernetes-validations`) with a message a person can act
 * on, and every string checked by CEL carries a `maxLength` so the API server's
 * cost estimator accepts the rule.
 */
import { z } from "zod";
import { GUID_MAX_LENGTH, GUID_PATTERN, guidRuleText } from "../../contract/guid.ts";
import { globPattern } from "../../contract/filters.ts";
import { retentionFields } from "../../contract/retention.ts";
import { DURATION, QUANTITY } from "../../contract/units.ts";
import { VERSION_ID, VERSION_ID_MAX_LENGTH, versionIdRuleText } from "../../contract/versions.ts";

/** A CEL validation rule as the API server reads it from `x-kubernetes-validations`. */
export interface CelRule {
  rule: string;
  message: string;
  /** JSONPath-like field the error is reported on, relative to the schema the rule sits on. */
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

/** Attaches the description (required on every field: `kubectl explain` shows it) and optional extras. */
export function described<T extends z.ZodType>(
  schema: T,
  description: string,
  extra: Record<string, unknown> = {},
): T {
  return schema.meta({ description, ...extra });
}

/** A cross-field rule: CEL for the API server and the same rule as a predicate for zod. */
export interface CrossFieldRule<V> extends CelRule {
  holds: (value: V) => boolean;
}

/**
 * Attaches cross-field rules to a schema: the CEL copies go verbatim into the CRD, the
 * predicates into zod, so the operator re-checks exactly what the API server checks.
 */
export function withRules<T extends z.ZodType>(schema: T, ...rules: CrossFieldRule<z.output<T>>[]): T {
  let checked: T = schema;
  for (const { holds, message, fieldPath } of rules) {
    const path = fieldPath ? fieldPath.replace(/^\./, "").split(".") : [];
    checked = checked.refine((value) => holds(value), { message, path });
  }
  return checked.meta({ "x-kubernetes-validations": rules.map(({ holds: _holds, ...cel }) => cel) });
}

/** A CEL string literal for a regex: a raw single-quoted string, which needs no escaping. */
function celRegex(regex: RegExp): string {
  if (regex.source.includes("'")) throw new Error(`regex ${regex.source} cannot contain a single quote`);
  return `r'${regex.source}'`;
}

/**
 * A string that must match `regex`, with one human message for both zod and the API server.
 * The regex must be valid in both JavaScript and RE2 (no look-arounds, no back-references).
 */
export function matchingString(regex: RegExp, maxLength: number, message: string): z.ZodString {
  return z
    .string()
    .max(maxLength)
    .refine((value) => regex.test(value), { message })
    .meta({ "x-kubernetes-validations": [{ rule: `self.matches(${celRegex(regex)})`, message }] });
}

/** An integer in [min, max], checked by one CEL rule so the API server's message is `message`. */
export function intInRange(min: number, max: number, message: string): z.ZodNumber {
  return z
    .number()
    .int()
    .refine((value) => value >= min && value <= max, { message })
    .meta({ "x-kubernetes-validations": [{ rule: `self >= ${min} && self <= ${max}`, message }] });
}

// --- Kubernetes formats -----------------------------------------------------------------

/** A DNS-1123 label, the name format of Services, Secrets and most objects. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A DNS-1123 subdomain, the name format of most other objects. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function objectName(what: string): z.ZodString {
  return matchingString(
    DNS_SUBDOMAIN,
    253,
    `must be the name of ${what}: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
  );
}

/**
 * A non-negative size in the Kubernetes quantity format (`10Gi`, `500M`, `1024`).
 * Accepts a YAML integer too, as `resources.requests` does, hence int-or-string.
 * Parsed by the contract's sizeToBytes, the one size parser.
 */
export function size(): z.ZodType<number | string> {
  const message = "must be a non-negative size in Kubernetes quantity format, such as 10Gi, 500Mi or 1G";
  return z.union([z.number().int().nonnegative(), z.string().max(64).regex(QUANTITY, message)]).meta({
    "x-kubernetes-validations": [
      {
        rule: `type(self) == int ? int(self) >= 0 : string(self).matches(${celRegex(QUANTITY)})`,
        message,
      },
    ],
  });
}

/** A duration in the format Kubernetes APIs use (Go's `time.Duration`): `30s`, `1h30m`, `500ms`. */
export function duration(): z.ZodString {
  return matchingString(
    DURATION,
    64,
    "must be a duration such as 30s, 5m, 1h30m or 500ms (units: ns, us, ms, s, m, h)",
  );
}

/**
 * A cron expression of five fields (minute hour day-of-month month day-of-week), with the
 * numeric ranges checked per field, or one of the @-macros CronJob accepts.
 */
const cronField = (value: string) => `(\\*|${value}(-${value})?)(/[1-9][0-9]{0,2})?`;
const cronList = (value: string) => `${cronField(value)}(,${cronField(value)})*`;
const MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC";
const WEEKDAYS = "SUN|MON|TUE|WED|THU|FRI|SAT";
export const CRON = new RegExp(
  "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|" +
    [
      cronList("([0-5]?[0-9])"),
      cronList("([01]?[0-9]|2[0-3])"),
      cronList("(0?[1-9]|[12][0-9]|3[01])"),
      cronList(`(0?[1-9]|1[0-2]|${MONTHS})`),
      cronList(`([0-7]|${WEEKDAYS})`),
    ].join(" +") +
    ")$",
);
export function cronSchedule(): z.ZodString {
  return matchingString(
    CRON,
    256,
    'must be a cron expression of five fields "minute hour day-of-month month day-of-week" (e.g. "0 3 * * *" or "*/15 * * * MON-FRI") or one of @hourly, @daily, @weekly, @monthly, @yearly',
  );
}

/** A GUID naming a site or a source: the contract's one rule (contract/guid.ts), here with CEL. */
export function guid(what: string): z.ZodString {
  return matchingString(GUID_PATTERN, GUID_MAX_LENGTH, `must identify ${what}: ${guidRuleText}`);
}

/** A version ID of a source on a receiver (contract/versions.ts), here with CEL. */
export function versionId(): z.ZodString {
  return matchingString(VERSION_ID, VERSION_ID_MAX_LENGTH, `must be ${versionIdRuleText}`);
}

/** A label selector, as in every Kubernetes API (`matchLabels` / `matchExpressions`). */
export function labelSelector(description: string) {
  return described(
    z.object({
      matchLabels: described(
        z.record(z.string(), z.string()),
        "Labels that must all be present with these values.",
      ).optional(),
      matchExpressions: described(
        z.array(
          z.object({
            key: described(z.string().min(1).max(317), "The label key the requirement applies to."),
            operator: described(
              z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
              "How the key relates to the values.",
            ),
            values: described(
              z.array(z.string().max(63)),
              "Values for In and NotIn; must be empty for Exists and DoesNotExist.",
            ).optional(),
          }),
        ),
        "Set-based requirements; all must hold.",
      ).optional(),
    }),
    description,
  );
}

// --- Status conventions ------------------------------------------------------------------

/**
 * A status condition in the Kubernetes conventions (`metav1.Condition`): one entry per
 * `type`, `observedGeneration` telling which spec it describes.
 */
export const condition = z.object({
  type: described(z.string().min(1).max(316), "Kind of condition, e.g. Ready, Degraded, Progressing."),
  status: described(z.enum(["True", "False", "Unknown"]), "Whether the condition holds."),
  observedGeneration: described(
    z.number().int().nonnegative(),
    "The .metadata.generation the condition was computed from.",
  ).optional(),
  lastTransitionTime: described(z.iso.datetime(), "When the condition last changed status."),
  reason: described(
    z.string().min(1).max(1024),
    "A CamelCase reason for the last transition, stable enough for alerts.",
  ),
  message: described(z.string().max(32768), "A human-readable explanation, with what to do where possible."),
});
export type Condition = z.infer<typeof condition>;

export function conditions() {
  return described(z.array(condition), "The latest observations of the object's state.", {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
  });
}

export function observedGeneration() {
  return described(
    z.number().int().nonnegative(),
    "The .metadata.generation the operator last acted on; when it is lower than the generation, the status is stale.",
  );
}

/** Content filters that run on the sending agent, so filtered data never leaves the source. */
export function contentFirewall(defaultEnabled: boolean) {
  return described(
    z
      .object({
        enabled: described(
          z.boolean(),
          "Stop files detected as executables or scripts from crossing.",
        ).default(defaultEnabled),
        blockExecutables: described(
          z.boolean(),
          "Stop binaries recognised by content (ELF, PE, Mach-O magic numbers), whatever their name.",
        ).default(true),
        blockScripts: described(
          z.boolean(),
          "Stop scripts recognised by content (a #! first line) and by extension (.sh, .php, .py, .pl, .js, ...).",
        ).default(true),
        blockPatterns: described(
          z.array(globPattern),
          "Extra glob patterns (relative to the data root) that are always stopped, e.g. **/*.phtml.",
        ).default([]),
        allowPatterns: described(
          z.array(globPattern),
          "Glob patterns exempt from the firewall, for files known to be safe.",
        ).default([]),
      })
      .default({
        enabled: defaultEnabled,
        blockExecutables: true,
        blockScripts: true,
        blockPatterns: [],
        allowPatterns: [],
      }),
    "The content firewall: every file it stops is counted and reported, never silently dropped.",
  );
}

export function fileFilters() {
  return described(
    z
      .object({
        include: described(
          z.array(globPattern),
          "Glob patterns of files to include (relative to the data root); empty means everything.",
        ).default([]),
        exclude: described(
          z.array(globPattern),
          "Glob patterns of files to leave out; exclusion wins over inclusion.",
        ).default([]),
        maxFileSize: described(
          size(),
          "Files larger than this are left out and reported (e.g. 2Gi).",
        ).optional(),
      })
      .default({ include: [], exclude: [] }),
    "Which files take part. Filters run on the sending agent; every file left out is counted and listed in the report.",
  );
}

/** How many point-in-time versions the receiver keeps for a source (contract/retention.ts). */
export function retention(description: string) {
  return described(
    z.object({
      keepLast: retentionFields.keepLast.optional(),
      keepDaily: retentionFields.keepDaily.optional(),
      keepWeekly: retentionFields.keepWeekly.optional(),
      keepMonthly: retentionFields.keepMonthly.optional(),
    }),
    description,
  );
}
