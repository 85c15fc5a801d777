/**
 * For the replication tests: the real `offsite replicate` and `offsite standby` as child
 * processes (their JSON events collected as they come), a tree comparison that checks what
 * a user would (type, bytes by SHA-256, mode, mtime to the millisecond, symlink targets),
 * and a seeded writer of mixed changes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";

const MAIN = resolve(import.meta.dirname, "../../agent/main.mjs");

export interface OffsiteProcess {
  child: ChildProcess;
  events: Record<string, unknown>[];
  /** Resolves with the first event that `matches`, among those seen so far or to come. */
  waitFor(
    matches: (event: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function startProcess(args: string[]): OffsiteProcess {
  const child = spawn(process.execPath, [MAIN, ...args, "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  const events: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buffered = "";
  child.stderr.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        events.push({ event: "unparsed", line });
      }
    }
    for (const waiter of waiters) waiter();
  });
  child.stdout.resume();
  const exited = once(child, "exit");
  return {
    child,
    events,
    waitFor(matches, timeoutMs = 30_000) {
      return new Promise((resolveEvent, reject) => {
        const check = () => {
          const found = events.find(matches);
          if (found) {
            cleanup();
            resolveEvent(found);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(`no such event within ${timeoutMs} ms; events: ${JSON.stringify(events.slice(-20))}`),
          );
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`the process exited; events: ${JSON.stringify(events.slice(-20))}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off("exit", onExit);
        };
        waiters.add(check);
        child.once("exit", onExit);
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** One line per entry of a tree (without `.offsite`), for comparing two trees. */
export function describeTree(root: string): Map<string, string> {
  const described = new Map<string, string>();
  const walk = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = prefix ? `${prefix}/${name}` : name;
      if (path === ".offsite") continue;
      const absolute = join(dir, name);
      const stat = lstatSync(absolute);
      const mode = (stat.mode & 0o7777).toString(8);
      const mtime = Math.floor(stat.mtimeMs);
      if (stat.isDirectory()) {
        described.set(path, `dir ${mode} ${mtime}`);
        walk(absolute, path);
      } else if (stat.isSymbolicLink()) {
        described.set(path, `symlink ${readlinkSync(absolute)}`);
      } else {
        const sha = createHash("sha256").update(readFileSync(absolute)).digest("hex");
        described.set(path, `file ${stat.size} ${sha} ${mode} ${mtime}`);
      }
    }
  };
  walk(root, "");
  return described;
}

/** The first differences between two trees, as readable lines (empty when identical). */
export function treeDifferences(primary: string, standby: string, limit = 10): string[] {
  const a = describeTree(primary);
  const b = describeTree(standby);
  const differences: string[] = [];
  for (const [path, line] of a) {
    if (b.get(path) !== line)
      differences.push(`${path}: primary ${line}, standby ${b.get(path) ?? "(missing)"}`);
  }
  for (const path of b.keys()) if (!a.has(path)) differences.push(`${path}: only on the standby`);
  return differences.slice(0, limit);
}

/** Polls until the trees are identical; throws with the differences left after `timeoutMs`. */
export async function waitForIdentical(
  primary: string,
  standby: string,
  timeoutMs = 30_000,
): Promise<number> {
  const started = Date.now();
  let differences: string[] = [];
  while (Date.now() - started < timeoutMs) {
    try {
      differences = treeDifferences(primary, standby);
    } catch (error) {
      differences = [(error as Error).message]; // a file renamed while we looked
    }
    if (differences.length === 0) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the trees still differ after ${timeoutMs} ms:\n${differences.join("\n")}`);
}

/** A small deterministic generator (mulberry32). */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ChangeCounts {
  created: number;
  edited: number;
  deleted: number;
  renamed: number;
  chmodded: number;
  dirsRenamed: number;
}

/**
 * Makes `count` mixed changes under `root`: creations (small and some large), edits,
 * deletions, renames of files, renames of a directory with files in it, mode changes,
 * with `pauseEvery` changes between short pauses (0: no pause). Names made are numbered
 * from `first`: calls on the same tree pass distinct ranges.
 */
export async function mixedChanges(
  root: string,
  count: number,
  seed: number,
  pauseEvery = 0,
  first = 0,
): Promise<ChangeCounts> {
  const random = seeded(seed);
  const counts: ChangeCounts = { created: 0, edited: 0, deleted: 0, renamed: 0, chmodded: 0, dirsRenamed: 0 };
  const files = (): string[] => {
    const found: string[] = [];
    const walk = (dir: string, prefix: string) => {
      for (const name of readdirSync(dir)) {
        const path = prefix ? `${prefix}/${name}` : name;
        if (path === ".offsite") continue;
        const stat = lstatSync(join(dir, name));
        if (stat.isDirectory()) walk(join(dir, name), path);
        else found.push(path);
      }
    };
    walk(root, "");
    return found;
  };
  let known = files();
  const pick = () => known[Math.floor(random() * known.length)];
  for (let i = first; i < first + count; i++) {
    const roll = random();
    if (i % 50 === 0) known = files();
    if (roll < 0.35 || known.length < 10) {
      const dir = `d${Math.floor(random() * 8)}`;
      mkdirSync(join(root, dir), { recursive: true });
      const large = random() < 0.03;
      const size = large ? 100_000 + Math.floor(random() * 300_000) : Math.floor(random() * 6000);
      const path = `${dir}/f${i}-${Math.floor(random() * 1e6)}.dat`;
      writeFileSync(join(root, path), Buffer.alloc(size, `${i}:${random()}`));
      known.push(path);
      counts.created++;
    } else if (roll < 0.6) {
      const path = pick();
      if (path && existsSync(join(root, path))) {
        writeFileSync(join(root, path), `edited ${i} ${random()}`, { flag: random() < 0.5 ? "a" : "w" });
        counts.edited++;
      }
    } else if (roll < 0.75) {
      const path = pick();
      if (path && existsSync(join(root, path))) {
        rmSync(join(root, path));
        known = known.filter((p) => p !== path);
        counts.deleted++;
      }
    } else if (roll < 0.9) {
      const path = pick();
      if (path && existsSync(join(root, path))) {
        const to = `d${Math.floor(random() * 8)}/r${i}.dat`;
        mkdirSync(join(root, to, ".."), { recursive: true });
        renameSync(join(root, path), join(root, to));
        known = known.filter((p) => p !== path);
        known.push(to);
        counts.renamed++;
      }
    } else if (roll < 0.98) {
      const path = pick();
      if (path && existsSync(join(root, path))) {
        chmodSync(join(root, path), random() < 0.5 ? 0o600 : 0o640);
        counts.chmodded++;
      }
    } else {
      const from = `d${Math.floor(random() * 8)}`;
      const to = `moved${i}`;
      if (existsSync(join(root, from))) {
        renameSync(join(root, from), join(root, to));
        known = files();
        counts.dirsRenamed++;
      }
    }
    if (pauseEvery > 0 && i % pauseEvery === pauseEvery - 1) await new Promise((r) => setTimeout(r, 5));
  }
  return counts;
}
