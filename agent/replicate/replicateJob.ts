/**
 * `offsite replicate`: the primary side of a pair. It keeps one long-lived session with the
 * standby and sends every change of the tree within about a second:
 *
 * 1. Watch first (treeWatcher.ts), then scan: a change made while the first copy runs is
 *    seen by the watch and sent after it (the race lsyncd users report).
 * 2. Catch up: compare the scan with the standby's Entries and send only the difference
 *    (changed chunks of large files), by content for the journal's suspects.
 * 3. Stream: changed paths are collected for `batchWindowMs` after the last event on them
 *    (a file being written is sent once it is quiet), looked at (lstat: the event only
 *    says where), and sent. A path whose inode the standby already has elsewhere goes as a
 *    Rename. Each batch is journaled before it is sent and ends with Flush; Applied says it
 *    is durable on the standby, and the lag is measured from the first event of the batch.
 *
 * A file that cannot be read whole (an I/O error, gone or changed mid-read) is not sent:
 * the standby keeps its last good copy (a large one is abandoned mid-way), and it is
 * reported. The content firewall stops executables and scripts here, and they stay on the
 * primary. When the standby is away, changes are only journaled (the primary never waits
 * for it) and the next session catches up.
 */
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { openSession, type Endpoint, type Session } from "../client/openSession.ts";
import { fsPath, nameFromBytes } from "../protocol/byteNames.ts";
import type { FramedConnection } from "../protocol/connection.ts";
import { FrameType } from "../protocol/frames.ts";
import { encodeJson, INLINE_MAX } from "../protocol/messages.ts";
import { comparePaths, parentOf, parentsOf } from "../protocol/paths.ts";
import { excludedPath, fileFilterReason, type FilterOptions } from "../source/filters.ts";
import { isEntryProblem, isVanished, problemReason, scanTree } from "../source/scanTree.ts";
import {
  AbandonedFile,
  chunkOffsets,
  readSmallFile,
  sendLargeFile,
  sendSmallFile,
  smallFileScratch,
} from "../transfer/sendTree.ts";
import { STATE_DIR } from "../standby/liveTree.ts";
import { RemoteTree, type RemoteEntry } from "./remoteTree.ts";
import { ReplicationJournal } from "./replicationJournal.ts";
import { TreeWatcher } from "./treeWatcher.ts";

export interface ReplicateOptions {
  source: string;
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  /** The pair's epoch (raised by each failover). */
  epoch: number;
  filters: FilterOptions;
  batchWindowMs: number;
  /** Where the journal lives (default SOURCE/.offsite, never replicated). */
  stateDir: string;
  /** A full comparison this often, whatever the watch says (libuv hides inotify overflows). */
  rescanIntervalMs?: number;
  signal?: AbortSignal;
  onEvent?: (event: ReplicationEvent) => void;
}

export type ReplicationEvent =
  | { event: "connected"; standbyEntries: number }
  | {
      event: "synced";
      files: number;
      sent: number;
      renamed: number;
      deleted: number;
      bytes: number;
      ms: number;
      overflowed: boolean;
    }
  | {
      event: "applied";
      seq: number;
      changes: number;
      lagMs: number;
      pending: number;
      /** Bytes this session has written to the standby so far. */
      bytesSent: number;
    }
  | { event: "blocked"; path: string; reason: string }
  | { event: "problem"; path: string; reason: string }
  | { event: "disconnected"; reason: string; pending: number }
  | { event: "rescan"; path: string; reason: string };

/** Counters of one session, for the events and the CLI's report. */
interface Counters {
  sent: number;
  renamed: number;
  deleted: number;
  linked: number;
}

/** A path seen changing at `first`, and last at `last`. */
interface DirtyPath {
  first: number;
  last: number;
}

/** A file still changing is sent anyway after this long, so a file written without pause still travels. */
const MAX_DEFER_MS = 2000;
const DEFAULT_RESCAN_MS = 10 * 60_000;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const LOST_RESCAN_MS = 60_000;
/**
 * A quiet tree still sends a Flush this often, so the standby's idle timeout (minutes)
 * never ends a healthy session and a vanished standby is noticed.
 */
const KEEPALIVE_MS = 30_000;

/** What a path is now, as the replicator looked (see look()). */
type Looked = LocalEntry | "gone" | "kept";

type LocalEntry =
  | { type: "file"; path: string; size: number; mtime: number; mode: number; ino: number }
  | { type: "dir"; path: string; mtime: number; mode: number; ino: number }
  | { type: "symlink"; path: string; mtime: number; target: string; ino: number };

export async function replicateJob(options: ReplicateOptions): Promise<void> {
  const replicator = new Replicator(options);
  try {
    await replicator.run();
  } finally {
    replicator.close();
  }
}

class Replicator {
  private readonly options: ReplicateOptions;
  private readonly journal: ReplicationJournal;
  private readonly watcher: TreeWatcher;
  private readonly dirty = new Map<string, DirtyPath>();
  private readonly emit: (event: ReplicationEvent) => void;
  private readonly scratch = smallFileScratch();
  /**
   * Paths the firewall stops now, with why: reported once, and never deleted on the standby
   * (its older copy stays, as the primary keeps the file) until the path is gone here.
   */
  private readonly blocked = new Map<string, string>();
  private rescanRequested = false;
  /** When a lost watch last asked for a rescan. */
  private lostRescanAt = 0;
  /** When the last batch was taken (batches are at least a batch window apart). */
  private lastBatchAt = 0;
  private wake: (() => void) | undefined;
  /** Batches sent and not yet applied: seq → first event time and size. */
  private readonly inFlight = new Map<number, { first: number; changes: number }>();

  constructor(options: ReplicateOptions) {
    this.options = options;
    this.emit = options.onEvent ?? (() => undefined);
    this.journal = new ReplicationJournal(options.stateDir);
    this.watcher = new TreeWatcher(options.source, {
      onChange: (path) => this.markDirty(path),
      onLost: (path, reason) => {
        // A watch limit fails again at every rescan: one rescan a minute at most for it.
        if (Date.now() - this.lostRescanAt < LOST_RESCAN_MS) return;
        this.lostRescanAt = Date.now();
        this.emit({ event: "rescan", path, reason });
        this.rescanRequested = true;
        this.poke();
      },
    });
  }

  close(): void {
    this.watcher.close();
    this.journal.close();
  }

  async run(): Promise<void> {
    const { signal } = this.options;
    // Watch before anything is read: nothing changed from here on can be missed.
    this.watchTree("");
    let backoff = RECONNECT_MIN_MS;
    while (!signal?.aborted) {
      let session: Session;
      try {
        session = await openSession(this.options.endpoint, {
          role: "replicate",
          site: this.options.site,
          source: this.options.sourceId,
          epoch: this.options.epoch,
          signal,
        });
      } catch (error) {
        if (signal?.aborted) break;
        this.emit({ event: "disconnected", reason: (error as Error).message, pending: this.journal.pending });
        // Refusals that retrying cannot fix end the job: it is the operator's (or user's) to fix.
        const code = (error as { code?: string }).code;
        if (code === "forbidden" || code === "stale-epoch" || code === "certificate-refused") throw error;
        this.journalWhileAway();
        await this.idle(backoff, () => false);
        this.journalWhileAway();
        backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
        continue;
      }
      backoff = RECONNECT_MIN_MS;
      try {
        await this.serve(session);
      } catch (error) {
        if (signal?.aborted) break;
        this.emit({ event: "disconnected", reason: (error as Error).message, pending: this.journal.pending });
        const code = (error as { code?: string }).code;
        if (code === "stale-epoch" || code === "forbidden") throw error;
      } finally {
        await session.connection.close().catch(() => undefined);
        this.inFlight.clear();
      }
    }
  }

  /** One session: catch up, then stream batches until it breaks or the job stops. */
  private async serve(session: Session): Promise<void> {
    const { connection } = session;
    this.emit({ event: "connected", standbyEntries: session.entries.size });
    const remote = new RemoteTree(session.entries.values());
    let failure: Error | undefined;
    // The standby speaks only Applied (and Error) from here on.
    const reader = (async () => {
      for (;;) {
        const message = await connection.next();
        if (message.type !== FrameType.Applied) {
          throw new Error(`the standby sent a ${message.type} frame in a replication session`);
        }
        this.applied(message.seq, message.refused, connection.bytesWritten);
      }
    })().catch((error: unknown) => {
      failure = error as Error;
      this.poke();
    });
    const started = Date.now();
    const upTo = this.journal.lastSeq;
    const counters: Counters = { sent: 0, renamed: 0, deleted: 0, linked: 0 };
    const overflowed = this.journal.overflowed;
    const files = await this.catchUp(connection, remote, this.journal.suspects(), counters);
    await connection.send(encodeJson(FrameType.Flush, { seq: upTo }));
    this.inFlight.set(upTo, { first: this.journal.oldestPending ?? started, changes: 0 });
    this.emit({
      event: "synced",
      files,
      ...counters,
      bytes: connection.bytesWritten,
      ms: Date.now() - started,
      overflowed,
    });
    let rescanAt = Date.now() + (this.options.rescanIntervalMs ?? DEFAULT_RESCAN_MS);
    let flushedSeq = upTo;
    let flushedAt = Date.now();
    while (!this.options.signal?.aborted) {
      if (failure) throw failure;
      if (Date.now() - flushedAt >= KEEPALIVE_MS) {
        await connection.send(encodeJson(FrameType.Flush, { seq: flushedSeq }));
        flushedAt = Date.now();
      }
      if (this.rescanRequested || Date.now() >= rescanAt) {
        this.rescanRequested = false;
        rescanAt = Date.now() + (this.options.rescanIntervalMs ?? DEFAULT_RESCAN_MS);
        const seq = this.journal.record([], Date.now());
        this.watchTree("");
        await this.catchUp(connection, remote, new Set(), counters);
        await connection.send(encodeJson(FrameType.Flush, { seq }));
        this.inFlight.set(seq, { first: Date.now(), changes: 0 });
        [flushedSeq, flushedAt] = [seq, Date.now()];
        continue;
      }
      const batch = this.takeBatch();
      if (batch) {
        const seq = this.journal.record([...batch.paths], batch.first);
        await this.sendChanges(connection, remote, batch.paths, counters);
        await connection.send(encodeJson(FrameType.Flush, { seq }));
        this.inFlight.set(seq, { first: batch.first, changes: batch.paths.size });
        [flushedSeq, flushedAt] = [seq, Date.now()];
        continue;
      }
      await this.idle(this.nextBatchIn(), () => failure !== undefined);
    }
    void reader;
  }

  /**
   * The standby is away: what changed is journaled (the catch-up at the next session finds
   * it by scanning; the journal makes it compare these by content) and not kept in memory.
   */
  private journalWhileAway(): void {
    if (this.dirty.size === 0) return;
    let first = Infinity;
    for (const seen of this.dirty.values()) first = Math.min(first, seen.first);
    this.journal.record([...this.dirty.keys()], first);
    this.dirty.clear();
  }

  private applied(seq: number, refused: { path: string; reason: string }[], bytesSent: number): void {
    this.journal.acknowledge(seq);
    for (const file of refused)
      this.emit({ event: "blocked", path: file.path, reason: `${file.reason} (by the standby)` });
    for (const [sent, batch] of this.inFlight) {
      if (sent > seq) continue;
      this.inFlight.delete(sent);
      this.emit({
        event: "applied",
        seq: sent,
        changes: batch.changes,
        lagMs: Date.now() - batch.first,
        pending: this.journal.pending,
        bytesSent,
      });
    }
  }

  // ---- what changed --------------------------------------------------------------------

  private markDirty(path: string): void {
    if (path === STATE_DIR || path.startsWith(`${STATE_DIR}/`)) return;
    const now = Date.now();
    const known = this.dirty.get(path);
    if (known) known.last = now;
    else this.dirty.set(path, { first: now, last: now });
    this.poke();
  }

  /**
   * The paths quiet for the batch window (or changing for too long), with their parents; at
   * most one batch per window, so a steady stream of changes to different paths travels in
   * batches (each costs a journal write, a Flush and the standby's fsyncs) instead of one per
   * change, for at most one window more of lag.
   */
  private takeBatch(): { paths: Set<string>; first: number } | undefined {
    const now = Date.now();
    const window = this.options.batchWindowMs;
    if (now - this.lastBatchAt < window) return undefined;
    const paths = new Set<string>();
    let first = Infinity;
    for (const [path, seen] of this.dirty) {
      if (now - seen.last < window && now - seen.first < MAX_DEFER_MS) continue;
      this.dirty.delete(path);
      paths.add(path);
      first = Math.min(first, seen.first);
    }
    if (paths.size === 0) return undefined;
    this.lastBatchAt = now;
    // A change in a directory changes its mtime, which the standby must get too.
    for (const path of [...paths]) {
      const parent = parentOf(path);
      if (parent !== undefined) paths.add(parent);
    }
    paths.delete("");
    return { paths, first };
  }

  private nextBatchIn(): number {
    let soonest = Infinity;
    const now = Date.now();
    for (const seen of this.dirty.values()) {
      soonest = Math.min(
        soonest,
        seen.last + this.options.batchWindowMs - now,
        seen.first + MAX_DEFER_MS - now,
      );
    }
    const nextAllowed = this.lastBatchAt + this.options.batchWindowMs - now;
    return Math.max(1, nextAllowed, Math.min(soonest, 1000));
  }

  private poke(): void {
    this.wake?.();
  }

  /**
   * Sleeps up to `ms`, or until `stop` holds. A change arriving meanwhile shortens the
   * sleep to the batch window (a burst settles into one batch: no wake-up per event).
   */
  private idle(ms: number, stop?: () => boolean): Promise<void> {
    if (stop?.()) return Promise.resolve();
    return new Promise((resolve) => {
      const signal = this.options.signal;
      let deadline = Date.now() + ms;
      let timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
      this.wake = () => {
        if (stop?.()) {
          this.wake = undefined;
          done();
          return;
        }
        const window = this.options.batchWindowMs;
        if (deadline - Date.now() > window) {
          clearTimeout(timer);
          deadline = Date.now() + window;
          timer = setTimeout(done, window);
        }
      };
    });
  }

  /** Watches `path` and every directory under it that the filters keep. */
  private watchTree(path: string): void {
    const stat = lstatOrUndefined(path === "" ? this.options.source : join(this.options.source, path));
    if (!stat?.isDirectory()) return;
    if (this.watcher.isWatchedAs(path, stat.ino)) return;
    this.watcher.unwatchUnder(path);
    if (!this.watcher.watchDirectory(path, stat.ino)) return;
    let names: string[];
    try {
      names = listNames(path === "" ? this.options.source : join(this.options.source, path));
    } catch {
      return;
    }
    for (const name of names) {
      const child = path === "" ? name : `${path}/${name}`;
      if (child === STATE_DIR || excludedPath(child, this.options.filters)) continue;
      if (lstatOrUndefined(join(this.options.source, child))?.isDirectory()) this.watchTree(child);
    }
  }

  // ---- sending -------------------------------------------------------------------------

  /** The whole tree against the standby's: returns the files of the source. */
  private async catchUp(
    connection: FramedConnection,
    remote: RemoteTree,
    suspects: Set<string>,
    counters: Counters,
  ): Promise<number> {
    const scan = scanTree(this.options.source, {
      ...this.options.filters,
      exclude: [...this.options.filters.exclude, STATE_DIR],
    });
    for (const { path, reason } of scan.filtered) this.reportBlocked(path, reason);
    for (const problem of scan.problems) this.emit({ event: "problem", ...problem });
    const local = new Map<string, LocalEntry>();
    for (let i = 0; i < scan.entries.length; i++) {
      const entry = scan.entries.entry(i);
      const ino = scan.entries.inodeOf(i);
      if (entry.type === "file") {
        const { path, size, mtime, mode } = entry;
        local.set(path, { type: "file", path, size, mtime, mode, ino });
      } else local.set(entry.path, { ...entry, ino });
    }
    const filteredPaths = new Set(scan.filtered.map((f) => f.path));
    const unknown = new Set(scan.problems.map((p) => p.path));
    const gone = [...remote.values()].filter(
      (entry) =>
        !local.has(entry.path) && !underAny(entry.path, filteredPaths) && !underAny(entry.path, unknown),
    );
    // Same content at another path: the standby renames instead of receiving it again.
    const goneByHash = new Map<string, RemoteEntry>();
    for (const entry of gone) if (entry.type === "file") goneByHash.set(entry.sha256, entry);
    for (const entry of local.values()) {
      await this.sendPath(connection, remote, entry, counters, {
        byContent: suspects.has(entry.path),
        goneByHash,
        catchingUp: true,
      });
    }
    for (const entry of gone.sort((a, b) => b.path.length - a.path.length)) {
      if (!remote.has(entry.path)) continue; // renamed away above
      await connection.send(encodeJson(FrameType.Delete, { path: entry.path }));
      remote.deleteUnder(entry.path);
      counters.deleted++;
    }
    return scan.entries.fileCount;
  }

  /** The changed paths of one batch, looked at now. */
  private async sendChanges(
    connection: FramedConnection,
    remote: RemoteTree,
    paths: Set<string>,
    counters: Counters,
  ): Promise<void> {
    const looked = new Map<string, Looked>();
    for (const path of paths) looked.set(path, this.look(path));
    // Renames first, in an order that frees each destination before it is taken.
    const renames: { from: string; to: string }[] = [];
    for (const [path, entry] of looked) {
      if (typeof entry === "string" || entry.type === "symlink") continue;
      const known = remote.get(path);
      if (known?.ino === entry.ino) continue;
      const from = remote.pathOfInode(entry.ino);
      if (from === undefined || from === path || remote.get(from)?.type !== entry.type) continue;
      // Still there (a hard link), or there and unknown (unreadable, filtered): not a rename.
      const source = this.look(from);
      if (source !== "gone") continue;
      renames.push({ from, to: path });
    }
    for (let progress = true; progress && renames.length > 0;) {
      progress = false;
      for (let i = 0; i < renames.length; i++) {
        const { from, to } = renames[i]!;
        if (renames.some((other) => other !== renames[i] && other.from === to)) continue;
        renames.splice(i--, 1);
        progress = true;
        if (!remote.has(from)) continue;
        await connection.send(encodeJson(FrameType.Rename, { from, to }));
        remote.move(from, to);
        counters.renamed++;
        if (remote.get(to)?.type === "dir") {
          // Its watches report names under the old path: watch it again where it is now,
          // and compare its subtree (changes made inside it before the watch came back).
          this.watcher.unwatchUnder(from);
          this.watchTree(to);
          for (const key of this.subtreeOnBothSides(remote, to))
            if (!looked.has(key)) looked.set(key, this.look(key));
        }
      }
    }
    const ordered = [...looked].sort((a, b) => comparePaths(a[0], b[0]));
    const deletions: string[] = [];
    for (const [path, entry] of ordered) {
      if (entry === "gone") {
        if (remote.has(path)) deletions.push(path);
        continue;
      }
      // Excluded, stopped by the firewall, unreadable: the standby keeps what it has.
      if (entry === "kept") continue;
      await this.sendPath(connection, remote, entry, counters, { byContent: false });
    }
    for (const path of deletions.sort((a, b) => b.length - a.length)) {
      if (!remote.has(path)) continue;
      await connection.send(encodeJson(FrameType.Delete, { path }));
      remote.deleteUnder(path);
      counters.deleted++;
    }
  }

  /**
   * Every path under directory `path` here or on the standby: what a directory whose
   * watch was missing for a while (renamed, replaced) may have changed, deletions included.
   */
  private subtreeOnBothSides(remote: RemoteTree, path: string): Set<string> {
    const paths = new Set(this.subtreeOf(path));
    for (const key of remote.keysUnder(path)) if (key !== path) paths.add(key);
    return paths;
  }

  /** Paths of the local subtree under directory `path` (for a directory renamed or new). */
  private subtreeOf(path: string): string[] {
    const paths: string[] = [];
    const walk = (dir: string) => {
      let names: string[];
      try {
        names = listNames(join(this.options.source, dir));
      } catch {
        return;
      }
      for (const name of names) {
        const child = `${dir}/${name}`;
        if (excludedPath(child, this.options.filters)) continue;
        paths.push(child);
        if (lstatOrUndefined(join(this.options.source, child))?.isDirectory()) walk(child);
      }
    };
    walk(path);
    return paths;
  }

  /**
   * What `path` is now: an entry; "gone" (it is not there: the standby's copy goes too); or
   * "kept" (excluded, kept back by the filters or the firewall, not a file we replicate, or
   * unreadable): the standby keeps whatever it has there, as the catch-up does.
   */
  private look(path: string): Looked {
    if (path === STATE_DIR || path.startsWith(`${STATE_DIR}/`)) return "kept";
    if (excludedPath(path, this.options.filters)) return "kept";
    // A name under a directory replaced by a symlink (a late event of the old one) is not in
    // the tree: never read through the link.
    for (const parent of parentsOf(path)) {
      if (!lstatOrUndefined(join(this.options.source, parent))?.isDirectory()) return "gone";
    }
    const absolute = join(this.options.source, path);
    try {
      const stat = lstatSync(fsPath(absolute));
      const mtime = Math.floor(stat.mtimeMs);
      if (stat.isDirectory()) return { type: "dir", path, mtime, mode: stat.mode & 0o7777, ino: stat.ino };
      if (stat.isSymbolicLink()) {
        const target = nameFromBytes(readlinkSync(fsPath(absolute), { encoding: "buffer" }));
        return { type: "symlink", path, mtime, target, ino: stat.ino };
      }
      if (!stat.isFile()) return "kept";
      const reason = fileFilterReason(path, stat.size, absolute, this.options.filters);
      if (reason) {
        this.reportBlocked(path, reason);
        return "kept";
      }
      this.blocked.delete(path);
      return { type: "file", path, size: stat.size, mtime, mode: stat.mode & 0o7777, ino: stat.ino };
    } catch (error) {
      if (isVanished(error)) {
        this.blocked.delete(path); // gone: the standby's older copy, if any, goes too
        return "gone";
      }
      if (isEntryProblem(error)) {
        this.emit({ event: "problem", path, reason: problemReason(error) });
        return "kept";
      }
      throw error;
    }
  }

  private reportBlocked(path: string, reason: string): void {
    if (!reason.startsWith("firewall") || this.blocked.get(path) === reason) return;
    this.blocked.set(path, reason);
    this.emit({ event: "blocked", path, reason });
  }

  /** Sends whatever makes the standby's `entry.path` what it is here (nothing when it already is). */
  private async sendPath(
    connection: FramedConnection,
    remote: RemoteTree,
    entry: LocalEntry,
    counters: Counters,
    how: { byContent: boolean; goneByHash?: Map<string, RemoteEntry>; catchingUp?: boolean },
  ): Promise<void> {
    const known = remote.get(entry.path);
    if (entry.type === "dir" && !this.watcher.isWatchedAs(entry.path, entry.ino)) {
      // Not watched, or watched on a directory that was renamed away: watch what is here,
      // and (outside a catch-up, whose scan covers it) compare what it holds.
      this.watchTree(entry.path);
      if (how.catchingUp !== true) {
        for (const child of this.subtreeOnBothSides(remote, entry.path)) this.markDirty(child);
      }
    }
    if (entry.type === "dir") {
      if (known?.type === "dir" && known.mode === entry.mode && known.mtime === entry.mtime) {
        if (known.ino !== entry.ino) remote.set({ ...known, ino: entry.ino });
        return;
      }
      const isNew = known?.type !== "dir";
      await connection.send(
        encodeJson(FrameType.Directory, { path: entry.path, mtime: entry.mtime, mode: entry.mode }),
      );
      if (isNew) remote.deleteUnder(entry.path);
      remote.set({ type: "dir", path: entry.path, mtime: entry.mtime, mode: entry.mode, ino: entry.ino });
      if (isNew && how.catchingUp !== true) {
        // A new directory: watched before it is listed, then its contents are sent.
        this.watchTree(entry.path);
        for (const child of this.subtreeOf(entry.path)) {
          const childEntry = this.look(child);
          if (typeof childEntry !== "string" && !remote.has(child))
            await this.sendPath(connection, remote, childEntry, counters, how);
        }
      }
      return;
    }
    if (entry.type === "symlink") {
      if (known?.type === "symlink" && known.target === entry.target && known.mtime === entry.mtime) return;
      await connection.send(
        encodeJson(FrameType.Symlink, { path: entry.path, mtime: entry.mtime, target: entry.target }),
      );
      remote.set({
        type: "symlink",
        path: entry.path,
        mtime: entry.mtime,
        target: entry.target,
        ino: entry.ino,
      });
      return;
    }
    const sameQuick = known?.type === "file" && known.size === entry.size && known.mtime === entry.mtime;
    // Another inode at this path than the one the standby's copy came from (a swap of two
    // files, an inode reused): size and mtime prove nothing, the content decides.
    const otherInode = known?.ino !== undefined && known.ino !== entry.ino;
    if (sameQuick && !how.byContent && !otherInode) {
      if (known.mode !== entry.mode) await this.sendMetadata(connection, remote, known, entry, counters);
      else if (known.ino !== entry.ino) remote.set({ ...known, ino: entry.ino });
      return;
    }
    const absolute = join(this.options.source, entry.path);
    try {
      if (entry.size <= INLINE_MAX) {
        const content = readSmallFile(absolute, this.scratch);
        if (content.length > INLINE_MAX || !this.unchangedSince(absolute, entry)) {
          this.markDirty(entry.path); // still being written: the next batch takes it
          return;
        }
        const sha256 = createHash("sha256").update(content).digest("hex");
        if (known?.type === "file" && known.sha256 === sha256) {
          await this.sendMetadata(connection, remote, known, entry, counters);
          return;
        }
        const renamed = how.goneByHash?.get(sha256);
        if (renamed && remote.get(renamed.path)?.type === "file" && !known) {
          how.goneByHash!.delete(sha256);
          await connection.send(encodeJson(FrameType.Rename, { from: renamed.path, to: entry.path }));
          remote.move(renamed.path, entry.path);
          counters.renamed++;
          const moved = remote.get(entry.path) as Extract<RemoteEntry, { type: "file" }>;
          await this.sendMetadata(connection, remote, moved, entry, counters);
          return;
        }
        const { path, mtime, mode } = entry;
        await sendSmallFile(connection, { path, size: content.length, mtime, mode, sha256 }, content);
        remote.set({ type: "file", path, size: content.length, mtime, mode, sha256, ino: entry.ino });
        counters.sent++;
        return;
      }
      const base = known?.type === "file" && known.chunks ? known : undefined;
      const sent = await sendLargeFile(connection, {
        path: entry.path,
        mtime: entry.mtime,
        mode: entry.mode,
        file: absolute,
        ...(base ? { base: { path: base.path, offsets: chunkOffsets(base.chunks!) } } : {}),
        zeros: true,
        abandon: true,
        chunkList: true,
        unchangedWhileRead: () => this.unchangedSince(absolute, entry),
      });
      const { path, mtime, mode } = entry;
      remote.set({
        type: "file",
        path,
        size: sent.size,
        mtime,
        mode,
        sha256: sent.sha256,
        ...(sent.chunks ? { chunks: sent.chunks } : {}),
        ino: entry.ino,
      });
      counters.sent++;
    } catch (error) {
      if (error instanceof AbandonedFile) {
        // The standby keeps its last good copy; a file still changing travels once it settles.
        if ((error.cause as { code?: string }).code === "ECHANGED") this.markDirty(entry.path);
        else this.emit({ event: "problem", path: entry.path, reason: problemReason(error.cause) });
        return;
      }
      if (isVanished(error)) return; // its removal is an event of its own
      if (isEntryProblem(error)) {
        this.emit({ event: "problem", path: entry.path, reason: problemReason(error) });
        return;
      }
      throw error;
    }
  }

  private async sendMetadata(
    connection: FramedConnection,
    remote: RemoteTree,
    known: Extract<RemoteEntry, { type: "file" }>,
    entry: Extract<LocalEntry, { type: "file" }>,
    counters: Counters,
  ): Promise<void> {
    if (known.mode !== entry.mode || known.mtime !== entry.mtime) {
      await connection.send(
        encodeJson(FrameType.Link, {
          path: entry.path,
          from: entry.path,
          mtime: entry.mtime,
          mode: entry.mode,
          sha256: known.sha256,
        }),
      );
      counters.linked++;
    }
    remote.set({ ...known, mtime: entry.mtime, mode: entry.mode, ino: entry.ino });
  }

  /** The file is still what `entry` saw (size and mtime): it did not change while it was read. */
  private unchangedSince(absolute: string, entry: { size: number; mtime: number }): boolean {
    const stat = lstatOrUndefined(absolute);
    return stat !== undefined && stat.size === entry.size && Math.floor(stat.mtimeMs) === entry.mtime;
  }
}

function underAny(path: string, roots: Set<string>): boolean {
  if (roots.size === 0) return false;
  for (let end = path.length; end > 0; end = path.lastIndexOf("/", end - 1)) {
    if (roots.has(path.slice(0, end))) return true;
  }
  return false;
}

function listNames(dir: string): string[] {
  return readdirSync(fsPath(dir), { encoding: "buffer" }).map(nameFromBytes);
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(fsPath(path));
  } catch {
    return undefined;
  }
}
