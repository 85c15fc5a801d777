/**
 * Watcher probe: which watcher should the replicator's primary use to follow a directory tree?
 * Measures each candidate on a fresh tree (default 2,000 directories × 5 files on tmpfs):
 *   setup    time, inotify watches installed (from /proc/self/fdinfo), RSS before/after
 *   run      a writer process makes RATE changes/s for SECONDS (appends, creates, renames,
 *            deletes, mkdir + 3 files at once, renames of new directories + a file at once);
 *            latency from just before each syscall to the callback naming that path
 *            (p50/p99/max, CLOCK_MONOTONIC across processes), changes never named (missed, by
 *            kind, e.g. files inside brand-new directories), of those the ones that leave a
 *            consumer wrong at the end (lost: a path there at the end never reported after its
 *            change, or a known path gone at the end whose removal was never reported), paths
 *            named that never existed (stray: a stale prefix after a directory rename), CPU
 *            seconds of the watching process (process.cpuUsage, all its threads)
 *   --overflow  the watcher's event loop is blocked while ~17,000 inotify events are queued
 *               (over fs.inotify.max_queued_events, 16384 by default), then 100 files are
 *               created in 100 idle directories: how many are reported, and any error?
 *   --enospc    under `unshare -U -r` with /proc/sys/user/max_inotify_watches=200 (that user
 *               namespace only): watching a 300-directory tree, then 300 new directories in a
 *               watched 20-directory tree: thrown, rejected, an 'error' event, or silence?
 *
 * Candidates: dirs      fs.watch(dir) per directory; a new directory is watched before it is listed
 *             recursive fs.watch(root, { recursive: true }) (Node 24 on Linux: a JS layer over
 *                       one fs.watch per file and per directory, lib/internal/fs/recursive_watch.js)
 *             parcel    @parcel/watcher (backend inotify)      } loaded at run time from the
 *             chokidar  chokidar (defaults, ignoreInitial)     } directory given by --from only
 *
 * Rerun (from the repository root, Node 24):
 *   node bench/watcherProbe.ts                       dirs and recursive
 *   node bench/watcherProbe.ts --overflow            the overflow check, likewise
 *   node bench/watcherProbe.ts --enospc              the watch-limit check (needs unshare(1))
 *   The third-party ones are not project dependencies and are never imported here; install them
 *   in a scratch directory and point --from at it:
 *     mkdir -p /tmp/watchprobe && cd /tmp/watchprobe && echo '{"private":true}' > package.json
 *     npm install --ignore-scripts @parcel/watcher@2.6.0 chokidar@6.0.0
 *     cd - && node bench/watcherProbe.ts --from /tmp/watchprobe [--overflow | --enospc]
 *   --only dirs,parcel   --seconds 15   --rate 200   --dirs 2000   --files 5
 *   --base /dev/shm (where trees are made; default /dev/shm if present, else the tmpdir)   --json
 */
import { spawn, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  existsSync,
  type FSWatcher,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  unlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const SELF = import.meta.filename;
const ALL = ["dirs", "recursive", "parcel", "chokidar"] as const;
type Candidate = (typeof ALL)[number];
const THIRD_PARTY: ReadonlySet<Candidate> = new Set(["parcel", "chokidar"]);

const { values } = parseArgs({
  options: {
    child: { type: "string" },
    candidate: { type: "string" },
    root: { type: "string" },
    from: { type: "string" },
    only: { type: "string" },
    seconds: { type: "string", default: "15" },
    rate: { type: "string", default: "200" },
    dirs: { type: "string", default: "2000" },
    files: { type: "string", default: "5" },
    base: { type: "string" },
    overflow: { type: "boolean", default: false },
    enospc: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});

/** CLOCK_MONOTONIC in microseconds: comparable between the writer and the watcher. */
function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code ?? err.name;
  return err.message.startsWith(code) ? err.message : `${code}: ${err.message}`;
}

/** Inotify watches this process holds, counted from /proc/self/fdinfo. */
function inotifyWatches(): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== "anon_inode:inotify") continue;
      count += readFileSync(`/proc/self/fdinfo/${fd}`, "utf8")
        .split("\n")
        .filter((line) => line.startsWith("inotify wd:")).length;
    } catch {
      // The fd closed under us (readdir's own fd).
    }
  }
  return count;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The candidates, behind one shape: report(relativePath, kind), failure(error).

interface Sink {
  report(path: string, kind: string): void;
  failure(err: unknown): void;
}
interface Running {
  close(): Promise<void> | void;
}

/** Candidate 1: one non-recursive fs.watch per directory; watch a new directory, then list it. */
function startPerDirectory(root: string, sink: Sink): Running {
  const watchers = new Map<string, FSWatcher>();
  const abs = (rel: string): string => (rel === "" ? root : join(root, rel));
  const child = (dir: string, name: string): string => (dir === "" ? name : `${dir}/${name}`);

  const unwatch = (rel: string): void => {
    const prefix = `${rel}/`;
    for (const [dir, watcher] of watchers) {
      if (dir === rel || dir.startsWith(prefix)) {
        watcher.close();
        watchers.delete(dir);
      }
    }
  };
  const onEvent = (dir: string, kind: string, name: string | null): void => {
    if (name === null) return;
    const rel = child(dir, name);
    sink.report(rel, kind);
    if (kind !== "rename") return;
    let isDirectory = false;
    try {
      isDirectory = lstatSync(abs(rel)).isDirectory();
    } catch {
      // Gone: deleted or renamed away.
    }
    if (isDirectory) add(rel, true);
    else if (watchers.has(rel)) unwatch(rel);
  };
  const add = (rel: string, announce: boolean): void => {
    if (watchers.has(rel)) return;
    let watcher: FSWatcher;
    try {
      watcher = watch(abs(rel), { persistent: true }, (kind, name) => onEvent(rel, kind, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") sink.failure(err);
      return;
    }
    watcher.on("error", (err) => sink.failure(err));
    watchers.set(rel, watcher);
    let entries;
    try {
      entries = readdirSync(abs(rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = child(rel, entry.name);
      if (announce) sink.report(path, "listed");
      if (entry.isDirectory()) add(path, announce);
    }
  };
  add("", false);
  return {
    close: () => {
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}

/** Candidate 2: Node's own recursive fs.watch. */
function startRecursive(root: string, sink: Sink): Running {
  const watcher = watch(root, { recursive: true }, (kind, name) => {
    if (name !== null) sink.report(name, kind);
  });
  watcher.on("error", (err) => sink.failure(err));
  return { close: () => watcher.close() };
}

/** The little of @parcel/watcher's and chokidar's APIs used here (they are not dependencies). */
interface ParcelModule {
  subscribe(
    dir: string,
    callback: (err: Error | null, events: { type: string; path: string }[]) => void,
    options?: { backend?: string },
  ): Promise<{ unsubscribe(): Promise<void> }>;
}
interface ChokidarWatcher {
  on(event: "all", listener: (kind: string, path: string) => void): this;
  on(event: "error", listener: (err: unknown) => void): this;
  on(event: "ready", listener: () => void): this;
  close(): Promise<void>;
}
interface ChokidarModule {
  watch(paths: string, options: { ignoreInitial: boolean }): ChokidarWatcher;
}

async function loadThirdParty(from: string, name: string): Promise<unknown> {
  const resolved = createRequire(join(resolve(from), "package.json")).resolve(name);
  return (await import(pathToFileURL(resolved).href)) as unknown;
}

async function startParcel(root: string, sink: Sink, module: ParcelModule): Promise<Running> {
  const subscription = await module.subscribe(
    root,
    (err, events) => {
      if (err) sink.failure(err);
      for (const event of events) sink.report(relative(root, event.path), event.type);
    },
    { backend: "inotify" },
  );
  return { close: () => subscription.unsubscribe() };
}

function startChokidar(root: string, sink: Sink, module: ChokidarModule): Promise<Running> {
  return new Promise((ready, fail) => {
    const watcher = module.watch(root, { ignoreInitial: true });
    watcher.on("all", (kind, path) => sink.report(relative(root, path), kind));
    watcher.on("error", (err) => sink.failure(err));
    watcher.on("ready", () => ready({ close: () => watcher.close() }));
    setTimeout(() => fail(new Error("chokidar: no ready in 60 s")), 60_000).unref();
  });
}

/** Loads what a candidate needs (before any measurement), then returns its starter. */
async function prepare(
  candidate: Candidate,
  from: string | undefined,
): Promise<(root: string, sink: Sink) => Promise<Running>> {
  switch (candidate) {
    case "dirs":
      return (root, sink) => Promise.resolve(startPerDirectory(root, sink));
    case "recursive":
      return (root, sink) => Promise.resolve(startRecursive(root, sink));
    case "parcel": {
      const module = (await loadThirdParty(from!, "@parcel/watcher")) as {
        default?: ParcelModule;
      } & ParcelModule;
      const parcel = module.default ?? module;
      return (root, sink) => startParcel(root, sink, parcel);
    }
    case "chokidar": {
      const chokidar = (await loadThirdParty(from!, "chokidar")) as ChokidarModule;
      return (root, sink) => startChokidar(root, sink, chokidar);
    }
  }
}

/** Records every report with its arrival time. */
class Recorder implements Sink {
  readonly times: number[] = [];
  readonly paths: string[] = [];
  readonly kinds: string[] = [];
  readonly failures: string[] = [];
  report(path: string, kind: string): void {
    this.times.push(nowUs());
    this.paths.push(path);
    this.kinds.push(kind);
  }
  failure(err: unknown): void {
    this.failures.push(errorText(err));
  }
}

// ---------------------------------------------------------------------------------------
// Trees and the writer.

function makeTree(root: string, dirs: number, files: number): void {
  // 20 top-level directories, the rest spread below them (one level), 5 files in each.
  const top = Math.min(20, dirs);
  const all: string[] = [];
  for (let i = 0; i < top; i++) all.push(`t${i}`);
  for (let i = 0; all.length < dirs; i++) all.push(`t${i % top}/s${i}`);
  for (const dir of all) {
    mkdirSync(join(root, dir), { recursive: true });
    for (let f = 0; f < files; f++) writeFileSync(join(root, dir, `f${f}`), `file ${dir}/${f}\n`);
  }
}

/** One path a change must be reported under, and when (just before its syscall). */
interface Expectation {
  op: number;
  kind:
    | "write"
    | "create"
    | "rename-from"
    | "rename-to"
    | "delete"
    | "mkdir"
    | "in-new-dir"
    | "dir-rename-from"
    | "dir-rename-to"
    | "in-renamed-dir";
  path: string;
  at: number;
}

interface WriterLog {
  expected: Expectation[];
  ops: number;
  /** Every path that existed at some time, and those that exist at the end. */
  ever: string[];
  final: string[];
  /** The paths of the tree before the run. */
  initial: string[];
}

/** Deterministic PRNG (mulberry32). */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function listTree(root: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(rel === "" ? root : join(root, rel), { withFileTypes: true })) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        dirs.push(path);
        walk(path);
      } else files.push(path);
    }
  };
  walk("");
  return { files, dirs };
}

/** The writer child: RATE changes per second for SECONDS, then writes its expectations to OUT. */
async function runWriter(root: string, out: string, seconds: number, rate: number): Promise<void> {
  const { files, dirs } = listTree(root);
  const newDirs: string[] = [];
  const next = random(42);
  const pick = <T>(list: T[]): T => list[Math.floor(next() * list.length)]!;
  const expected: Expectation[] = [];
  let serial = 0;
  const initial = [...files, ...dirs];
  const ever = new Set(initial); // every path that existed at some time
  const expect = (op: number, kind: Expectation["kind"], path: string): void => {
    expected.push({ op, kind, path, at: nowUs() });
    ever.add(path);
  };
  const removeFile = (path: string): void => {
    const i = files.indexOf(path);
    files[i] = files[files.length - 1]!;
    files.pop();
  };
  const started = performance.now();
  let done = 0;
  while (performance.now() - started < seconds * 1000) {
    const due = Math.floor(((performance.now() - started) * rate) / 1000);
    for (; done < due; done++) {
      const op = done;
      const roll = next();
      const n = serial++;
      if (roll < 0.35) {
        const file = pick(files);
        expect(op, "write", file);
        appendFileSync(join(root, file), "more\n");
      } else if (roll < 0.5) {
        const file = `${pick(dirs)}/c${n}`;
        expect(op, "create", file);
        writeFileSync(join(root, file), "new\n");
        files.push(file);
      } else if (roll < 0.7) {
        const from = pick(files);
        const to = `${from.slice(0, from.lastIndexOf("/"))}/r${n}`;
        expect(op, "rename-from", from);
        expect(op, "rename-to", to);
        renameSync(join(root, from), join(root, to));
        removeFile(from);
        files.push(to);
      } else if (roll < 0.85) {
        const file = pick(files);
        expect(op, "delete", file);
        unlinkSync(join(root, file));
        removeFile(file);
      } else if (roll < 0.95 || newDirs.length === 0) {
        const dir = `${pick(dirs)}/n${n}`;
        expect(op, "mkdir", dir);
        mkdirSync(join(root, dir));
        for (const name of ["a", "b", "c"]) {
          expect(op, "in-new-dir", `${dir}/${name}`);
          writeFileSync(join(root, dir, name), "inside\n");
          files.push(`${dir}/${name}`);
        }
        dirs.push(dir);
        newDirs.push(dir);
      } else {
        // Rename a directory made during the run, then write a new file in it at once:
        // is that file reported under its new path?
        const from = pick(newDirs);
        const to = `${from.slice(0, from.lastIndexOf("/"))}/m${n}`;
        expect(op, "dir-rename-from", from);
        expect(op, "dir-rename-to", to);
        renameSync(join(root, from), join(root, to));
        const move = (path: string): string =>
          path === from || path.startsWith(`${from}/`) ? to + path.slice(from.length) : path;
        for (const list of [files, dirs, newDirs]) {
          for (let i = 0; i < list.length; i++) ever.add((list[i] = move(list[i]!)));
        }
        expect(op, "in-renamed-dir", `${to}/after`);
        writeFileSync(join(root, to, "after"), "after the rename\n");
        files.push(`${to}/after`);
      }
    }
    await sleep(1);
  }
  const final = [...files, ...dirs];
  const log: WriterLog = { expected, ops: done, ever: [...ever], final, initial };
  writeFileSync(out, JSON.stringify(log));
}

// ---------------------------------------------------------------------------------------
// The watching child: setup, then the run, then one JSON line on stdout.

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

async function runWatch(candidate: Candidate, root: string, from: string | undefined): Promise<object> {
  const start = await prepare(candidate, from);
  const recorder = new Recorder();
  const rssBefore = process.memoryUsage().rss;
  const cpuSetup = process.cpuUsage();
  const t0 = performance.now();
  const running = await start(root, recorder);
  const setupMs = performance.now() - t0;
  const setupCpu = process.cpuUsage(cpuSetup);
  const watches = inotifyWatches();
  const rssAfter = process.memoryUsage().rss;
  await sleep(500); // let setup's own stragglers pass
  const reportsBeforeRun = recorder.times.length;
  const setupFailures = recorder.failures.length;

  const out = `${root}.ops.json`;
  const cpuRun = process.cpuUsage();
  const writer = spawn(
    process.execPath,
    [SELF, "--child", "write", "--root", root, "--seconds", values.seconds, "--rate", values.rate],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  const code = await new Promise<number | null>((done) => writer.on("exit", done));
  if (code !== 0) throw new Error(`writer exited with ${code}`);
  await sleep(2000); // grace for late events
  const runCpu = process.cpuUsage(cpuRun);
  const watchesAtEnd = inotifyWatches();
  await running.close();

  const log = JSON.parse(readFileSync(out, "utf8")) as WriterLog;
  const { expected, ops } = log;
  const ever = new Set(log.ever);
  const final = new Set(log.final);
  const initial = new Set(log.initial);
  const removal = new Set<Expectation["kind"]>(["rename-from", "delete", "dir-rename-from"]);
  rmSync(out);
  // First report naming each path at or after the change.
  const byPath = new Map<string, number[]>();
  for (let i = reportsBeforeRun; i < recorder.times.length; i++) {
    const path = recorder.paths[i]!;
    let list = byPath.get(path);
    if (!list) byPath.set(path, (list = []));
    list.push(i);
  }
  const latencies: number[] = [];
  const missed: Record<string, number> = {};
  const missedSamples: string[] = [];
  // Missed and not made moot by what followed: a path that exists at the end but whose
  // creation or change was never reported, or one gone at the end whose removal was not.
  let lost = 0;
  const lostSamples: string[] = [];
  let slowest = { ms: 0, change: "" };
  const renameKinds = new Map<string, number>();
  for (const e of expected) {
    const hit = byPath.get(e.path)?.find((i) => recorder.times[i]! >= e.at);
    if (hit === undefined) {
      missed[e.kind] = (missed[e.kind] ?? 0) + 1;
      if (missedSamples.length < 8) missedSamples.push(`${e.kind} ${e.path}`);
      // A creation or change of a path there at the end, or the removal of one the watcher had
      // let us know of (in the tree at the start, or reported since) and that is gone at the end.
      const known = () =>
        initial.has(e.path) || (byPath.get(e.path) ?? []).some((i) => recorder.times[i]! < e.at);
      if (removal.has(e.kind) ? !final.has(e.path) && known() : final.has(e.path)) {
        lost++;
        lostSamples.push(`${e.kind} ${e.path}`);
      }
      continue;
    }
    const ms = (recorder.times[hit]! - e.at) / 1000;
    if (ms > slowest.ms) slowest = { ms, change: `${e.kind} ${e.path}` };
    latencies.push(ms);
    if (e.kind === "rename-from" || e.kind === "rename-to") {
      const key = `${e.kind}:${recorder.kinds[hit]}`;
      renameKinds.set(key, (renameKinds.get(key) ?? 0) + 1);
    }
  }
  // Paths reported that never existed (a stale prefix after a directory rename, say).
  const strays = [...byPath.keys()].filter((path) => !ever.has(path));
  latencies.sort((a, b) => a - b);
  return {
    candidate,
    setupMs: Math.round(setupMs),
    setupCpuS: (setupCpu.user + setupCpu.system) / 1e6,
    watches,
    watchesAtEnd,
    rssBeforeMiB: Math.round(rssBefore / MiB),
    rssAfterSetupMiB: Math.round(rssAfter / MiB),
    maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    setupFailures,
    ops,
    expectations: expected.length,
    reports: recorder.times.length - reportsBeforeRun,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) ?? NaN,
    slowest: slowest.change,
    missed: Object.values(missed).reduce((a, b) => a + b, 0),
    missedByKind: missed,
    missedSamples,
    lost,
    lostSamples: lostSamples.slice(0, 8),
    strayPaths: strays.length,
    straySamples: strays.slice(0, 3),
    runCpuS: (runCpu.user + runCpu.system) / 1e6,
    failures: recorder.failures.length - setupFailures,
    failureSamples: recorder.failures.slice(0, 3),
    renameReports: Object.fromEntries(renameKinds),
  };
}

// ---------------------------------------------------------------------------------------
// --overflow: block the watcher's loop while the kernel queue overflows.

const NOISE_EVENTS = 17_000;
const LATE = 100;

function runFlood(root: string): void {
  // Alternate IN_MODIFY and IN_ATTRIB on one file (identical neighbours would be merged),
  // then create one file in each of LATE idle directories once the queue is full.
  const noise = join(root, "noise", "f");
  for (let i = 0; i < NOISE_EVENTS / 2; i++) {
    appendFileSync(noise, "x");
    chmodSync(noise, i % 2 === 0 ? 0o600 : 0o644);
  }
  for (let i = 0; i < LATE; i++) writeFileSync(join(root, "late", `d${i}`, "x"), "late\n");
}

async function runOverflow(candidate: Candidate, root: string, from: string | undefined): Promise<object> {
  mkdirSync(join(root, "noise"));
  writeFileSync(join(root, "noise", "f"), "");
  for (let i = 0; i < LATE; i++) mkdirSync(join(root, "late", `d${i}`), { recursive: true });
  const start = await prepare(candidate, from);
  const recorder = new Recorder();
  const running = await start(root, recorder);
  await sleep(300);
  // spawnSync blocks this event loop for the whole flood.
  const flood = spawnSync(process.execPath, [SELF, "--child", "flood", "--root", root], { stdio: "inherit" });
  if (flood.status !== 0) throw new Error("flood failed");
  await sleep(3000);
  await running.close();
  const late = new Set(recorder.paths.filter((path) => /^late\/d\d+\/x$/.test(path)));
  return {
    candidate,
    maxQueuedEvents: Number(readFileSync("/proc/sys/fs/inotify/max_queued_events", "utf8")),
    reports: recorder.paths.length,
    lateFilesReported: late.size,
    lateFiles: LATE,
    failures: recorder.failures.length,
    failureSamples: recorder.failures.slice(0, 3),
  };
}

// ---------------------------------------------------------------------------------------
// --enospc: the watch limit, at setup and when new directories appear (run in a user namespace).

const WATCH_LIMIT = 200;

async function runEnospc(candidate: Candidate, root: string, from: string | undefined): Promise<object> {
  const start = await prepare(candidate, from);
  // At setup: 300 directories with one file each, over a limit of 200.
  const big = join(root, "big");
  for (let i = 0; i < 300; i++) {
    mkdirSync(join(big, `d${i}`), { recursive: true });
    writeFileSync(join(big, `d${i}`, "f"), "");
  }
  const atSetup = new Recorder();
  let setupOutcome: string;
  let setupWatches = 0;
  try {
    const running = await start(big, atSetup);
    await sleep(500);
    setupWatches = inotifyWatches();
    setupOutcome = atSetup.failures.length > 0 ? `error event: ${atSetup.failures[0]}` : "silent: started";
    await running.close();
  } catch (err) {
    setupOutcome = `threw/rejected: ${errorText(err)}`;
  }
  await sleep(300);
  // Later: a 20-directory tree (fits), then 300 new directories with a file each.
  const small = join(root, "small");
  for (let i = 0; i < 20; i++) {
    mkdirSync(join(small, `d${i}`), { recursive: true });
    writeFileSync(join(small, `d${i}`, "f"), "");
  }
  const later = new Recorder();
  const running = await start(small, later);
  await sleep(300);
  for (let i = 0; i < 300; i++) {
    mkdirSync(join(small, `n${i}`));
    writeFileSync(join(small, `n${i}`, "f"), "");
    if (i % 20 === 19) await sleep(5);
  }
  await sleep(2000);
  const watches = inotifyWatches();
  await running.close();
  const reported = new Set(later.paths.filter((path) => /^n\d+\/f$/.test(path)));
  return {
    candidate,
    limit: WATCH_LIMIT,
    setupOutcome,
    setupWatches,
    laterNewDirFilesReported: reported.size,
    laterNewDirFiles: 300,
    laterWatches: watches,
    laterFailures: later.failures.length,
    laterFailureSamples: [...new Set(later.failures.map((f) => f.replace(/'[^']*'/g, "'…'")))].slice(0, 2),
  };
}

// ---------------------------------------------------------------------------------------
// The parent: one child per candidate, each on a fresh tree.

function baseDir(): string {
  if (values.base) return resolve(values.base);
  return existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
}

function runChild(args: string[], wrapper?: string[]): object | string {
  const command = wrapper ? wrapper[0]! : process.execPath;
  const argv = wrapper ? [...wrapper.slice(1), process.execPath, SELF, ...args] : [SELF, ...args];
  const result = spawnSync(command, argv, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 120_000,
  });
  const line = result.stdout?.trim().split("\n").at(-1);
  if (result.status !== 0 || !line)
    return `failed (status ${result.status}, ${result.error?.message ?? "no output"})`;
  return JSON.parse(line) as object;
}

function fmt(value: unknown, digits = 1): string {
  return typeof value === "number"
    ? Number.isInteger(value)
      ? String(value)
      : value.toFixed(digits)
    : JSON.stringify(value);
}

function table(rows: (object | string)[], columns: [string, string][], names: string[]): string {
  const lines = [
    `| candidate | ${columns.map(([, title]) => title).join(" | ")} |`,
    `|${" --- |".repeat(columns.length + 1)}`,
  ];
  rows.forEach((row, i) => {
    if (typeof row === "string") lines.push(`| ${names[i]} | ${row} |`);
    else {
      const record = row as Record<string, unknown>;
      lines.push(`| ${names[i]} | ${columns.map(([key]) => fmt(record[key])).join(" | ")} |`);
    }
  });
  return lines.join("\n");
}

function main(): void {
  const candidates = (values.only?.split(",") ??
    ALL.filter((c) => values.from || !THIRD_PARTY.has(c))) as Candidate[];
  for (const c of candidates) {
    if (!ALL.includes(c)) throw new Error(`unknown candidate ${c}`);
    if (THIRD_PARTY.has(c) && !values.from) throw new Error(`${c} needs --from DIR (see the header comment)`);
  }
  const from = values.from ? ["--from", resolve(values.from)] : [];
  const rows: (object | string)[] = [];
  for (const candidate of candidates) {
    const root = mkdtempSync(join(baseDir(), `watcherProbe-${candidate}-`));
    process.stderr.write(`[watcherProbe] ${candidate} in ${root}\n`);
    try {
      if (values.enospc) {
        const limit = `echo ${WATCH_LIMIT} > /proc/sys/user/max_inotify_watches && exec "$@"`;
        rows.push(
          runChild(
            ["--child", "enospc", "--candidate", candidate, "--root", root, ...from],
            ["unshare", "-U", "-r", "sh", "-c", limit, "sh"],
          ),
        );
      } else if (values.overflow) {
        rows.push(runChild(["--child", "overflow", "--candidate", candidate, "--root", root, ...from]));
      } else {
        makeTree(root, Number(values.dirs), Number(values.files));
        rows.push(
          runChild([
            "--child",
            "watch",
            "--candidate",
            candidate,
            "--root",
            root,
            "--seconds",
            values.seconds,
            "--rate",
            values.rate,
            ...from,
          ]),
        );
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  if (values.json) {
    for (const row of rows) console.log(JSON.stringify(row));
    return;
  }
  const columns: [string, string][] = values.enospc
    ? [
        ["setupOutcome", `setup, ${WATCH_LIMIT}-watch limit`],
        ["setupWatches", "watches"],
        ["laterNewDirFilesReported", "files in new dirs reported (of 300)"],
        ["laterFailures", "errors reported"],
        ["laterFailureSamples", "error text"],
      ]
    : values.overflow
      ? [
          ["lateFilesReported", `late files reported (of ${LATE})`],
          ["failures", "errors reported"],
          ["failureSamples", "error text"],
          ["reports", "reports"],
        ]
      : [
          ["setupMs", "setup ms"],
          ["setupCpuS", "setup CPU s"],
          ["watches", "watches"],
          ["rssBeforeMiB", "RSS before MiB"],
          ["rssAfterSetupMiB", "RSS after MiB"],
          ["p50Ms", "p50 ms"],
          ["p99Ms", "p99 ms"],
          ["maxMs", "max ms"],
          ["missed", "missed"],
          ["missedByKind", "missed by kind"],
          ["lost", "lost (net)"],
          ["strayPaths", "stray paths"],
          ["runCpuS", "run CPU s"],
          ["failures", "errors"],
          ["renameReports", "rename reported as"],
        ];
  console.log(table(rows, columns, candidates));
  for (const row of rows) console.log(JSON.stringify(row));
}

async function child(): Promise<void> {
  const root = values.root!;
  const candidate = values.candidate as Candidate;
  let result: object;
  switch (values.child) {
    case "write":
      await runWriter(root, `${root}.ops.json`, Number(values.seconds), Number(values.rate));
      return;
    case "flood":
      runFlood(root);
      return;
    case "watch":
      result = await runWatch(candidate, root, values.from);
      break;
    case "overflow":
      result = await runOverflow(candidate, root, values.from);
      break;
    case "enospc":
      result = await runEnospc(candidate, root, values.from);
      break;
    default:
      throw new Error(`unknown child ${values.child}`);
  }
  console.log(JSON.stringify(result));
  process.exit(0); // a watcher left open (or a native thread) must not keep the child alive
}

if (values.child) await child();
else main();
