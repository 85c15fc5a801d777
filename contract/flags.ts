/**
 * Command-line flags defined once, read both ways: the agent parses its argv with a role's
 * flag table, and the operator renders a container's args from the same table. A table
 * also gives the typed options and each flag's help, so the two halves cannot drift:
 * an option the operator renders is, by construction, one the agent accepts.
 *
 * The one subtle point: rendering must round-trip through parsing exactly
 * (`parse(render(x))` equals x). Values are rendered in a form their parser reads back
 * to the same value (sizes in bytes, durations as the shortest exact string such as
 * `5m`), lists as repeated flags, switches as `--flag` / `--no-flag`. A property test
 * checks the round trip for every role and every kind of flag.
 */
import { parseArgs } from "node:util";
import { isGuid, guidRuleText } from "./guid.ts";
import { durationToMs, msToDuration, sizeToBytes } from "./units.ts";
import { isVersionId, versionIdRuleText } from "./versions.ts";

/** A command line that cannot be used as given; its message says what to change. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

interface FlagBase<T> {
  help: string;
  /** The flag's name when it is not the option's name in kebab case (e.g. a singular for a list). */
  flag?: string;
  placeholder?: string;
  /** Absent options take this value; without one, an absent option is undefined. */
  default?: T;
  required?: boolean;
}
interface ValueFlag<T> extends FlagBase<T> {
  kind: "value";
  read(text: string, flag: string): T;
  write(value: T): string;
}
interface SwitchFlag extends FlagBase<boolean> {
  kind: "switch";
}
interface ListFlag<T> extends FlagBase<T[]> {
  kind: "list";
  read(text: string, flag: string): T;
  write(value: T): string;
}
// read/write are methods, so a ValueFlag<number> is a ValueFlag<unknown> (bivariant parameters).
export type Flag = ValueFlag<unknown> | SwitchFlag | ListFlag<unknown>;
export type FlagTable = Record<string, Flag>;

type ValueOf<F> =
  F extends ValueFlag<infer T>
    ? T
    : F extends SwitchFlag
      ? boolean
      : F extends ListFlag<infer I>
        ? I[]
        : never;
type Settled<F> = F extends { default: unknown } | { required: true } ? ValueOf<F> : ValueOf<F> | undefined;
/** The typed options a table describes. */
export type OptionsOf<T extends FlagTable> = { -readonly [K in keyof T]: Settled<T[K]> };

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const flagName = (key: string, flag: { flag?: string }) => flag.flag ?? kebab(key);

// --- Flag builders -----------------------------------------------------------------------

type Extras<T> = Omit<FlagBase<T>, "help">;

// Each builder keeps its extras in its type, so `default` and `required` decide whether the
// typed option may be undefined.
export const flags = {
  text<const E extends Extras<string>>(help: string, extras = {} as E): ValueFlag<string> & E {
    return { kind: "value", help, ...extras, read: (text) => text, write: (value) => value };
  },
  integer<const E extends Extras<number>>(
    help: string,
    range: { min: number; max: number },
    extras = {} as E,
  ): ValueFlag<number> & E {
    return {
      kind: "value",
      help,
      placeholder: "N",
      ...extras,
      read: (text, flag) => readInteger(text, flag, range),
      write: String,
    };
  },
  /** A size in Kubernetes quantity format; the option holds bytes. */
  size<const E extends Extras<number>>(help: string, extras = {} as E): ValueFlag<number> & E {
    return {
      kind: "value",
      help,
      placeholder: "SIZE",
      ...extras,
      read: unitReader(sizeToBytes),
      write: String,
    };
  },
  /** A duration such as 30s or 1h30m of at least a millisecond; the option holds whole milliseconds. */
  duration<const E extends Extras<number>>(help: string, extras = {} as E): ValueFlag<number> & E {
    return {
      kind: "value",
      help,
      placeholder: "DURATION",
      ...extras,
      read: unitReader((text) => {
        const ms = durationToMs(text);
        if (!Number.isInteger(ms) || ms < 1)
          throw new Error(`${JSON.stringify(text)} must be a whole number of milliseconds, at least 1ms`);
        return ms;
      }),
      write: msToDuration,
    };
  },
  /** A version ID (contract/versions.ts). */
  version<const E extends Extras<string>>(help: string, extras = {} as E): ValueFlag<string> & E {
    return {
      kind: "value",
      help,
      placeholder: "VERSION",
      ...extras,
      read: readVersion,
      write: (value) => value,
    };
  },
  guid<const E extends Extras<string>>(help: string, extras = {} as E): ValueFlag<string> & E {
    return { kind: "value", help, placeholder: "GUID", ...extras, read: readGuid, write: (value) => value };
  },
  /** A boolean; false unless given (or its default). */
  switch<const E extends Extras<boolean>>(
    help: string,
    extras = {} as E,
  ): SwitchFlag & { default: boolean } & E {
    return { kind: "switch", help, default: false, ...extras };
  },
  texts<const E extends Extras<string[]>>(
    help: string,
    extras = {} as E,
  ): ListFlag<string> & { default: string[] } & E {
    return { kind: "list", help, default: [], ...extras, read: (text) => text, write: (value) => value };
  },
  guids<const E extends Extras<string[]>>(
    help: string,
    extras = {} as E,
  ): ListFlag<string> & { default: string[] } & E {
    return {
      kind: "list",
      help,
      placeholder: "GUID",
      default: [],
      ...extras,
      read: readGuid,
      write: (v) => v,
    };
  },
};

/** A unit's parser as a flag reader: its error becomes a UsageError naming the flag. */
function unitReader(parse: (text: string) => number): (text: string, flag: string) => number {
  return (text, flag) => {
    try {
      return parse(text);
    } catch (error) {
      throw new UsageError(`--${flag}: ${(error as Error).message}`);
    }
  };
}

function readInteger(text: string, flag: string, { min, max }: { min: number; max: number }): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max)
    throw new UsageError(`--${flag} must be a whole number in ${min}-${max}, not ${JSON.stringify(text)}`);
  return Number(text);
}

function readVersion(text: string, flag: string): string {
  if (!isVersionId(text))
    throw new UsageError(`--${flag} ${JSON.stringify(text)} is not ${versionIdRuleText}`);
  return text;
}

function readGuid(text: string, flag: string): string {
  if (!isGuid(text)) throw new UsageError(`--${flag} ${JSON.stringify(text)} is not a GUID: ${guidRuleText}`);
  return text;
}

// --- Parsing and rendering ---------------------------------------------------------------

export interface Parsed<T extends FlagTable> {
  options: OptionsOf<T>;
  positionals: string[];
}

/**
 * Parses argv (after the role) with a table. `extra` are presentation switches every role
 * takes (--help, --json) that are not options of the role. Required options are checked
 * unless --help was asked for; `what` names the command in that message.
 */
export function parseFlags<T extends FlagTable>(
  table: T,
  argv: string[],
  what: string,
  extra: string[] = [],
): Parsed<T> & { extra: Record<string, boolean> } {
  const config: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const [key, flag] of Object.entries(table)) {
    config[flagName(key, flag)] = {
      type: flag.kind === "switch" ? "boolean" : "string",
      ...(flag.kind === "list" ? { multiple: true } : {}),
    };
  }
  for (const name of extra) config[name] = { type: "boolean", ...(name === "help" ? { short: "h" } : {}) };
  const { values, positionals } = parseArgs({
    args: argv,
    options: config,
    allowPositionals: true,
    allowNegative: true,
    strict: true,
  });
  const options: Record<string, unknown> = {};
  for (const [key, flag] of Object.entries(table)) {
    const name = flagName(key, flag);
    const raw = values[name];
    if (raw === undefined) {
      if (flag.default !== undefined) options[key] = flag.default;
      continue;
    }
    if (flag.kind === "switch") options[key] = raw;
    else if (flag.kind === "list") options[key] = (raw as string[]).map((text) => flag.read(text, name));
    else options[key] = flag.read(raw as string, name);
  }
  const extraValues: Record<string, boolean> = {};
  for (const name of extra) extraValues[name] = values[name] === true;
  if (!extraValues.help) {
    const missing = Object.entries(table)
      .filter(([key, flag]) => flag.required && options[key] === undefined)
      .map(([key, flag]) => `--${flagName(key, flag)}${flag.placeholder ? ` ${flag.placeholder}` : ""}`);
    if (missing.length > 0) throw new UsageError(`${what} needs ${missing.join(" and ")}`);
  }
  return { options: options as OptionsOf<T>, positionals, extra: extraValues };
}

/**
 * The argv that parses back to `options` (flags at their default are left out, so a
 * rendered container spec shows only what differs).
 */
export function renderFlags<T extends FlagTable>(table: T, options: Partial<OptionsOf<T>>): string[] {
  const argv: string[] = [];
  for (const [key, flag] of Object.entries(table)) {
    const value = (options as Record<string, unknown>)[key];
    if (value === undefined || sameValue(value, flag.default)) continue;
    const name = flagName(key, flag);
    if (flag.kind === "switch") argv.push(value ? `--${name}` : `--no-${name}`);
    else if (flag.kind === "list")
      for (const item of value as never[]) argv.push(`--${name}=${flag.write(item)}`);
    else argv.push(`--${name}=${flag.write(value)}`);
  }
  return argv;
}

const sameValue = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** One help line per flag, for `offsite ROLE --help`. */
export function flagHelp(table: FlagTable): string {
  const rows = Object.entries(table).map(([key, flag]) => {
    const name = flagName(key, flag);
    const left =
      flag.kind === "switch"
        ? `--${name}` + (flag.default === true ? ` (--no-${name} to turn off)` : "")
        : `--${name} ${flag.placeholder ?? "VALUE"}` + (flag.kind === "list" ? " ..." : "");
    const shown = flag.kind === "value" && flag.default !== undefined ? flag.write(flag.default) : undefined;
    const defaultText = shown !== undefined ? ` (default ${shown})` : "";
    return { left, right: flag.help + defaultText };
  });
  const width = Math.min(34, Math.max(...rows.map((r) => r.left.length)) + 2);
  // A name wider than the column gets a line of its own, the help beneath it in the column.
  return rows
    .map((r) =>
      r.left.length < width
        ? `  ${r.left.padEnd(width)}${r.right}`
        : `  ${r.left}\n  ${" ".repeat(width)}${r.right}`,
    )
    .join("\n");
}
