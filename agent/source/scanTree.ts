/**
 * Walks the source tree: every directory, regular file and symlink under the root, with
 * the filters applied as it goes (an excluded directory is not descended into). lstat,
 * never stat: a symlink is recorded as a link and never followed out of the tree.
 * Synchronous on purpose — a walk is many tiny system calls, which the async API makes
 * several times slower (../shared/notes/performance.md).
 *
 * Names are sorted per directory and the walk is depth first, which yields exactly the
 * protocol's path order (a directory right before its contents) with no global sort.
 * The result is kept column-wise (a string per path, numbers in flat arrays) rather than
 * an object per entry: a million-file tree then costs about 100 bytes a file.
 */
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { excludedPath, type FilterOptions, type FilterReason, fileFilterReason } from "./filters.ts";

export type SourceEntry =
  | { type: "file"; path: string; size: number; mtime: number; mode: number }
  | { type: "dir"; path: string; mtime: number; mode: number }
  | { type: "symlink"; path: string; mtime: number; target: string };

const FILE = 0;
const DIR = 1;
const SYMLINK = 2;

/** The scanned entries, column-wise, in path order. Iterate it for SourceEntry objects. */
export class ScannedTree implements Iterable<SourceEntry> {
  readonly paths: string[] = [];
  private readonly types: number[] = [];
  private readonly sizes: number[] = [];
  private readonly mtimes: number[] = [];
  private readonly modes: number[] = [];
  private readonly targets = new Map<number, string>();
  fileCount = 0;
  fileBytes = 0;

  get length(): number {
    return this.paths.length;
  }

  add(entry: SourceEntry): void {
    const index = this.paths.length;
    this.paths.push(entry.path);
    this.mtimes.push(entry.mtime);
    if (entry.type === "file") {
      this.types.push(FILE);
      this.sizes.push(entry.size);
      this.modes.push(entry.mode);
      this.fileCount++;
      this.fileBytes += entry.size;
    } else if (entry.type === "dir") {
      this.types.push(DIR);
      this.sizes.push(0);
      this.modes.push(entry.mode);
    } else {
      this.types.push(SYMLINK);
      this.sizes.push(0);
      this.modes.push(0);
      this.targets.set(index, entry.target);
    }
  }

  entry(index: number): SourceEntry {
    const path = this.paths[index]!;
    const mtime = this.mtimes[index]!;
    switch (this.types[index]) {
      case FILE:
        return { type: "file", path, size: this.sizes[index]!, mtime, mode: this.modes[index]! };
      case DIR:
        return { type: "dir", path, mtime, mode: this.modes[index]! };
      default:
        return { type: "symlink", path, mtime, target: this.targets.get(index)! };
    }
  }

  *[Symbol.iterator](): Iterator<SourceEntry> {
    for (let i = 0; i < this.paths.length; i++) yield this.entry(i);
  }
}

export interface ScanResult {
  /** In path order, a directory before its contents. */
  entries: ScannedTree;
  filtered: { path: string; reason: FilterReason | "special-file" }[];
}

/** Code-unit order, which with a depth-first walk gives the protocol's path order. */
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function scanTree(root: string, filters: FilterOptions): ScanResult {
  const entries = new ScannedTree();
  const filtered: ScanResult["filtered"] = [];
  const walk = (prefix: string) => {
    const names = readdirSync(prefix ? join(root, prefix) : root).sort(byCodeUnit);
    for (const name of names) {
      const path = prefix ? `${prefix}/${name}` : name;
      const absolute = join(root, path);
      const stat = lstatSync(absolute);
      const mtime = Math.floor(stat.mtimeMs);
      if (stat.isDirectory()) {
        if (excludedPath(path, filters)) {
          filtered.push({ path, reason: "excluded" });
          continue;
        }
        entries.add({ type: "dir", path, mtime, mode: stat.mode & 0o7777 });
        walk(path);
      } else if (stat.isFile()) {
        const reason = fileFilterReason(path, stat.size, absolute, filters);
        if (reason) filtered.push({ path, reason });
        else entries.add({ type: "file", path, size: stat.size, mtime, mode: stat.mode & 0o7777 });
      } else if (stat.isSymbolicLink()) {
        if (excludedPath(path, filters)) filtered.push({ path, reason: "excluded" });
        else entries.add({ type: "symlink", path, mtime, target: readlinkSync(absolute) });
      } else {
        // Sockets, FIFOs and devices are not data to back up; they are reported, not sent.
        filtered.push({ path, reason: "special-file" });
      }
    }
  };
  walk("");
  return { entries, filtered };
}

/**
 * Whether reading a scanned file failed because it is gone: deleted (ENOENT) or a
 * directory on its path replaced (ENOTDIR) since the scan. Live data does that; callers
 * report such a file instead of failing the job.
 */
export function isVanished(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
