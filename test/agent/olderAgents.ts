/**
 * Older releases of the agent, for the mixed-version tests: each is the agent's sources as
 * they were at one commit (test/fixtures/olderAgents/pack.sh), unpacked into a temporary
 * directory and run with this project's node_modules, as a real process of its own.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const FIXTURES = resolve(import.meta.dirname, "../fixtures/olderAgents");
const NODE_MODULES = resolve(import.meta.dirname, "../../node_modules");

export const OLDER_AGENTS = [
  { name: "protocol-v1", commit: "179eb42", speaks: [1] },
  { name: "protocol-v2", commit: "5d46c97", speaks: [2, 1] },
] as const;

export interface OlderAgent {
  /** Its `agent/main.mjs`, for runOffsite and startReceiverProcess. */
  main: string;
  remove(): void;
}

export function unpackOlderAgent(name: string): OlderAgent {
  const dir = mkdtempSync(join(tmpdir(), `offsite-${name}-`));
  execFileSync("tar", ["-xzf", join(FIXTURES, `${name}.tar.gz`), "-C", dir]);
  symlinkSync(NODE_MODULES, join(dir, "node_modules"));
  return {
    main: join(dir, "agent", "main.mjs"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
