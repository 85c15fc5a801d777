/**
 * Sizes and durations: one format and one parser each, used by the CRDs, the operator and
 * the agent's command line alike.
 *
 * Sizes are Kubernetes quantities (`10Gi`, `500M`, `1536`), durations Go's
 * `time.Duration` strings (`30s`, `1h30m`, `500ms`), as in every Kubernetes API. Both
 * regexes are valid in RE2 too, so the API server checks them with CEL.
 */

/** A non-negative Kubernetes quantity: a number with an optional binary or decimal suffix. */
export const QUANTITY = /^([0-9]+(\.[0-9]+)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$/;

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** Bytes of a size in Kubernetes quantity format (a plain number is bytes). */
export function sizeToBytes(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0) throw new Error(`${value} is not a size in bytes`);
    return value;
  }
  const match = QUANTITY.exec(value);
  if (!match)
    throw new Error(`${JSON.stringify(value)} is not a Kubernetes quantity (e.g. 10Gi, 500M, 1024)`);
  const number = value.slice(0, value.length - (match[3]?.length ?? 0));
  const suffix = match[3] ?? "";
  return Math.round(Number(number) * (BINARY[suffix] ?? DECIMAL[suffix] ?? 1));
}

/** A duration as Go's time.Duration writes it: one or more number+unit pairs. */
export const DURATION = /^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

/** Milliseconds of a duration string (`1h30m` → 5,400,000). */
export function durationToMs(value: string): number {
  if (!DURATION.test(value))
    throw new Error(`${JSON.stringify(value)} is not a duration (e.g. 30s, 5m, 1h30m)`);
  let total = 0;
  for (const [, amount, , unit] of value.matchAll(/([0-9]+(\.[0-9]+)?)(ns|us|ms|s|m|h)/g)) {
    total += Number(amount) * UNIT_MS[unit!]!;
  }
  return total;
}

/** The shortest exact duration string for whole milliseconds (5400000 → "90m"). */
export function msToDuration(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new Error(`${ms} is not a whole number of milliseconds`);
  if (ms % 3600e3 === 0 && ms > 0) return `${ms / 3600e3}h`;
  if (ms % 60e3 === 0 && ms > 0) return `${ms / 60e3}m`;
  if (ms % 1e3 === 0 && ms > 0) return `${ms / 1e3}s`;
  return `${ms}ms`;
}
