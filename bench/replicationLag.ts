/**
 * B5 of ../shared/notes/performance.md, replication lag: a writer makes 200 file changes/s
 * for 60 s on the primary (35% rewrites of existing files, 25% new files, 20% renames (half
 * into another directory), 20% deletes; 1–8 KiB each) over 6,000 files in 300 directories,
 * and one observer on the standby's side records when each change is visible there. Peers,
 * one after the other on a fresh copy of the same tree (never at once: 2 cores):
 *   offsite        `offsite replicate SRC --to DIR --json` (an in-process standby over TLS)
 *   lsyncd         2.2.3 (Debian), `default.rsync` to a local directory, all defaults (delay 15 s)
 *   lsyncd delay 1 the same with `delay = 1`
 *
 * The writer and the observer run in this process, so one clock (performance.now) times
 * both ends. Every write puts a unique token and the file's length in its first line; the
 * observer watches every directory of the standby's tree with inotify (fs.watch, one per
 * directory: the writer makes no directories) and, on an event for a path it waits for,
 * reads the file. A change counts as visible when the path shows that write's token (or a
 * later one of the same path) at the full length; a delete when the path is gone; a rename
 * when the new name shows the moved content and the old name is gone (the later of the
 * two). Names are never reused, so "gone" is final. A path is deleted or renamed away only
 * 30 s of changes after it appeared (6,000 changes), so "gone" never means "not there yet".
 * A sweep every 2 s looks at every path still awaited for 2 s or more, in case inotify
 * missed something; what it finds is counted (0 expected), and its timing is late by < 2 s.
 *
 * CPU: each peer runs in a process group of its own, and its seconds are read from
 * /proc/<pid>/stat of the peer's top process: utime + stime (all its threads) + cutime +
 * cstime (every child it has waited for, and theirs: lsyncd waits for each rsync it forks to
 * learn its exit code, and rsync for its receiver, so every rsync's CPU is in lsyncd's
 * cutime/cstime once it has exited). Read at the writer's start (after the initial sync
 * and with no child running) and once every change is visible and no child is left, so
 * only the run is counted. The replicate process has no children: its own time, standby
 * included, is the count. Cross-check: the machine's busy CPU (/proc/stat) over the same
 * window, less this process's (the writer and the observer).
 *
 * Besides its rows in the main table, each run writes bench/RESULTS-B5.md and
 * bench/results-B5.json with the details (RESULTS.md is rewritten whole by every run,
 * so a `--only B5` run would otherwise lose the others' rows there). One file (past ~400
 * lines) because the writer, the observer and the peers' accounting share one clock, one
 * model of the tree and one report.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  type FSWatcher,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { prng } from "./workloads.ts";
import { TICKS, treeCpuSeconds } from "./peers.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OFFSITE = join(ROOT, "agent", "main.mjs");

const RATE = 200;
const DIRS = 300;
const FILES_PER_DIR = 20;
/** Changes before a path that appeared may be deleted or renamed away (30 s at 200/s). */
const QUARANTINE = 30 * RATE;
const SWEEP_MS = 2000;
/** How long after the writer's last change a peer may take to show everything. */
const DRAIN_MS = 60_000;
const STATE_DIR = ".offsite";

export interface LagRow {
  id: string;
  workload: string;
  peer: string;
  seconds: number;
  bytes?: number;
  note?: string;
}

interface Options {
  work: string;
  scale: number;
  machine: string;
  storage: string;
  log: (message: string) => void;
}

type Kind = "rewrite" | "create" | "rename" | "delete";
const KINDS: Kind[] = ["rewrite", "create", "rename", "delete"];

// ---------------------------------------------------------------------------------------
// The workload: contents that say which write they are.

const FILLER = Buffer.from("abcdefghijklmnopqrstuvwxyz0123456789\n".repeat(300));

function content(token: number, random: () => number): Buffer {
  const length = 1024 + Math.floor(random() * 7 * 1024);
  const header = `offsite-bench token ${token} length ${String(length).padStart(5, "0")}\n`;
  const buffer = Buffer.allocUnsafe(length);
  buffer.write(header, 0, "latin1");
  FILLER.copy(buffer, header.length, 0, length - header.length);
  return buffer;
}

/** The token of a complete file, undefined for a partial one, null for none. */
function tokenIn(path: string): number | undefined | null {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    return null; // gone (ENOENT), or a directory in its place: not the awaited file either way
  }
  const match = /^offsite-bench token (\d+) length (\d+)\n/.exec(data.subarray(0, 64).toString("latin1"));
  if (!match || Number(match[2]) !== data.length) return undefined;
  return Number(match[1]);
}

function directories(): string[] {
  const dirs: string[] = [];
  for (let i = 0; i < 20; i++) dirs.push(`d${String(i).padStart(2, "0")}`);
  for (let i = 0; dirs.length < DIRS; i++) dirs.push(`d${String(i % 20).padStart(2, "0")}/s${i}`);
  return dirs;
}

// ---------------------------------------------------------------------------------------
// What the observer waits for.

interface Change {
  kind: Kind;
  madeAt: number;
  /** Paths still to show this change (a rename has two). */
  parts: number;
  visibleAt: number;
  bySweep: boolean;
}

/** One path's history: every state the writer gave it, in order (names are never reused). */
interface PathHistory {
  tokens: Map<number, number>; // token → position
  removedAt: number | undefined;
  length: number;
  seenPresent: boolean;
  awaited: { position: number; change: Change }[];
}

class Observer {
  readonly changes: Change[] = [];
  private readonly paths = new Map<string, PathHistory>();
  private readonly awaitedPaths = new Set<string>();
  private readonly watchers: FSWatcher[] = [];
  private sweep: NodeJS.Timeout | undefined;
  private readonly target: string;
  /** Paths the sweep found, and when: an event for one soon after means the sweep was first. */
  private readonly swept = new Map<string, number>();
  sweptBeforeEvent = 0;
  sweptPaths = 0;
  done = 0;
  torn = 0;
  watchErrors = 0;

  constructor(target: string) {
    this.target = target;
  }

  /** A path of the initial tree, on the standby already. */
  initial(path: string, token: number): void {
    this.paths.set(path, {
      tokens: new Map([[token, 0]]),
      removedAt: undefined,
      length: 1,
      seenPresent: true,
      awaited: [],
    });
  }

  newChange(kind: Kind, madeAt: number): Change {
    const change: Change = { kind, madeAt, parts: 0, visibleAt: 0, bySweep: false };
    this.changes.push(change);
    return change;
  }

  /** `change` makes `path` hold `token` (null: makes it gone). */
  expect(change: Change, path: string, token: number | null): void {
    let history = this.paths.get(path);
    if (!history) {
      history = { tokens: new Map(), removedAt: undefined, length: 0, seenPresent: false, awaited: [] };
      this.paths.set(path, history);
    }
    const position = history.length++;
    if (token === null) history.removedAt = position;
    else history.tokens.set(token, position);
    history.awaited.push({ position, change });
    change.parts++;
    this.awaitedPaths.add(path);
  }

  start(dirs: string[]): void {
    for (const dir of dirs) {
      const watcher = watch(join(this.target, dir), (_kind, name) => {
        if (name === null) return;
        const path = `${dir}/${name}`;
        const swept = this.swept.get(path);
        if (swept !== undefined && performance.now() - swept < 1000) this.sweptBeforeEvent++;
        this.swept.delete(path);
        this.check(path, false);
      });
      watcher.on("error", () => this.watchErrors++);
      this.watchers.push(watcher);
    }
    this.sweep = setInterval(() => {
      const now = performance.now();
      for (const path of [...this.awaitedPaths]) {
        const oldest = this.paths.get(path)!.awaited[0];
        if (oldest && now - oldest.change.madeAt >= SWEEP_MS) this.check(path, true);
      }
    }, SWEEP_MS);
  }

  stop(): void {
    for (const watcher of this.watchers) watcher.close();
    clearInterval(this.sweep);
  }

  private check(path: string, bySweep: boolean): void {
    const history = this.paths.get(path);
    if (!history || history.awaited.length === 0) return;
    const token = tokenIn(join(this.target, path));
    let reached = -1;
    if (token === undefined) this.torn++;
    else if (token === null) {
      // Gone counts only once it was there: a path not yet made there is gone too.
      if (history.removedAt !== undefined && history.seenPresent) reached = history.removedAt;
    } else {
      const position = history.tokens.get(token);
      if (position !== undefined) {
        reached = position;
        history.seenPresent = true;
      }
    }
    if (reached < 0) return;
    const now = performance.now();
    if (bySweep && history.awaited[0]!.position <= reached) {
      this.swept.set(path, now);
      this.sweptPaths++;
    }
    while (history.awaited.length > 0 && history.awaited[0]!.position <= reached) {
      const { change } = history.awaited.shift()!;
      change.visibleAt = Math.max(change.visibleAt, now);
      change.bySweep ||= bySweep;
      if (--change.parts === 0) this.done++;
    }
    if (history.awaited.length === 0) this.awaitedPaths.delete(path);
  }

  /** Paths still awaited that were made and removed without ever being seen on the standby. */
  unseenRemovals(): number {
    let count = 0;
    for (const history of this.paths.values())
      if (history.awaited.length > 0 && !history.seenPresent && history.removedAt !== undefined) count++;
    return count;
  }
}

// ---------------------------------------------------------------------------------------
// The writer.

interface Tree {
  dirs: string[];
  live: string[];
  tokens: Map<string, number>;
}

function makeTree(source: string, random: () => number): Tree {
  const dirs = directories();
  const live: string[] = [];
  const tokens = new Map<string, number>();
  let token = 0;
  for (const dir of dirs) {
    mkdirSync(join(source, dir), { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const path = `${dir}/f${String(f).padStart(2, "0")}.txt`;
      writeFileSync(join(source, path), content(++token, random));
      live.push(path);
      tokens.set(path, token);
    }
  }
  return { dirs, live, tokens };
}

/** A list with O(1) add, remove and random pick. */
class Pool {
  private readonly items: string[] = [];
  private readonly index = new Map<string, number>();
  get size(): number {
    return this.items.length;
  }
  add(item: string): void {
    this.index.set(item, this.items.length);
    this.items.push(item);
  }
  remove(item: string): void {
    const i = this.index.get(item);
    if (i === undefined) return;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[i] = last;
      this.index.set(last, i);
    }
    this.index.delete(item);
  }
  pick(random: () => number): string {
    return this.items[Math.floor(random() * this.items.length)]!;
  }
}

/** RATE changes a second for `seconds`, each registered with the observer as it is made. */
async function runWriter(
  source: string,
  tree: Tree,
  observer: Observer,
  seconds: number,
  random: () => number,
  halt: { stopped: boolean },
): Promise<void> {
  const live = new Pool();
  const removable = new Pool(); // there for QUARANTINE changes or more
  for (const path of tree.live) {
    live.add(path);
    removable.add(path);
  }
  const maturing: { at: number; path: string }[] = [];
  const tokens = tree.tokens;
  let token = tokens.size;
  let n = 0;
  const total = Math.round(seconds * RATE);
  const change = (): void => {
    const i = n++;
    while (maturing.length > 0 && maturing[0]!.at <= i) removable.add(maturing.shift()!.path);
    const roll = random();
    const appear = (path: string) => {
      live.add(path);
      maturing.push({ at: i + QUARANTINE, path });
    };
    const disappear = (path: string) => {
      live.remove(path);
      removable.remove(path);
      tokens.delete(path);
    };
    if (roll < 0.35 || (roll >= 0.6 && removable.size === 0)) {
      const path = live.pick(random);
      const data = content(++token, random);
      writeFileSync(join(source, path), data);
      observer.expect(observer.newChange("rewrite", performance.now()), path, token);
      tokens.set(path, token);
    } else if (roll < 0.6) {
      const path = `${tree.dirs[Math.floor(random() * tree.dirs.length)]}/n${i}.txt`;
      const data = content(++token, random);
      writeFileSync(join(source, path), data);
      observer.expect(observer.newChange("create", performance.now()), path, token);
      tokens.set(path, token);
      appear(path);
    } else if (roll < 0.8) {
      const from = removable.pick(random);
      const dir =
        random() < 0.5
          ? from.slice(0, from.lastIndexOf("/"))
          : tree.dirs[Math.floor(random() * tree.dirs.length)];
      const to = `${dir}/m${i}.txt`;
      const moved = tokens.get(from)!;
      renameSync(join(source, from), join(source, to));
      const made = observer.newChange("rename", performance.now());
      observer.expect(made, to, moved);
      observer.expect(made, from, null);
      disappear(from);
      tokens.set(to, moved);
      appear(to);
    } else {
      const path = removable.pick(random);
      unlinkSync(join(source, path));
      observer.expect(observer.newChange("delete", performance.now()), path, null);
      disappear(path);
    }
  };
  const started = performance.now();
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - started) * RATE) / 1000));
      while (n < due && !halt.stopped) change();
      if (n >= total || halt.stopped) {
        clearInterval(timer);
        done();
      }
    }, 2);
  });
}

// ---------------------------------------------------------------------------------------
// Trees, CPU and processes.

/** Differences between two trees (files by content), `.offsite` at either root left out. */
function treeDifferences(a: string, b: string): { count: number; examples: string[] } {
  const list = (root: string): Map<string, string> => {
    const entries = new Map<string, string>();
    const walk = (rel: string) => {
      for (const entry of readdirSync(rel === "" ? root : join(root, rel), { withFileTypes: true })) {
        const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
        if (path === STATE_DIR) continue;
        if (entry.isDirectory()) {
          entries.set(path, "dir");
          walk(path);
        } else entries.set(path, "file");
      }
    };
    walk("");
    return entries;
  };
  const left = list(a);
  const right = list(b);
  const examples: string[] = [];
  let count = 0;
  const differ = (what: string) => {
    count++;
    if (examples.length < 5) examples.push(what);
  };
  for (const [path, type] of left) {
    const other = right.get(path);
    if (other === undefined) differ(`${path} missing on the standby`);
    else if (other !== type) differ(`${path} is a ${other} on the standby, a ${type} here`);
    else if (type === "file" && !readFileSync(join(a, path)).equals(readFileSync(join(b, path))))
      differ(`${path} differs`);
  }
  for (const path of right.keys()) if (!left.has(path)) differ(`${path} only on the standby`);
  return { count, examples };
}

async function untilTreesMatch(source: string, target: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const differences = existsSync(target) ? treeDifferences(source, target) : { count: -1, examples: [] };
    if (differences.count === 0) return;
    if (performance.now() > deadline)
      throw new Error(`the standby does not match the source: ${differences.examples.join("; ")}`);
    await sleep(250);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** Children `pid` has not yet waited for (a running rsync's CPU is not in cutime yet). */
function childCount(pid: number): number {
  let count = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const children = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (children !== "") count += children.split(" ").length;
  }
  return count;
}

async function untilNoChildren(pid: number): Promise<void> {
  for (let i = 0; i < 100 && childCount(pid) > 0; i++) await sleep(100);
}

/** The whole machine's busy CPU seconds (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const [, ...values] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq] = values.map(Number);
  return (user! + nice! + system! + irq! + softirq!) / TICKS;
}

function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Stops a peer started detached (its own process group): SIGTERM, then the group's SIGKILL. */
async function stopPeer(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once("close", () => done()));
  child.kill("SIGTERM");
  const timeout = sleep(10_000).then(() => "timeout" as const);
  if ((await Promise.race([exited, timeout])) === "timeout") {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await exited;
  }
}

// ---------------------------------------------------------------------------------------
// One peer's run.

interface PeerSpec {
  name: string;
  /** Starts the peer in a process group of its own. */
  start(source: string, target: string, dir: string): ChildProcess;
  /** Resolves once the peer says its initial copy is done (the target must match as well). */
  ready?(): Promise<void>;
  /** The measured window starts (after the initial sync). */
  mark?(): void;
  /** What the peer itself says about the window, read before it stops. */
  details?(): Pick<PeerResult, "offsite" | "lsyncd">;
}

interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface PeerResult extends Percentiles {
  peer: string;
  changes: number;
  byKind: Record<Kind, Percentiles & { changes: number }>;
  /** Changes never visible within DRAIN_MS of the writer's end (counted as Infinity above). */
  missed: number;
  /** Paths made and removed without ever being seen on the standby (the quarantine too short). */
  unseenRemovals: number;
  foundBySweep: number;
  sweptPaths: number;
  /** Of those, paths whose inotify event came within 1 s after (a race, not a missed event). */
  sweptBeforeEvent: number;
  /** Reads of an awaited path that found a partial (or foreign) file. */
  tornReads: number;
  watchErrors: number;
  cpuSeconds: number;
  machineBusySeconds: number;
  driverCpuSeconds: number;
  windowSeconds: number;
  drainSeconds: number;
  differencesAtEnd: number;
  differenceExamples: string[];
  offsite?: OffsiteReport;
  lsyncd?: { rsyncRuns: number; problems: string[] };
}

interface OffsiteReport {
  batches: number;
  appliedLagMs: Percentiles;
  maxPending: number;
  bytesSent: number;
  otherEvents: Record<string, number>;
  examples: string[];
}

/** Nearest-rank percentiles of the values (Infinity for changes never seen). */
function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted.length === 0
      ? NaN
      : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

async function runPeer(
  spec: PeerSpec,
  dir: string,
  seconds: number,
  log: Options["log"],
): Promise<PeerResult> {
  rmSync(dir, { recursive: true, force: true });
  const source = join(dir, "source");
  const target = join(dir, "target");
  mkdirSync(source, { recursive: true });
  mkdirSync(target, { recursive: true });
  const random = prng(5);
  const tree = makeTree(source, random);
  spawnSync("sync");
  log(`B5 ${spec.name}: ${tree.live.length} files in ${tree.dirs.length} directories, initial sync`);
  const child = spec.start(source, target, dir);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const failed = new Promise<never>((_, fail) => {
    child.once("error", (error) => fail(new Error(`${spec.name} did not start: ${error.message}`)));
    child.once("close", (code, signal) =>
      fail(new Error(`${spec.name} exited (${code ?? signal}) during B5: ${stderr.slice(-2000)}`)),
    );
  });
  failed.catch(() => undefined);
  const halt = { stopped: false };
  let stopObserver = (): void => undefined;
  try {
    await Promise.race([spec.ready?.() ?? Promise.resolve(), failed]);
    await Promise.race([untilTreesMatch(source, target, 180_000), failed]);
    await untilNoChildren(child.pid!);
    const observer = new Observer(target);
    stopObserver = () => observer.stop();
    for (const [path, token] of tree.tokens) observer.initial(path, token);
    observer.start(tree.dirs);
    await sleep(1000); // what the initial sync left behind settles before the clock starts
    spec.mark?.();
    const cpu0 = treeCpuSeconds(child.pid!);
    const machine0 = machineBusySeconds();
    const own0 = ownCpuSeconds();
    const started = performance.now();
    log(`B5 ${spec.name}: writing ${RATE} changes/s for ${seconds} s`);
    await Promise.race([runWriter(source, tree, observer, seconds, random, halt), failed]);
    const writerEnded = performance.now();
    while (observer.done < observer.changes.length && performance.now() - writerEnded < DRAIN_MS)
      await Promise.race([sleep(50), failed]);
    const drainSeconds = (performance.now() - writerEnded) / 1000;
    await untilNoChildren(child.pid!);
    const cpuSeconds = treeCpuSeconds(child.pid!) - cpu0;
    const machineBusy = machineBusySeconds() - machine0;
    const driver = ownCpuSeconds() - own0;
    const windowSeconds = (performance.now() - started) / 1000;
    const missed = observer.changes.length - observer.done;
    log(
      `B5 ${spec.name}: ${observer.done} of ${observer.changes.length} changes seen, the last ` +
        `${drainSeconds.toFixed(1)} s after the writer's end; CPU ${cpuSeconds.toFixed(1)} s`,
    );
    const lag = (c: Change) => (c.parts === 0 ? (c.visibleAt - c.madeAt) / 1000 : Infinity);
    const byKind = Object.fromEntries(
      KINDS.map((kind) => {
        const these = observer.changes.filter((c) => c.kind === kind).map(lag);
        return [kind, { changes: these.length, ...percentiles(these) }];
      }),
    ) as PeerResult["byKind"];
    // What the standby holds in the end (changes never seen: after a few more seconds).
    if (missed > 0) await sleep(5000);
    const differences = treeDifferences(source, target);
    return {
      peer: spec.name,
      changes: observer.changes.length,
      ...percentiles(observer.changes.map(lag)),
      byKind,
      missed,
      unseenRemovals: observer.unseenRemovals(),
      foundBySweep: observer.changes.filter((c) => c.bySweep).length,
      sweptPaths: observer.sweptPaths,
      sweptBeforeEvent: observer.sweptBeforeEvent,
      tornReads: observer.torn,
      watchErrors: observer.watchErrors,
      cpuSeconds,
      machineBusySeconds: machineBusy,
      driverCpuSeconds: driver,
      windowSeconds,
      drainSeconds,
      differencesAtEnd: differences.count,
      differenceExamples: differences.examples,
      ...spec.details?.(),
    };
  } finally {
    // On a failure too: nothing of the run may keep the process alive.
    halt.stopped = true;
    stopObserver();
    await stopPeer(child);
  }
}

/** Offsite: the replicate process; its JSON events (stderr) are kept with their arrival times. */
function offsitePeer(): PeerSpec {
  const events: { at: number; event: Record<string, unknown> }[] = [];
  let child: ChildProcess | undefined;
  let from = Infinity;
  return {
    name: "offsite replicate --to DIR",
    start(source, target) {
      child = spawn(process.execPath, [OFFSITE, "replicate", source, "--to", target, "--json"], {
        stdio: ["ignore", "ignore", "pipe"],
        detached: true,
      });
      let buffered = "";
      child.stderr!.on("data", (chunk: Buffer) => {
        const at = performance.now();
        const lines = (buffered + chunk.toString()).split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          try {
            events.push({ at, event: JSON.parse(line) as Record<string, unknown> });
          } catch {
            events.push({ at, event: { event: "text", line } });
          }
        }
      });
      return child;
    },
    async ready() {
      while (!events.some((e) => e.event.event === "synced") && child?.exitCode === null) await sleep(50);
    },
    mark() {
      from = performance.now();
    },
    details() {
      const during = events.filter((e) => e.at >= from);
      const applied = during.filter((e) => e.event.event === "applied");
      const before = events.filter((e) => e.at < from && e.event.event === "applied").at(-1);
      const otherEvents: Record<string, number> = {};
      const examples: string[] = [];
      for (const { event } of during) {
        const kind = String(event.event);
        if (kind === "applied") continue;
        otherEvents[kind] = (otherEvents[kind] ?? 0) + 1;
        if (examples.length < 5) examples.push(JSON.stringify(event));
      }
      const withChanges = applied.filter((e) => Number(e.event.changes) > 0);
      return {
        offsite: {
          batches: withChanges.length,
          appliedLagMs: percentiles(withChanges.map((e) => Number(e.event.lagMs))),
          maxPending: Math.max(0, ...applied.map((e) => Number(e.event.pending))),
          bytesSent: Number(applied.at(-1)?.event.bytesSent ?? 0) - Number(before?.event.bytesSent ?? 0),
          otherEvents,
          examples,
        },
      };
    },
  };
}

/** lsyncd with `default.rsync` to a local directory; `extra` adds settings to its sync{}. */
function lsyncdPeer(name: string, extra: string): PeerSpec {
  let logFile = "";
  let offset = 0;
  return {
    name,
    start(source, target, dir) {
      const config = join(dir, "lsyncd.conf.lua");
      logFile = join(dir, "lsyncd.log");
      writeFileSync(
        config,
        [
          "settings {",
          `  logfile = "${logFile}",`,
          `  statusFile = "${join(dir, "lsyncd.status")}",`,
          "  nodaemon = true,",
          "}",
          "sync {",
          "  default.rsync,",
          `  source = "${source}",`,
          `  target = "${target}",`,
          ...extra
            .split("\n")
            .filter(Boolean)
            .map((line) => `  ${line}`),
          "}",
          "",
        ].join("\n"),
      );
      // nodaemon also logs to stdout: the logfile has the same lines.
      return spawn("lsyncd", [config], { stdio: ["ignore", "ignore", "pipe"], detached: true });
    },
    mark() {
      offset = existsSync(logFile) ? readFileSync(logFile).length : 0;
    },
    details() {
      const lines = (existsSync(logFile) ? readFileSync(logFile).subarray(offset).toString() : "").split(
        "\n",
      );
      return {
        lsyncd: {
          rsyncRuns: lines.filter((line) => line.includes("Calling rsync")).length,
          problems: lines.filter((line) => /Error|Warn/.test(line)).slice(0, 5),
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------
// The benchmark and its report.

const sec = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : "never");

export async function replicationLag(options: Options): Promise<{ rows: LagRow[]; verdicts: string[] }> {
  const seconds = Math.max(5, Math.round(60 * options.scale));
  const workload =
    `${RATE} changes/s for ${seconds} s (35% rewrites, 25% new files, 20% renames, 20% deletes; 1–8 KiB) ` +
    `over ${DIRS * FILES_PER_DIR} files in ${DIRS} directories`;
  const peers: [string, PeerSpec][] = [
    ["b5-offsite", offsitePeer()],
    ["b5-lsyncd-defaults", lsyncdPeer("lsyncd (default.rsync, defaults: delay 15 s)", "")],
    ["b5-lsyncd-delay1", lsyncdPeer("lsyncd (default.rsync, delay = 1)", "delay = 1,")],
  ];
  const results: PeerResult[] = [];
  for (const [name, peer] of peers) {
    const dir = join(options.work, name);
    try {
      results.push(await runPeer(peer, dir, seconds, options.log));
    } finally {
      // The trees go; lsyncd's configuration and log stay in the work directory.
      for (const tree of ["source", "target"]) rmSync(join(dir, tree), { recursive: true, force: true });
    }
  }

  const rows: LagRow[] = results.map((r) => ({
    id: "B5",
    workload,
    peer: r.peer,
    seconds: r.p99,
    ...(r.offsite ? { bytes: r.offsite.bytesSent } : {}),
    note:
      `time = p99 lag change→visible on the standby; p50 ${sec(r.p50)}, p90 ${sec(r.p90)}, max ${sec(r.max)} s; ` +
      `CPU ${r.cpuSeconds.toFixed(1)} s; ${r.missed} of ${r.changes} never seen` +
      (r.offsite
        ? `; own applied lag p50 ${r.offsite.appliedLagMs.p50} ms, p99 ${r.offsite.appliedLagMs.p99} ms`
        : "") +
      (r.lsyncd ? `; ${r.lsyncd.rsyncRuns} rsync runs` : ""),
  }));
  const [offsite, defaults, tuned] = results as [PeerResult, PeerResult, PeerResult];
  const verdict =
    `B5: offsite's p99 lag is ${sec(offsite.p99)} s (goal < 0.5 s), ` +
    `${(defaults.p99 / offsite.p99).toFixed(1)}× lower than lsyncd's at its defaults (${sec(defaults.p99)} s; goal ≥ 15×), ` +
    `${offsite.p99 < tuned.p99 ? "ahead of" : "behind"} lsyncd with delay = 1 (${sec(tuned.p99)} s); ` +
    `CPU ${offsite.cpuSeconds.toFixed(1)} s against lsyncd + rsync's ${defaults.cpuSeconds.toFixed(1)} s ` +
    `(defaults) and ${tuned.cpuSeconds.toFixed(1)} s (delay = 1) (goal ≤); ` +
    `changes never seen: offsite ${offsite.missed}, lsyncd ${defaults.missed} and ${tuned.missed}.`;
  await writeReport(options, workload, results, verdict);
  return { rows, verdicts: [verdict] };
}

async function writeReport(
  options: Options,
  workload: string,
  results: PeerResult[],
  verdict: string,
): Promise<void> {
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const table = [
    "| peer | changes | p50 (s) | p90 (s) | p99 (s) | max (s) | never seen | CPU (s) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...results.map(
      (r) =>
        `| ${r.peer} | ${r.changes} | ${sec(r.p50)} | ${sec(r.p90)} | ${sec(r.p99)} | ${sec(r.max)} | ${r.missed} | ${r.cpuSeconds.toFixed(1)} |`,
    ),
  ];
  const kinds = [
    `| peer | ${KINDS.join(" | ")} |`,
    `| --- |${KINDS.map(() => " ---: |").join("")}`,
    ...results.map(
      (r) =>
        `| ${r.peer} | ${KINDS.map((k) => `${sec(r.byKind[k].p50)} / ${sec(r.byKind[k].p99)}`).join(" | ")} |`,
    ),
  ];
  const checks = results.map((r) => {
    const parts = [
      `window ${r.windowSeconds.toFixed(0)} s (the last change seen ${r.drainSeconds.toFixed(1)} s after the writer's end)`,
      `machine busy ${r.machineBusySeconds.toFixed(1)} CPU s: the peer ${r.cpuSeconds.toFixed(1)}, the writer and observer ` +
        `${r.driverCpuSeconds.toFixed(1)}, anything else ${(r.machineBusySeconds - r.cpuSeconds - r.driverCpuSeconds).toFixed(1)} ` +
        `(other load on this shared machine, or CPU the peer's accounting missed)`,
      `changes found by the sweep ${r.foundBySweep} (on ${r.sweptPaths} paths, ${r.sweptBeforeEvent} of which had their inotify event within 1 s after: the sweep came first, not a missed event), reads of a partial file ${r.tornReads}, watch errors ${r.watchErrors}`,
      `paths made and removed without ever being seen there ${r.unseenRemovals}`,
      `differences from the source at the end ${r.differencesAtEnd}${r.differenceExamples.length ? ` (${r.differenceExamples.join("; ")})` : ""}`,
    ];
    if (r.offsite) {
      const o = r.offsite;
      parts.push(
        `its applied events: ${o.batches} batches, lagMs p50 ${o.appliedLagMs.p50}, p90 ${o.appliedLagMs.p90}, ` +
          `p99 ${o.appliedLagMs.p99}, max ${o.appliedLagMs.max} (per batch, from its first change to durable on the standby), ` +
          `pending at most ${o.maxPending}, ${o.bytesSent.toLocaleString("en")} bytes sent`,
        `its other events: ${JSON.stringify(o.otherEvents)}${o.examples.length ? ` e.g. ${o.examples.map((e) => `\`${e}\``).join(", ")}` : ""}`,
      );
    }
    if (r.lsyncd)
      parts.push(
        `${r.lsyncd.rsyncRuns} rsync runs; log problems: ${r.lsyncd.problems.length ? r.lsyncd.problems.join(" / ") : "none"}`,
      );
    return `- **${r.peer}**: ${parts.join("; ")}.`;
  });
  const markdown =
    `# B5: replication lag\n\nMeasured ${date} UTC on ${options.machine}; scale ${options.scale}; trees on ` +
    `${options.storage}. Produced by \`npm run bench\` (bench/replicationLag.ts; B5 alone: ` +
    `\`npm run bench -- --only B5\`; the main RESULTS.md of the same run has these rows too). The peers ran one after the other in the same run, ` +
    `each on a fresh copy of the same tree, after its initial sync.\n\n` +
    `Workload: ${workload}. Lag: from the writer's change to the moment the observer on the standby's side ` +
    `(inotify on every directory, the same for every peer) saw it with the right content; a rename when the new ` +
    `name is there and the old one gone. CPU: the peer's process tree (the replicate process; lsyncd and every ` +
    `rsync it ran) over the window.\n\n${table.join("\n")}\n\n${verdict}\n\n` +
    `## p50 / p99 by kind of change (s)\n\n${kinds.join("\n")}\n\n## Checks\n\n${checks.join("\n")}\n`;
  writeFileSync(join(ROOT, "bench", "RESULTS-B5.md"), markdown);
  // Through prettier (a dev dependency), so that `prettier --check bench` passes on the file.
  const json = join(ROOT, "bench", "results-B5.json");
  const prettier = await import("prettier");
  writeFileSync(
    json,
    await prettier.format(
      JSON.stringify({ date, machine: options.machine, scale: options.scale, workload, results, verdict }),
      { ...(await prettier.resolveConfig(json)), filepath: json },
    ),
  );
}
