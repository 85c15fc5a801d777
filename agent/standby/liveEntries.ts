/**
 * What the standby has, as Entries for a primary that (re)connects: its live tree scanned,
 * every file with its SHA-256 (and, for a large one, its chunk list, so the primary sends
 * only changed chunks). Hashing a whole tree at every reconnect would cost as much as
 * copying it, so hashes are cached in `.offsite/hashes.json`, each trusted only while the
 * file's inode, size, mtime and ctime are what they were when it was hashed (ctime cannot
 * be set from user space: any write or chmod moves it).
 */
import { closeSync, constants, lstatSync, openSync, renameSync, writeSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fsPath } from "../protocol/byteNames.ts";
import { INLINE_MAX, type ManifestEntry } from "../protocol/messages.ts";
import { scanTree } from "../source/scanTree.ts";
import { NO_FILTERS } from "../source/filters.ts";
import { chunkFileInSlices } from "../chunking/fileChunks.ts";
import { hashFile } from "../source/hashFile.ts";
import { STATE_DIR, type WrittenFile } from "./liveTree.ts";
import { TimeSlice } from "../timeSlice.ts";
import { PeerError } from "../protocol/connection.ts";

interface CachedHash {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  sha256: string;
  chunks?: [number, string][];
}

export class LiveEntries {
  private readonly root: string;
  private readonly file: string;
  private cache = new Map<string, CachedHash>();
  private dirty = false;

  constructor(root: string) {
    this.root = root;
    this.file = join(root, STATE_DIR, "hashes.json");
    try {
      const saved = JSON.parse(readFileSync(this.file, "utf8")) as Record<string, CachedHash>;
      this.cache = new Map(Object.entries(saved));
    } catch {
      // No cache yet, or a torn one: everything is hashed once.
    }
  }

  /**
   * The live tree now, in path order, without the standby's own directory. Hashing what the
   * cache lacks can take minutes on a large tree: it runs in slices of the event loop, and
   * stops (throws) once `wanted` says the session asking is over.
   */
  async scan(
    wanted: () => boolean = () => true,
  ): Promise<{ entries: ManifestEntry[]; problems: { path: string; reason: string }[] }> {
    const scanned = scanTree(this.root, { ...NO_FILTERS, exclude: [STATE_DIR] });
    const entries: ManifestEntry[] = [];
    const seen = new Set<string>();
    const slice = new TimeSlice();
    for (const entry of scanned.entries) {
      if (entry.type !== "file") {
        entries.push(entry);
        continue;
      }
      await slice.yieldIfSpent();
      this.stopUnless(wanted);
      const absolute = join(this.root, entry.path);
      try {
        const hashed = await this.hashOf(entry.path, absolute, slice, wanted);
        seen.add(entry.path);
        const { path, size, mtime, mode } = entry;
        entries.push({
          type: "file",
          path,
          size,
          mtime,
          mode,
          sha256: hashed.sha256,
          ...(hashed.chunks ? { chunks: hashed.chunks } : {}),
        });
      } catch (error) {
        if (error instanceof PeerError) throw error;
        // Gone or unreadable since the scan: the primary sends it again.
      }
    }
    for (const path of this.cache.keys()) {
      if (!seen.has(path)) {
        this.cache.delete(path);
        this.dirty = true;
      }
    }
    this.save();
    return { entries, problems: scanned.problems };
  }

  /** The standby wrote this file itself: its hash is known without reading it again. */
  written(file: WrittenFile): void {
    const stat = lstatOrUndefined(join(this.root, file.path));
    if (!stat?.isFile()) return;
    this.cache.set(file.path, {
      ino: stat.ino,
      size: stat.size,
      mtimeMs: stat.mtimeMs,
      ctimeMs: stat.ctimeMs,
      sha256: file.sha256,
      ...(file.chunks ? { chunks: file.chunks } : {}),
    });
    this.dirty = true;
  }

  removed(path: string): void {
    if (this.cache.delete(path)) this.dirty = true;
    const prefix = `${path}/`;
    for (const key of this.cache.keys()) {
      if (key.startsWith(prefix)) {
        this.cache.delete(key);
        this.dirty = true;
      }
    }
  }

  /** Writes the cache (atomically) when it changed. */
  save(): void {
    if (!this.dirty) return;
    const temporary = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(
      temporary,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      writeSync(fd, JSON.stringify(Object.fromEntries(this.cache)));
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.file);
    this.dirty = false;
  }

  /** Throws (as the peer gone) once the session asking is over, after saving what was hashed. */
  private stopUnless(wanted: () => boolean): void {
    if (wanted()) return;
    this.save(); // what was hashed so far is not hashed again
    throw new PeerError("connection-closed", "the session ended while the standby listed its tree");
  }

  private async hashOf(
    path: string,
    absolute: string,
    slice: TimeSlice,
    wanted: () => boolean,
  ): Promise<CachedHash> {
    const stat = lstatSync(fsPath(absolute));
    const cached = this.cache.get(path);
    if (
      cached &&
      cached.ino === stat.ino &&
      cached.size === stat.size &&
      cached.mtimeMs === stat.mtimeMs &&
      cached.ctimeMs === stat.ctimeMs &&
      (stat.size <= INLINE_MAX || cached.chunks !== undefined)
    ) {
      return cached;
    }
    let hashed: CachedHash;
    if (stat.size <= INLINE_MAX) {
      hashed = { ...identity(stat), sha256: hashFile(absolute, stat.size) };
    } else {
      const chunks: [number, string][] = [];
      const whole = await chunkFileInSlices(
        absolute,
        (chunk) => chunks.push([chunk.length, chunk.hash]),
        slice,
        () => this.stopUnless(wanted),
      );
      hashed = { ...identity(stat), size: whole.size, sha256: whole.sha256, chunks };
    }
    this.cache.set(path, hashed);
    this.dirty = true;
    return hashed;
  }
}

function identity(stat: { ino: number; size: number; mtimeMs: number; ctimeMs: number }) {
  return { ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs };
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(fsPath(path));
  } catch {
    return undefined;
  }
}
