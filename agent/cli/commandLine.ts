/**
 * How the `offsite` program reads its argv: the role, then that role's flags from the
 * contract's tables (contract/roles.ts). Kept apart from running the role so the
 * operator's tests can run every container command line it renders through exactly the
 * parser the agent uses, without starting anything.
 */
import { parseFlags, UsageError, type FlagTable } from "../../contract/flags.ts";
import { ROLE_FLAGS, type Role } from "../../contract/roles.ts";

/** Switches of the CLI's own presentation, accepted by every role. */
const PRESENTATION = ["help", "json"];

export interface CommandLine {
  role: Role;
  options: Record<string, unknown>;
  positionals: string[];
  help: boolean;
  json: boolean;
}

/** Parses `ROLE [flags] [positionals]`; throws UsageError or ERR_PARSE_ARGS_* naming the problem. */
export function parseCommandLine(argv: string[]): CommandLine {
  const [role = "", ...rest] = argv;
  if (!Object.hasOwn(ROLE_FLAGS, role))
    throw new UsageError(
      `unknown role ${JSON.stringify(role)}; one of ${Object.keys(ROLE_FLAGS).join(", ")}`,
    );
  const table: FlagTable = ROLE_FLAGS[role as Role];
  const { options, positionals, extra } = parseFlags(table, rest, role, PRESENTATION);
  return { role: role as Role, options, positionals, help: extra.help ?? false, json: extra.json ?? false };
}
