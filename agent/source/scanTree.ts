/**
 * Walks the source tree: every directory, regular file and symlink under the root, with
 * the filters applied as it goes (an excluded directory is not descended into). lstat,
 * never stat: a symlink is recorded as a link and never followed out of the tree.
 * Synchronous on purpose — a walk is many tiny system calls, which the async API makes
 * several times slower (../shared/notes/performance.md).
 *
 * Names are bytes, kept in byteNames.ts's lossless string form; every fs call takes
 * fsPath(). Names are sorted per directory and the walk is depth first, which yields exactly the
 * protocol's path order (a directory right before its contents) with no global sort.
 * The result is kept column-wise (a string per path, numbers in typed blocks: columns.ts)
 * rather than an object per entry: a million-file tree then costs about 70 bytes a file.
 */
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { fsPath, hasEscapedBytes, nameFromBytes } from "../protocol/byteNames.ts";
import { join } from "node:path";
import { getSystemErrorMessage } from "node:util";
import { NumberColumn, StringColumn } from "./columns.ts";
import { excludedPath, type FilterOptions, type FilterReason, fileFilterReason } from "./filters.ts";

export type SourceEntry =
  | {
      type: "file";
      path: string;
      size: number;
      mtime: number;
      mode: number;
      /** The first path (in path order) of the same inode, when this is a later hard link to it. */
      hardLinkOf?: string;
    }
  | { type: "dir"; path: string; mtime: number; mode: number }
  | { type: "symlink"; path: string; mtime: number; target: string };

const FILE = 0;
const DIR = 1;
const SYMLINK = 2;

/** The scanned entries, column-wise, in path order. Iterate it for SourceEntry objects. */
export class ScannedTree implements Iterable<SourceEntry> {
  readonly paths = new StringColumn();
  private readonly types = new NumberColumn((n) => new Uint8Array(n));
  private readonly sizes = new NumberColumn((n) => new Float64Array(n));
  private readonly mtimes = new NumberColumn((n) => new Float64Array(n));
  private readonly modes = new NumberColumn((n) => new Uint16Array(n));
  private readonly targets = new Map<number, string>();
  private readonly hardLinks = new Map<number, string>();
  /** Inode numbers, where the scan knew them (the replicator tracks renames by inode). */
  private readonly inodes = new NumberColumn((n) => new Float64Array(n));
  fileCount = 0;
  fileBytes = 0;

  get length(): number {
    return this.paths.length;
  }

  add(entry: SourceEntry, ino = 0): void {
    const index = this.paths.length;
    this.paths.push(entry.path);
    this.inodes.push(ino);
    this.mtimes.push(entry.mtime);
    if (entry.type === "file") {
      this.types.push(FILE);
      this.sizes.push(entry.size);
      this.modes.push(entry.mode);
      this.fileCount++;
      this.fileBytes += entry.size;
      if (entry.hardLinkOf !== undefined) this.hardLinks.set(index, entry.hardLinkOf);
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

  /** The inode of entry `index`, or 0 when it was added without one. */
  inodeOf(index: number): number {
    return this.inodes.at(index);
  }

  entry(index: number): SourceEntry {
    const path = this.paths.at(index);
    const mtime = this.mtimes.at(index);
    switch (this.types.at(index)) {
      case FILE: {
        const hardLinkOf = this.hardLinks.get(index);
        const file = {
          type: "file",
          path,
          size: this.sizes.at(index),
          mtime,
          mode: this.modes.at(index),
        } as const;
        return hardLinkOf === undefined ? file : { ...file, hardLinkOf };
      }
      case DIR:
        return { type: "dir", path, mtime, mode: this.modes.at(index) };
      default:
        return { type: "symlink", path, mtime, target: this.targets.get(index)! };
    }
  }

  *[Symbol.iterator](): Iterator<SourceEntry> {
    for (let i = 0; i < this.paths.length; i++) yield this.entry(i);
  }
}

/**
 * An entry the job could not read: its path (relative to the root) and why. The job goes
 * on without it and is partial (PROTOCOL.md, "Sessions"): the receiver keeps whatever it
 * had at `path` and, for an entry the scan could not look at or a directory it could not
 * list, under it.
 */
export interface EntryProblem {
  path: string;
  reason: string;
}

export interface ScanResult {
  /** In path order, a directory before its contents. */
  entries: ScannedTree;
  filtered: { path: string; reason: FilterReason | "special-file" }[];
  /**
   * Entries that could not be read: a directory that could not be listed (the directory
   * itself is in `entries`, its contents are not), an entry that could not be looked at
   * (lstat) or whose link or first bytes (the firewall) could not be read. Nothing under
   * these paths is known; see `coveredBy`.
   */
  problems: EntryProblem[];
  /** Entries the directory listing named that were gone when they were looked at. */
  vanished: string[];
}

/** Code-unit order, which with a depth-first walk gives the protocol's path order. */
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Walks `root`. Only the root itself must be listable (otherwise nothing is backed up and
 * this throws); any other entry that cannot be read for a reason of its own (isEntryProblem)
 * is reported in `problems` and the walk goes on. An excluded path is never touched.
 */
export function scanTree(root: string, filters: FilterOptions): ScanResult {
  const entries = new ScannedTree();
  const filtered: ScanResult["filtered"] = [];
  const problems: EntryProblem[] = [];
  const vanished: string[] = [];
  // Files with more than one name: the first path of each inode, by device and inode.
  const firstNameOf = new Map<string, string>();
  const walk = (prefix: string, names: string[]) => {
    names.sort(byCodeUnit);
    for (const name of names) {
      const path = prefix ? `${prefix}/${name}` : name;
      // Excluded before it is looked at: excluding an unreadable entry silences it.
      if (excludedPath(path, filters)) {
        filtered.push({ path, reason: "excluded" });
        continue;
      }
      const absolute = join(root, path);
      let children: string[] | undefined;
      try {
        const stat = lstatSync(fsPath(absolute));
        const mtime = Math.floor(stat.mtimeMs);
        if (stat.isDirectory()) {
          // Listed before the entry is added, so a directory that is gone is left out whole;
          // one that cannot be listed is kept, as a directory whose contents are unknown.
          try {
            children = listNames(absolute);
          } catch (error) {
            if (!isEntryProblem(error)) throw error;
            problems.push({ path, reason: problemReason(error) });
          }
          entries.add({ type: "dir", path, mtime, mode: stat.mode & 0o7777 }, stat.ino);
        } else if (stat.isFile()) {
          const reason = fileFilterReason(path, stat.size, absolute, filters);
          if (reason) filtered.push({ path, reason });
          else {
            const file = { type: "file", path, size: stat.size, mtime, mode: stat.mode & 0o7777 } as const;
            if (stat.nlink > 1) {
              const inode = `${stat.dev}:${stat.ino}`;
              const first = firstNameOf.get(inode);
              if (first === undefined) firstNameOf.set(inode, path);
              entries.add(first === undefined ? file : { ...file, hardLinkOf: first }, stat.ino);
            } else entries.add(file, stat.ino);
          }
        } else if (stat.isSymbolicLink()) {
          const target = nameFromBytes(readlinkSync(fsPath(absolute), { encoding: "buffer" }));
          entries.add({ type: "symlink", path, mtime, target }, stat.ino);
        } else {
          // Sockets, FIFOs and devices are not data to back up; they are reported, not sent.
          filtered.push({ path, reason: "special-file" });
        }
      } catch (error) {
        if (isVanished(error)) vanished.push(path);
        else if (isEntryProblem(error)) problems.push({ path, reason: problemReason(error) });
        else throw error;
      }
      if (children) walk(path, children);
    }
  };
  walk("", listNames(root));
  return { entries, filtered, problems, vanished };
}

/**
 * A directory's names in the agent's lossless form (byteNames.ts). Listed as strings first
 * (the fast path); a name that is not UTF-8 shows there as U+FFFD, and only then is the
 * directory listed again as bytes.
 */
function listNames(dir: string): string[] {
  const path = fsPath(dir);
  const names = readdirSync(path);
  if (!names.some((name) => name.includes("\ufffd"))) return names;
  return readdirSync(path, { encoding: "buffer" }).map(nameFromBytes);
}

/**
 * The scan for a receiver of protocol version 1, which cannot store a name that is not
 * UTF-8 (PROTOCOL.md, "Versions"): such entries, and a symlink whose target is not UTF-8,
 * become problems (the job is partial, and says why) instead of being sent wrong.
 */
export function withoutByteNames(scan: ScanResult, protocolVersion: number): ScanResult {
  const reason =
    `its name or link target is not UTF-8, which this receiver (protocol version ${protocolVersion}) ` +
    "cannot store; upgrade the receiver to back it up";
  const kept = new ScannedTree();
  const problems = [...scan.problems];
  for (const entry of scan.entries) {
    const escaped =
      hasEscapedBytes(entry.path) || (entry.type === "symlink" && hasEscapedBytes(entry.target));
    // Only the outermost: what is under it is covered by it (coveredBy).
    if (!escaped) kept.add(entry);
    else if (!problems.some((p) => entry.path.startsWith(`${p.path}/`)))
      problems.push({ path: entry.path, reason });
  }
  return { ...scan, entries: kept, problems };
}

/**
 * Whether `path` is one of the problem paths or under one: what the job knows nothing
 * about, so the receiver's entries there must be kept, not deleted or reported missing.
 */
export function coveredBy(problems: readonly EntryProblem[]): (path: string) => boolean {
  const roots = new Set(problems.map((problem) => problem.path));
  return (path) => {
    if (roots.size === 0) return false;
    for (let end = path.length; end > 0; end = path.lastIndexOf("/", end - 1)) {
      if (roots.has(end === path.length ? path : path.slice(0, end))) return true;
    }
    return false;
  };
}

/**
 * Error codes that concern one entry, not the job: permission, I/O error, a link or a
 * special file swapped in (ELOOP, EFTYPE: sendTree.ts's openRegularFile), a name the kernel
 * cannot take whole (ENAMETOOLONG), a stale NFS handle. Anything else (EMFILE, ENOMEM, a
 * bug) fails the job: the next entry would fail the same way.
 */
const ENTRY_PROBLEMS = new Set([
  "EACCES",
  "EPERM",
  "EIO",
  "ELOOP",
  "EFTYPE",
  "ENAMETOOLONG",
  "ENXIO",
  "ENODEV",
  "EOVERFLOW",
  "EFBIG",
  "EINVAL",
  "ESTALE",
  "EAGAIN",
]);

export function isEntryProblem(error: unknown): boolean {
  return ENTRY_PROBLEMS.has((error as NodeJS.ErrnoException).code ?? "");
}

/** Why, without the path (reported beside it): "permission denied (EACCES, scandir)". */
export function problemReason(error: unknown): string {
  const { code, errno, syscall } = error as NodeJS.ErrnoException;
  if (code === "ELOOP" && errno === undefined) {
    return "replaced by a symbolic link since the scan, which is not read through (ELOOP)";
  }
  if (code === "EFTYPE") return "no longer a regular file since the scan (EFTYPE)";
  const description = errno !== undefined ? getSystemErrorMessage(errno) : (error as Error).message;
  return `${description} (${[code, syscall].filter(Boolean).join(", ")})`;
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
