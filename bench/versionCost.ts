/**
 * The cost of a version (issue 15, item 4): what one new version costs on the receiver,
 * and on the pusher, when ONE file of a tree of N files changed, phase by phase.
 *
 *   node --max-old-space-size=8192 bench/versionCost.ts [--files 20000,200000,1000000]
 *     [--dir DIR] [--storage LABEL] [--no-e2e] [--no-profile] [--out FILE]
 *
 * For each N it builds, without the protocol, a source tree (N empty files, 100 to a
 * directory, as B1's tree: d<k>/d<j>/f<i>) and a receiver store for it holding two
 * versions of the same N files (the older a hard-linked copy, so that retention has a
 * version of that size to prune), then changes one file and makes new versions four ways:
 *
 *  1. phase by phase, in this process: the agent's own modules where they are exported
 *     (StagingArea, readManifest, sendEntries, decodeMessage, scanTree, whatChanged,
 *     writeManifest, versionsToKeep) and a copy of commitVersion's steps where they are
 *     not (its loop, removeStrays, the syncfs, the swap, prune), each step timed;
 *  2. the real commitVersion, in this process, as a check of the sum of 1 (with its syncfs,
 *     then again without a `sync` binary: the fsync fallback), and coreutils' `rm -rf` and
 *     `cp -al` of a tree of the same size, the C baselines of pruning and linking;
 *  3. a real `offsite push` to a real `offsite receive` (agent/main.mjs), the whole job;
 *  4. the same with `node --cpu-prof` on both ends: the profiles' top self times.
 *
 * Every commit keeps the newest two versions (keepLast 2, nothing by period), so each one
 * prunes a version of N files. The rows replace the section of this storage and these sizes
 * in bench/RESULTS-version-cost.md (other sections stay). On tmpfs (bench/run.sh's way:
 * `unshare -m sh -c 'mount -t tmpfs -o size=14g,nr_inodes=0 tmpfs "$0" && exec "$@"' DIR
 * node … --dir DIR`), nr_inodes=0 is needed at 1M files: tmpfs counts each hard link.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { commitVersion, jobRecord } from "../agent/receiver/commitVersion.ts";
import { SourceLayout } from "../agent/receiver/layout.ts";
import { comparePaths, readManifest, writeManifest } from "../agent/receiver/manifestFile.ts";
import { versionsToKeep } from "../agent/receiver/retention.ts";
import { sendEntries } from "../agent/receiver/receiverServer.ts";
import { StagingArea, STORED_FILE_MODE } from "../agent/receiver/staging.ts";
import { OPEN } from "../agent/receiver/storedFiles.ts";
import type { FramedConnection } from "../agent/protocol/connection.ts";
import { FrameDecoder, FrameType } from "../agent/protocol/frames.ts";
import {
  decodeMessage,
  type FileEntry,
  INLINE_MAX,
  manifestEntry,
  type ManifestEntry,
  PROTOCOL_VERSION,
} from "../agent/protocol/messages.ts";
import { fsPath, nameFromBytes } from "../agent/protocol/byteNames.ts";
import { NO_FILTERS } from "../agent/source/filters.ts";
import { scanTree } from "../agent/source/scanTree.ts";
import { whatChanged } from "../agent/source/whatChanged.ts";
import type { RetentionPolicy } from "../agent/receiver/retention.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OFFSITE = join(ROOT, "agent", "main.mjs");
const SITE = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const SOURCE = "a1b2c3d4-e5f6-4789-8abc-def012345678";
const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");
const RETENTION: RetentionPolicy = { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 };
const FILES_PER_DIR = 100;

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "20000,200000,1000000" },
    dir: { type: "string" },
    storage: { type: "string", default: "tmpfs (RAM)" },
    /** What code is measured (a commit), for the results; default `git describe` of this tree. */
    code: { type: "string" },
    out: { type: "string", default: join(ROOT, "bench", "RESULTS-version-cost.md") },
    "no-e2e": { type: "boolean", default: false },
    "no-profile": { type: "boolean", default: false },
  },
});
const sizes = values.files.split(",").map(Number);
const work = values.dir ? resolve(values.dir) : mkdtempSync(join(tmpdir(), "offsite-version-cost-"));
mkdirSync(work, { recursive: true });

interface Row {
  files: number;
  group: string;
  phase: string;
  ms: number;
  note?: string;
}
const rows: Row[] = [];
const profiles: { files: number; side: string; totalMs: number; top: [string, number][] }[] = [];

function log(message: string): void {
  process.stderr.write(`[version-cost ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

const now = () => performance.now();
function timed<T>(files: number, group: string, phase: string, body: () => T, note?: string): T {
  const started = now();
  const result = body();
  add(files, group, phase, now() - started, note);
  return result;
}
async function timedAsync<T>(files: number, group: string, phase: string, body: () => Promise<T>) {
  const started = now();
  const result = await body();
  add(files, group, phase, now() - started);
  return result;
}
function add(files: number, group: string, phase: string, ms: number, note?: string): void {
  rows.push({ files, group, phase, ms, ...(note ? { note } : {}) });
  log(`${files} ${group}: ${phase} ${ms.toFixed(1)} ms`);
}

/** Writes back dirty pages before a measurement, so no phase pays for the set-up's writeback. */
function settle(): void {
  spawnSync("sync");
}

function fsyncPath(path: string): void {
  const fd = openSync(fsPath(path), OPEN.read);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function leafDir(i: number): string {
  const d = Math.floor(i / FILES_PER_DIR);
  return `d${Math.floor(d / 25)}/d${d}`;
}

/**
 * The source (N empty files) and a store holding it twice: versions V0 and V1, V0's tree
 * hard links to V1's files, as a pruned version's would be. `current` names V1.
 */
function build(files: number): { source: string; root: string; layout: SourceLayout } {
  const base = join(work, `n${files}`);
  rmSync(base, { recursive: true, force: true });
  const source = join(base, "source");
  const root = join(base, "store");
  const layout = new SourceLayout(root, SITE, SOURCE);
  const v0 = "20000101T000000Z";
  const v1 = "20000102T000000Z";
  const tree = layout.treeOf(v1);
  for (let i = 0; i < files; i++) {
    if (i % FILES_PER_DIR === 0) {
      mkdirSync(join(source, leafDir(i)), { recursive: true });
      mkdirSync(join(tree, leafDir(i)), { recursive: true });
    }
    writeFileSync(join(source, leafDir(i), `f${i}`), "");
    closeSync(openSync(join(tree, leafDir(i), `f${i}`), "wx", STORED_FILE_MODE));
  }
  const scan = scanTree(source, NO_FILTERS);
  const entries: ManifestEntry[] = [];
  for (const entry of scan.entries) {
    if (entry.type === "file") {
      const { path, size, mtime, mode } = entry;
      entries.push({ type: "file", path, size, mtime, mode, sha256: EMPTY_SHA256 });
    } else if (entry.type === "dir") entries.push(entry);
  }
  writeManifest(layout.manifestOf(v1), entries);
  writeFileSync(join(layout.versionDir(v1), "job.json"), "{}");
  // V0: the same files under the same names, as the version before would hold them.
  const t0 = layout.treeOf(v0);
  mkdirSync(t0, { recursive: true });
  for (const entry of entries) {
    if (entry.type === "dir") mkdirSync(join(t0, entry.path));
    else linkSync(join(tree, entry.path), join(t0, entry.path));
  }
  writeManifest(layout.manifestOf(v0), entries);
  writeFileSync(join(layout.versionDir(v0), "job.json"), "{}");
  symlinkSync(relative(layout.dir, layout.versionDir(v1)), layout.currentLink);
  return { source, root, layout };
}

/** A connection that keeps what is sent (sendEntries only calls send). */
function collector(): { connection: FramedConnection; frames: Buffer[] } {
  const frames: Buffer[] = [];
  const connection = {
    send: (frame: Buffer) => {
      frames.push(frame);
      return Promise.resolve();
    },
  } as unknown as FramedConnection;
  return { connection, frames };
}

/** Changes file `i` of the source: new content, so size, mtime and hash differ. */
function changeOne(source: string, i: number, round: number): { path: string; content: Buffer } {
  const path = `${leafDir(i)}/f${i}`;
  const content = Buffer.from(`changed in round ${round}\n`);
  writeFileSync(join(source, path), content);
  return { path, content };
}

function fileHeader(source: string, path: string, content: Buffer) {
  const stat = lstatSync(join(source, path));
  return {
    path,
    size: content.length,
    mtime: Math.floor(stat.mtimeMs),
    mode: stat.mode & 0o7777,
    sha256: createHash("sha256").update(content).digest("hex"),
  };
}

/** Round 1: every phase of a push and its commit, timed one by one. */
async function phases(files: number, source: string, layout: SourceLayout): Promise<void> {
  const R = "receiver";
  const P = "pusher";
  const C = "commit";
  const changed = changeOne(source, 0, 1);
  settle();
  const base = layout.current();
  const manifestPath = layout.manifestOf(base!);
  // What the StagingArea constructor does, split: read, JSON.parse, zod.
  const text = timed(files, R, "manifest: read file + split lines", () =>
    readFileSync(manifestPath, "utf8").split("\n"),
  );
  const parsed = timed(files, R, "manifest: JSON.parse per line", () =>
    text.filter((line) => line !== "").map((line) => JSON.parse(line) as unknown),
  );
  timed(files, R, "manifest: zod safeParse per entry", () => {
    for (const value of parsed) if (!manifestEntry.safeParse(value).success) throw new Error("bad entry");
  });
  timed(files, R, "manifest: readManifest() whole (read+parse+zod)", () => readManifest(manifestPath));
  const staging = timed(files, R, "new StagingArea (readManifest + Map by path)", () => {
    return new StagingArea(layout, base);
  });
  timed(files, R, "staging.open() (fresh staging dir)", () => staging.open());
  // The Entries the receiver sends: the JSON is built twice, once to size each batch.
  timed(files, R, "Entries: JSON.stringify per entry only (sizing pass)", () => {
    let bytes = 0;
    for (const entry of staging.effectiveEntries()) bytes += JSON.stringify(entry).length;
    return bytes;
  });
  const { connection, frames } = collector();
  await timedAsync(files, R, "sendEntries() whole (effectiveEntries + batches + encodeJson)", () =>
    sendEntries(connection, staging.effectiveEntries(), staging.partialState(), PROTOCOL_VERSION),
  );
  const wire = frames.reduce((sum, frame) => sum + frame.length, 0);
  add(files, R, `(Entries on the wire: ${(wire / 1e6).toFixed(1)} MB in ${frames.length} frames)`, 0);

  // The pusher: the receiver's view as openSession's handshake takes it.
  timed(files, P, "Entries: JSON.parse of the frames only", () => {
    for (const frame of frames) JSON.parse(frame.subarray(5).toString("utf8"));
  });
  const entries = timed(files, P, "Entries: decode (JSON.parse + zod) + Map by path", () => {
    const decoder = new FrameDecoder();
    const map = new Map<string, ManifestEntry>();
    for (const bytes of frames) {
      decoder.push(bytes);
      for (let frame = decoder.next(); frame; frame = decoder.next()) {
        const message = decodeMessage(frame);
        if (message.type === FrameType.Entries)
          for (const entry of message.entries) map.set(entry.path, entry);
      }
    }
    return map;
  });
  const scan = timed(files, P, "scanTree (readdir + lstat per entry)", () => scanTree(source, NO_FILTERS));
  timed(files, P, "diff: deletions, rename maps, whatChanged per entry", () => {
    // pushJob's work for an unchanged entry, without the sending.
    const present = new Set(scan.entries.paths);
    const removed = [...entries.values()].filter((e) => !present.has(e.path));
    const byHash = new Map<string, FileEntry>();
    const bySize = new Map<number, FileEntry>();
    for (const entry of entries.values()) {
      if (entry.type !== "file") continue;
      byHash.set(entry.sha256, entry);
      if (entry.size > INLINE_MAX && !present.has(entry.path)) bySize.set(entry.size, entry);
    }
    const kept = new Set<string>();
    const unchanged = new Set<string>();
    let changedCount = 0;
    for (const entry of scan.entries) {
      const change = whatChanged(entry, entries.get(entry.path), { checksum: false, hardLinks: true });
      if (entry.type !== "file") continue;
      if (change.kind === "unchanged") unchanged.add(entry.path);
      else changedCount++;
      kept.add(entry.path);
    }
    if (changedCount !== 1 || removed.length !== 0) throw new Error(`${changedCount} changed, not 1`);
  });

  // The one File frame, and the commit.
  const header = fileHeader(source, changed.path, changed.content);
  timed(files, R, "putFile (the one changed file)", () => staging.putFile(header, changed.content));
  replicatedCommit(files, C, staging, layout);
}

/** commitVersion's steps (agent/receiver/commitVersion.ts), each timed. */
function replicatedCommit(files: number, C: string, staging: StagingArea, layout: SourceLayout) {
  const started = now();
  timed(files, C, "staging.flush()", () => staging.flush());
  const entries = timed(files, C, "effectiveEntries + sort by path", () =>
    [...staging.effectiveEntries()].sort((a, b) => comparePaths(a.path, b.path)),
  );
  const byPath = timed(files, C, "Map by path + parent check", () => {
    const map = new Map(entries.map((entry) => [entry.path, entry]));
    for (const entry of entries) {
      const parent = dirname(entry.path);
      if (parent !== "." && map.get(parent)?.type !== "dir") throw new Error(`no parent ${parent}`);
    }
    return map;
  });
  const tree = staging.tree;
  let linkMs = 0;
  let mkdirMs = 0;
  let links = 0;
  let dirs = 0;
  const loopStarted = now();
  for (const entry of entries) {
    const target = fsPath(join(tree, entry.path));
    if (entry.type === "dir") {
      const t = now();
      try {
        mkdirSync(target, { mode: 0o755 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        if (!lstatSync(target).isDirectory()) throw new Error("not a directory", { cause: error });
      }
      mkdirMs += now() - t;
      dirs++;
    } else if (entry.type === "file") {
      if (staging.changes.has(entry.path)) continue;
      const source = fsPath(join(layout.treeOf(staging.base!), entry.path));
      const t = now();
      linkSync(source, target);
      linkMs += now() - t;
      links++;
    }
  }
  const loopMs = now() - loopStarted;
  add(files, C, `link(2) of each unchanged file (${links})`, linkMs);
  add(files, C, `mkdir(2) of each directory (${dirs})`, mkdirMs);
  add(files, C, "the loop's JS around them (join ×4, fsPath, Map)", loopMs - linkMs - mkdirMs);

  const baseTree = layout.treeOf(staging.base!);
  let readdirMs = 0;
  const removeStrays = (prefix: string): number => {
    let kept = 0;
    const t = now();
    const dirents = readdirSync(fsPath(join(tree, prefix)), { withFileTypes: true, encoding: "buffer" });
    readdirMs += now() - t;
    for (const dirent of dirents) {
      const name = nameFromBytes(dirent.name);
      const path = prefix ? `${prefix}/${name}` : name;
      const entry = byPath.get(path);
      if (entry?.type === "file" && dirent.isSymbolicLink()) throw new Error(`${baseTree}/${path} is a link`);
      const fits =
        entry &&
        ((entry.type === "dir" && dirent.isDirectory()) || (entry.type === "file" && dirent.isFile()));
      if (!fits) rmSync(fsPath(join(tree, path)), { recursive: true, force: true });
      else {
        kept++;
        if (dirent.isDirectory()) kept += removeStrays(path);
      }
    }
    return kept;
  };
  const sweepStarted = now();
  const onDisk = removeStrays("");
  const sweepMs = now() - sweepStarted;
  add(files, C, "removeStrays: readdir(withFileTypes) per directory", readdirMs);
  add(files, C, "removeStrays: JS per entry (nameFromBytes, Map)", sweepMs - readdirMs);
  const expected = entries.filter((entry) => entry.type !== "symlink").length;
  if (onDisk !== expected) throw new Error(`${onDisk} on disk, ${expected} expected`);

  timed(files, C, "syncfs (spawnSync sync -f)", () => {
    if (spawnSync("sync", ["-f", tree], { stdio: "ignore" }).status !== 0) throw new Error("no sync -f");
  });
  // The fallback where there is no `sync` binary (the distroless image): fsync of every
  // file written and every directory of the tree. Timed right after the syncfs, so it
  // measures the fsyncs themselves, not a writeback.
  timed(
    files,
    C,
    "(alternative) fsync fallback: written files + every directory",
    () => {
      for (const path of staging.written) fsyncPath(join(tree, path));
      for (const entry of entries) if (entry.type === "dir") fsyncPath(join(tree, entry.path));
      fsyncPath(tree);
    },
    "not in the sum: the path taken without coreutils",
  );
  const version = layout.nextVersionId(new Date());
  const versionDir = layout.versionDir(version);
  timed(files, C, "version dir + rename tree + job.json", () => {
    mkdirSync(versionDir, { recursive: true });
    renameSync(tree, layout.treeOf(version));
    writeFileSync(
      join(versionDir, "job.json"),
      JSON.stringify(jobRecord({ files, bytes: 0, filtered: {} }, staging.base, files), null, 2),
    );
  });
  timed(
    files,
    C,
    "(part of the next) manifest: JSON.stringify per entry only",
    () => {
      let length = 0;
      for (const entry of entries) length += JSON.stringify(entry).length;
      return length;
    },
    "not in the sum",
  );
  timed(files, C, "writeManifest (stringify + write + fsync)", () =>
    writeManifest(layout.manifestOf(version), entries),
  );
  timed(files, C, "current swap (fsync dirs, symlink, rename, fsync)", () => {
    fsyncPath(versionDir);
    fsyncPath(layout.versionsDir);
    const link = `${layout.currentLink}.tmp`;
    rmSync(link, { force: true });
    symlinkSync(relative(layout.dir, versionDir), link);
    renameSync(link, layout.currentLink);
    fsyncPath(layout.dir);
  });
  timed(files, C, "staging.close + rm staging dir", () => {
    staging.close();
    rmSync(staging.dir, { recursive: true, force: true });
  });
  const pruned = timed(files, C, "prune: list versions, versionsToKeep, orphan check", () => {
    const all = layout.versions();
    const keep = versionsToKeep(all, RETENTION, version);
    for (const name of readdirSync(layout.versionsDir)) {
      if (name !== version && !existsSync(layout.manifestOf(name))) throw new Error(`orphan ${name}`);
    }
    return all.filter((id) => !keep.has(id));
  });
  if (pruned.length !== 1) throw new Error(`pruned ${pruned.join(",")}, not one version`);
  timed(files, C, `prune: rm -r of one version (${files} files)`, () => {
    for (const id of pruned) rmSync(layout.versionDir(id), { recursive: true, force: true });
  });
  const sum = rows
    .filter((row) => row.files === files && row.group === C && !row.phase.startsWith("("))
    .reduce((total, row) => total + row.ms, 0);
  add(files, C, "(sum of the commit's phases above)", sum);
  add(files, C, "(commit wall time, alternatives included)", now() - started);
}

/** Round 2: the real commitVersion (and the real receiver start of a push) in this process. */
async function realCommit(files: number, source: string, layout: SourceLayout): Promise<void> {
  const G = "real, in process";
  const changed = changeOne(source, 1, 2);
  settle();
  const staging = timed(files, G, "new StagingArea + open()", () => {
    const area = new StagingArea(layout, layout.current());
    area.open();
    return area;
  });
  const { connection } = collector();
  await timedAsync(files, G, "sendEntries()", () =>
    sendEntries(connection, staging.effectiveEntries(), undefined, PROTOCOL_VERSION),
  );
  const header = fileHeader(source, changed.path, changed.content);
  staging.putFile(header, changed.content);
  const result = timed(files, G, "commitVersion() whole, pruning one version", () =>
    commitVersion(staging, { files, bytes: header.size, filtered: {} }, RETENTION),
  );
  if (result.pruned.length !== 1 || result.files !== files) throw new Error(JSON.stringify(result));
  // The same without a `sync` binary (the distroless image): commitVersion fsyncs every
  // file written and every directory of the tree instead of one syncfs.
  const again = changeOne(source, 1, 5);
  settle();
  const fallback = new StagingArea(layout, layout.current());
  fallback.open();
  fallback.putFile(fileHeader(source, again.path, again.content), again.content);
  const path = process.env.PATH;
  process.env.PATH = "/nonexistent";
  try {
    timed(files, G, "commitVersion() whole, without `sync` (fsync fallback), pruning one", () =>
      commitVersion(fallback, { files, bytes: again.content.length, filtered: {} }, RETENTION),
    );
  } finally {
    process.env.PATH = path;
  }
  // rm(1) on a hard-linked copy of the current version: the C baseline of the prune.
  const current = layout.treeOf(layout.current()!);
  const copy = join(dirname(layout.dir), "rm-baseline");
  rmSync(copy, { recursive: true, force: true });
  spawnSync("cp", ["-al", current, copy]);
  settle();
  timed(files, G, `(baseline) rm -rf (coreutils) of a hard-linked copy (${files} files)`, () => {
    spawnSync("rm", ["-rf", copy]);
  });
  timed(files, G, `(baseline) cp -al (coreutils) of the current tree (${files} files)`, () => {
    spawnSync("cp", ["-al", current, copy]);
  });
  rmSync(copy, { recursive: true, force: true });
}

interface Receiver {
  port: number;
  events: Record<string, unknown>[];
  stop(): Promise<void>;
}

async function startReceiver(root: string, certs: string, nodeArgs: string[]): Promise<Receiver> {
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      OFFSITE,
      "receive",
      "--root",
      root,
      "--certs",
      certs,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--keep-last",
      String(RETENTION.keepLast),
      "--keep-daily",
      "0",
      "--keep-weekly",
      "0",
      "--keep-monthly",
      "0",
      "--json",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const events: Record<string, unknown>[] = [];
  let buffered = "";
  const port = await new Promise<number>((resolvePort, reject) => {
    child.once("exit", (code) => reject(new Error(`the receiver exited with ${code}`)));
    child.stderr.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const event = JSON.parse(line) as Record<string, unknown>;
          events.push(event);
          if (event.event === "listening") resolvePort(event.port as number);
        } catch {
          events.push({ event: "unparsed", line });
        }
      }
    });
  });
  return {
    port,
    events,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

async function run(command: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  const started = now();
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  return { ms: now() - started, stdout };
}

/** Rounds 3 and 4: a real push of the one change, plain and then under --cpu-prof. */
async function endToEnd(files: number, source: string, root: string, certs: string, profile: boolean) {
  const rounds = profile ? [false, true] : [false];
  for (const profiled of rounds) {
    const G = profiled ? "e2e under --cpu-prof" : "e2e (offsite push → offsite receive)";
    const profileDir = join(work, `profiles-n${files}`);
    rmSync(profileDir, { recursive: true, force: true });
    const nodeArgs = (side: string) =>
      profiled ? ["--cpu-prof", "--cpu-prof-dir", join(profileDir, side)] : [];
    const receiver = await startReceiver(root, join(certs, "receiver"), nodeArgs("receiver"));
    try {
      changeOne(source, 2 + (profiled ? 1 : 0), profiled ? 4 : 3);
      settle();
      const push = await run(process.execPath, [
        ...nodeArgs("pusher"),
        OFFSITE,
        "push",
        source,
        "--to",
        `127.0.0.1:${receiver.port}`,
        "--certs",
        join(certs, `source-${SOURCE}`),
        "--json",
      ]);
      const report = JSON.parse(push.stdout.trim().split("\n").at(-1)!) as {
        ms: number;
        files: { sent: number; unchanged: number };
        pruned: string[];
      };
      if (report.files.sent !== 1 || report.pruned.length !== 1) throw new Error(push.stdout);
      add(files, G, "offsite push, wall (process start to exit)", push.ms);
      add(files, G, "push report's ms (scan to Committed)", report.ms);
      const committed = receiver.events.find((e) => e.event === "committed");
      if (committed)
        add(files, G, "receiver's session ms (Hello to commit, pruning included)", committed.ms as number);
    } finally {
      await receiver.stop();
    }
    if (profiled) {
      for (const side of ["receiver", "pusher"]) {
        const dir = join(profileDir, side);
        for (const name of existsSync(dir) ? readdirSync(dir) : []) {
          profiles.push({ files, side, ...summarizeProfile(join(dir, name)) });
        }
      }
    }
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time by function (name, file:line), the top 14, in ms. */
function summarizeProfile(file: string): { totalMs: number; top: [string, number][] } {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const name = new Map<number, string>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? ` ${url.replace(/^.*\/(agent|node_modules)\//, "$1/")}:${lineNumber + 1}` : "";
    name.set(node.id, `${functionName || "(anonymous)"}${where}`);
  }
  const self = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const key = name.get(id) ?? "?";
    if (key === "(idle)") return;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 14);
  return { totalMs: (profile.endTime - profile.startTime) / 1000, top };
}

function machine(): string {
  const lscpu = spawnSync("lscpu").stdout?.toString() ?? "";
  const field = (key: string) => new RegExp(`^${key}:\\s*(.+)$`, "m").exec(lscpu)?.[1]?.trim() ?? "?";
  const kernel = spawnSync("uname", ["-srm"]).stdout?.toString().trim() ?? "?";
  const mem = /MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
  const fs = spawnSync("df", ["-T", work]).stdout?.toString().trim().split("\n").at(-1)?.split(/\s+/)[1];
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  return (
    `load average at the end ${load} (other jobs shared the 2 cores during the run); ` +
    `${field("Model name")}, ${field("CPU\\(s\\)")} CPUs; ${(Number(mem) / 1024 / 1024).toFixed(0)} GiB RAM; ` +
    `${kernel}; Node ${process.version}; work directory on ${fs ?? "?"}`
  );
}

/** The section's title: a run replaces the section of the same storage and sizes. */
function title(): string {
  return `Storage: ${values.storage}, ${sizes.map((n) => n.toLocaleString("en")).join(" / ")} files`;
}

function section(): string {
  const lines: string[] = [];
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  lines.push(`## ${title()}`, "");
  const code =
    values.code ??
    (spawnSync("git", ["-C", ROOT, "describe", "--always", "--dirty"]).stdout?.toString().trim() || "?");
  lines.push(`${date} UTC. ${machine()}. Code measured: ${code}.`, "");
  lines.push(
    "One file of N changed; N empty files, 100 to a directory (N/100 leaf directories under N/2500). " +
      "µs/file is ms × 1000 / N. Rows in parentheses are not part of the phase sums.",
    "",
  );
  lines.push("| files | side | phase | ms | µs/file |", "| ---: | --- | --- | ---: | ---: |");
  for (const row of rows) {
    const us = row.ms === 0 ? "" : ((row.ms * 1000) / row.files).toFixed(2);
    const ms = row.ms === 0 ? "" : row.ms >= 100 ? row.ms.toFixed(0) : row.ms.toFixed(1);
    lines.push(
      `| ${row.files.toLocaleString("en")} | ${row.group} | ${row.phase}${row.note ? ` — ${row.note}` : ""} | ${ms} | ${us} |`,
    );
  }
  if (profiles.length > 0) {
    lines.push("", `### CPU profiles (self time, ms) of the push under --cpu-prof, ${values.storage}`, "");
    for (const p of profiles) {
      lines.push(
        `**${p.files.toLocaleString("en")} files, ${p.side}** (profile spans ${p.totalMs.toFixed(0)} ms):`,
        "",
      );
      for (const [fn, ms] of p.top) lines.push(`- ${ms.toFixed(0)} ms \`${fn}\``);
      lines.push("");
    }
  }
  return lines.join("\n").trimEnd() + "\n";
}

function writeResults(): void {
  const header =
    "# The cost of a version (issue 15, item 4)\n\n" +
    "Written by `bench/versionCost.ts` (one section per storage and set of sizes; a run rewrites " +
    "its own). What each phase is: see the script's header. tmpfs runs: a private mount namespace " +
    "as bench/run.sh makes, mounted with `nr_inodes=0` (tmpfs charges every hard link to its inode " +
    "limit, and the default stops 1M files before their third name).\n\n" +
    "How to read it: the in-process rows (receiver, pusher, commit) run both ends in one process, " +
    "so one heap holds the receiver's and the pusher's entries and garbage collection inflates the " +
    "JS phases at 200k and 1M files; the e2e rows and the CPU profiles are separate processes. " +
    "The commit rows copy commitVersion's steps and time each call (two clock reads per link(2)); " +
    "`commitVersion() whole` is the real function. The machine was shared, so repeated phases vary " +
    "by up to 2× between runs; compare a phase with its neighbours of the same run.\n";
  const previous = existsSync(values.out) ? readFileSync(values.out, "utf8") : "";
  const sections = previous
    .split(/^(?=## Storage: )/m)
    .filter((part) => part.startsWith("## Storage: ") && !part.startsWith(`## ${title()}\n`));
  writeFileSync(values.out, [header, ...sections.map((s) => s.trimEnd() + "\n"), section()].join("\n"));
  log(`wrote ${values.out}`);
}

try {
  log(`working in ${work}`);
  const certs = join(work, "certs");
  if (!values["no-e2e"] && !existsSync(join(certs, "receiver"))) {
    await run(process.execPath, [
      OFFSITE,
      "certs",
      "--out",
      certs,
      "--site",
      SITE,
      "--source",
      SOURCE,
      "--host",
      "127.0.0.1",
      "--json",
    ]);
  }
  for (const files of sizes) {
    log(`building ${files} files`);
    const buildStarted = now();
    const { source, root, layout } = build(files);
    log(`built in ${((now() - buildStarted) / 1000).toFixed(1)} s`);
    await phases(files, source, layout);
    await realCommit(files, source, layout);
    if (!values["no-e2e"]) await endToEnd(files, source, root, certs, !values["no-profile"]);
    rmSync(join(work, `n${files}`), { recursive: true, force: true });
    writeResults();
  }
} finally {
  if (!values.dir) rmSync(work, { recursive: true, force: true });
}
