/**
 * The standby's writer: applies a primary's changes to a live tree that an application
 * serves while they arrive. Two promises hold for every change:
 *
 * - **Atomic per file.** A file is written whole under `.offsite/tmp/`, verified by its
 *   SHA-256, given its mode and mtime, fsynced, and only then renamed over its name, so a
 *   reader (or a crash) sees the old copy or the new one, never a half-written file.
 * - **Never outside the root.** Every path is checked (paths.ts) and may not name the
 *   standby's own `.offsite/`; every parent directory must be a real directory (lstat, no
 *   symlink: the application on the standby could plant one), and it is checked again
 *   right before the rename. Writes go to a name with rename(2), which replaces a link
 *   instead of following it.
 *
 * Durability is the caller's call: flush() fsyncs every directory a change touched and sets
 * the directories' mtimes last (writing into a directory changes its mtime), and only then
 * may the session acknowledge (Applied).
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  futimesSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ProtocolError } from "../protocol/frames.ts";
import { checkRelativePath, parentOf, parentsOf } from "../protocol/paths.ts";
import { fsPath } from "../protocol/byteNames.ts";
import type { FileHeader } from "../protocol/messages.ts";
import { LargeFileAssembly } from "../receiver/largeFileAssembly.ts";
import { executableKind, FIREWALL_HEAD_BYTES } from "../source/filters.ts";

/** The standby's own directory at the root of its tree: temporary files, state. Never replicated. */
export const STATE_DIR = ".offsite";

/**
 * The mode bits a standby sets: no setuid or setgid. Owners do not travel (the standby's
 * agent owns what it writes), so a set-id bit would make a file run as the agent's user.
 */
const STANDBY_MODE_BITS = 0o1777;

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;

/** What the standby knows of a file it wrote: the hash cache's entry (liveEntries.ts). */
export interface WrittenFile {
  path: string;
  size: number;
  mtime: number;
  mode: number;
  sha256: string;
  chunks?: [number, string][];
}

export interface LiveTreeOptions {
  /** The standby's own content firewall: executables and scripts by content are kept out. */
  firewall: boolean;
  /** After a file is in place (the hash cache learns it). */
  onWritten?: (file: WrittenFile) => void;
  /** After a path is removed or renamed away. */
  onRemoved?: (path: string) => void;
}

export class LiveTree {
  readonly root: string;
  private readonly tmp: string;
  private readonly options: LiveTreeOptions;
  private readonly assembly: LargeFileAssembly;
  private large: { path: string; mtime: number; mode: number } | undefined;
  /** Directories whose entries changed since the last flush: fsynced by it. */
  private readonly touched = new Set<string>();
  /**
   * The mtime of each directory before this batch first changed its entries: writing a file
   * aside and renaming it in changes the directory's mtime where the primary's edit in place
   * did not, so flush puts it back (unless the primary sent the directory's own).
   */
  private readonly mtimesBefore = new Map<string, number>();
  /** Directory metadata to set at flush, after every write into them. */
  private readonly directoryMetadata = new Map<string, { mtime: number; mode: number }>();
  /** Files the firewall stopped since the last flush. */
  private refused: { path: string; reason: string }[] = [];

  constructor(root: string, options: LiveTreeOptions) {
    this.root = root;
    this.options = options;
    this.tmp = join(root, STATE_DIR, "tmp");
    // The application on the standby can write its tree: .offsite must be a real directory
    // of ours (never a link it planted), or nothing is written through it.
    requireRealDirectory(join(root, STATE_DIR));
    // Left-overs of a killed standby are never visible in the tree: remove them.
    rmSync(this.tmp, { recursive: true, force: true });
    mkdirSync(this.tmp, { mode: 0o700 });
    const partial = join(root, STATE_DIR, "partial");
    if (lstatOrUndefined(partial)) requireRealDirectory(partial);
    this.assembly = new LargeFileAssembly(join(root, STATE_DIR, "partial"), (base) => {
      const file = this.existingFile(base);
      return { file, size: lstatSync(fsPath(file)).size };
    });
  }

  putFile(header: FileHeader, content: Buffer): void {
    this.requireNoLarge("File");
    const target = this.target(header.path);
    const actual = createHash("sha256").update(content).digest("hex");
    if (actual !== header.sha256 || content.length !== header.size) {
      throw new ProtocolError("hash-mismatch", `${header.path} arrived damaged (it hashes to ${actual})`);
    }
    if (this.stoppedByFirewall(header.path, content.subarray(0, FIREWALL_HEAD_BYTES))) return;
    const temporary = this.temporaryFile();
    const fd = openSync(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      for (let written = 0; written < content.length;) {
        written += writeSync(fd, content, written, content.length - written, written);
      }
      this.finishFile(fd, header.mode, header.mtime);
    } finally {
      closeSync(fd);
    }
    this.place(temporary, header.path, target);
    this.options.onWritten?.({ ...header });
  }

  begin(path: string, mtime: number, mode: number, base: string | undefined): void {
    this.requireNoLarge("Begin");
    this.target(path);
    if (base !== undefined) this.target(base);
    this.assembly.begin(path, mtime, mode, base, undefined);
    this.large = { path, mtime, mode };
  }

  appendData(bytes: Buffer): void {
    this.assembly.appendData(bytes);
  }
  appendCopy(offset: number, length: number, sha256: string): void {
    this.assembly.appendCopy(offset, length, sha256);
  }
  appendZeros(length: number): void {
    this.assembly.appendZeros(length);
  }
  abandon(): void {
    this.assembly.abandon();
    this.large = undefined;
  }

  end(size: number, sha256: string): void {
    const file = this.assembly.end(size, sha256);
    this.large = undefined;
    const head = Buffer.alloc(FIREWALL_HEAD_BYTES);
    const fd = openSync(file.data, O_RDONLY | O_NOFOLLOW);
    let readHead: number;
    try {
      readHead = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    if (this.stoppedByFirewall(file.path, head.subarray(0, readHead))) {
      this.assembly.remove();
      return;
    }
    const update = openSync(file.data, O_RDONLY | O_NOFOLLOW);
    try {
      this.finishFile(update, file.mode, file.mtime);
    } finally {
      closeSync(update);
    }
    this.place(file.data, file.path, this.target(file.path));
    this.assembly.remove();
    const { path, mtime, mode, chunks } = file;
    this.options.onWritten?.({ path, size, mtime, mode, sha256, chunks });
  }

  directory(path: string, mtime: number, mode: number): void {
    this.requireNoLarge("Directory");
    const target = this.target(path);
    const stat = lstatOrUndefined(target);
    if (stat && !stat.isDirectory()) this.removeAt(path, target);
    if (!stat?.isDirectory()) {
      this.beforeChangeIn(path);
      mkdirSync(fsPath(target), { mode: 0o700 });
      this.touch(path);
    }
    this.directoryMetadata.set(path, { mtime, mode });
  }

  symlink(path: string, linkTarget: string, mtime: number): void {
    this.requireNoLarge("Symlink");
    const target = this.target(path);
    const temporary = this.temporaryFile();
    symlinkSync(fsPath(linkTarget), temporary);
    lutimesSync(temporary, mtime / 1000, mtime / 1000);
    this.place(temporary, path, target);
    this.options.onRemoved?.(path);
  }

  /** Removes `path` (a directory with its contents); a path that is not there is fine. */
  delete(path: string): void {
    this.requireNoLarge("Delete");
    const target = this.target(path, false);
    if (target !== undefined && lstatOrUndefined(target)) this.removeAt(path, target);
  }

  /**
   * `path` gets the content of the standby's file `from`: its own path for a change of
   * mode or mtime only (set in place, on a descriptor), or another file (a copy, written
   * as any new file is). The content must hash to `sha256`, or the primary's view of the
   * standby is wrong: `bad-reference`.
   */
  link(path: string, from: string, mtime: number, mode: number, sha256: string): void {
    this.requireNoLarge("Link");
    const target = this.target(path);
    const source = this.existingFile(from);
    if (from === path) {
      const fd = openSync(fsPath(source), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      try {
        if (!fstatSync(fd).isFile()) throw notAFile(from);
        fchmodSync(fd, mode & STANDBY_MODE_BITS);
        futimesSync(fd, mtime / 1000, mtime / 1000);
      } finally {
        closeSync(fd);
      }
      return;
    }
    const temporary = this.temporaryFile();
    const out = openSync(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    const hash = createHash("sha256");
    let size = 0;
    try {
      const input = openSync(fsPath(source), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      try {
        if (!fstatSync(input).isFile()) throw notAFile(from);
        const buffer = Buffer.allocUnsafe(1024 * 1024);
        for (let read = readSync(input, buffer); read > 0; read = readSync(input, buffer)) {
          hash.update(buffer.subarray(0, read));
          for (let written = 0; written < read;) written += writeSync(out, buffer, written, read - written);
          size += read;
        }
      } finally {
        closeSync(input);
      }
      if (hash.digest("hex") !== sha256) {
        throw new ProtocolError(
          "bad-reference",
          `Link ${path} from ${from}: the standby's ${from} does not have that content`,
        );
      }
      this.finishFile(out, mode, mtime);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    } finally {
      closeSync(out);
    }
    this.place(temporary, path, target);
    this.options.onWritten?.({ path, size, mtime, mode, sha256 });
  }

  /** The standby's `from` (a file, a link, or a directory with its contents) is now at `to`. */
  rename(from: string, to: string): void {
    this.requireNoLarge("Rename");
    const source = this.target(from, false);
    const target = this.target(to);
    if (from === to || `${to}/`.startsWith(`${from}/`)) {
      throw new ProtocolError("bad-path", `cannot rename ${from} to ${to}, which is itself or inside it`);
    }
    const stat = source === undefined ? undefined : lstatOrUndefined(source);
    if (!stat || source === undefined) {
      throw new ProtocolError("bad-reference", `Rename from ${from}: the standby has nothing there`);
    }
    let moving = source;
    if (`${from}/`.startsWith(`${to}/`)) {
      // Onto its own ancestor (mv a/b t; rm -r a; mv t a): out of the way first, or removing
      // the ancestor would take it along.
      moving = this.temporaryFile();
      this.beforeChangeIn(from);
      renameSync(fsPath(source), moving);
    }
    const existing = lstatOrUndefined(target);
    // rename(2) replaces a file atomically, but not a directory with contents, nor across types.
    if (existing && (existing.isDirectory() || stat.isDirectory())) this.removeAt(to, target);
    this.checkParents(to);
    if (moving === source) this.checkParents(from);
    this.beforeChangeIn(from);
    this.beforeChangeIn(to);
    renameSync(fsPath(moving), fsPath(target));
    this.touchParentOf(from);
    this.touchParentOf(to);
    this.options.onRemoved?.(from);
  }

  /**
   * Makes every change since the last flush durable (files were fsynced before their
   * rename; here the directories that hold the renames), then sets directory metadata,
   * deepest first. Returns the files the firewall stopped since the last flush.
   */
  flush(): { path: string; reason: string }[] {
    this.requireNoLarge("Flush");
    const metadata = [...this.directoryMetadata].sort((a, b) => b[0].length - a[0].length);
    for (const [path, { mtime, mode }] of metadata) {
      const target = this.target(path, false);
      if (target === undefined) continue; // removed since, with a parent
      const fd = openOrUndefined(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (fd === undefined) continue; // deleted since (a later change in this batch)
      try {
        fchmodSync(fd, mode & STANDBY_MODE_BITS);
        futimesSync(fd, mtime / 1000, mtime / 1000);
      } finally {
        closeSync(fd);
      }
      this.touchParentOf(path);
    }
    // Directories whose entries this batch changed and whose own metadata did not come:
    // the mtime they had (children first, as setting it changes nothing above).
    const restore = [...this.mtimesBefore]
      .filter(([path]) => !this.directoryMetadata.has(path))
      .sort((a, b) => b[0].length - a[0].length);
    for (const [path, mtime] of restore) {
      const target = path === "" ? this.root : this.target(path, false);
      const fd =
        target === undefined ? undefined : openOrUndefined(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (fd === undefined) continue;
      try {
        futimesSync(fd, mtime / 1000, mtime / 1000);
      } finally {
        closeSync(fd);
      }
    }
    this.mtimesBefore.clear();
    this.directoryMetadata.clear();
    for (const path of this.touched) {
      const fd = openOrUndefined(
        path === "" ? this.root : join(this.root, path),
        O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
      );
      if (fd === undefined) continue;
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    this.touched.clear();
    const refused = this.refused;
    this.refused = [];
    return refused;
  }

  /** Drops a large file in progress (the session ended inside it). */
  close(): void {
    this.assembly.close();
    this.assembly.remove();
    this.large = undefined;
  }

  private stoppedByFirewall(path: string, head: Buffer): boolean {
    if (!this.options.firewall) return false;
    const kind = executableKind(head);
    if (!kind) return false;
    this.refused.push({ path, reason: kind === "script" ? "firewall-script" : "firewall-executable" });
    return true;
  }

  /** Sets a finished file's mode and mtime on its descriptor and makes its bytes durable. */
  private finishFile(fd: number, mode: number, mtime: number): void {
    fchmodSync(fd, mode & STANDBY_MODE_BITS);
    futimesSync(fd, mtime / 1000, mtime / 1000);
    fsyncSync(fd);
  }

  /** Renames a finished temporary file (or link) over `path`: readers see old or new, never half. */
  private place(temporary: string, path: string, target: string): void {
    this.checkParents(path);
    this.beforeChangeIn(path);
    if (lstatOrUndefined(target)?.isDirectory()) this.removeAt(path, target);
    renameSync(temporary, fsPath(target));
    this.touchParentOf(path);
  }

  private removeAt(path: string, target: string): void {
    this.checkParents(path);
    this.beforeChangeIn(path);
    // rm -r removes a link as a link and never follows one.
    rmSync(fsPath(target), { recursive: true, force: true });
    this.touchParentOf(path);
    this.options.onRemoved?.(path);
  }

  private temporaryFile(): string {
    return join(this.tmp, `${randomBytes(8).toString("hex")}.tmp`);
  }

  /** A safe path of the tree, outside the standby's own directory; returns where it is. */
  private target(path: string): string;
  private target(path: string, create: false): string | undefined;
  private target(path: string, create = true): string | undefined {
    checkRelativePath(path);
    if (path === STATE_DIR || path.startsWith(`${STATE_DIR}/`)) {
      throw new ProtocolError(
        "bad-path",
        `refused path ${JSON.stringify(path)}: ${STATE_DIR} is the standby's own`,
      );
    }
    // With `create` false (a Delete, a Rename's source, metadata), a missing parent is not
    // made: nothing can be there then.
    if (!this.checkParents(path, create)) return undefined;
    return join(this.root, path);
  }

  /** The standby's regular file at `path`, for a Copy or a Link to read. */
  private existingFile(path: string): string {
    const file = this.target(path, false);
    if (file === undefined || !lstatOrUndefined(file)?.isFile()) throw notAFile(path);
    return file;
  }

  /**
   * Every parent of `path` is a real directory (never a symlink); missing ones are made,
   * as a primary's Directory frames would have made them.
   */
  private checkParents(path: string, create = true): boolean {
    for (const parent of parentsOf(path)) {
      const absolute = join(this.root, parent);
      const stat = lstatOrUndefined(absolute);
      if (!stat) {
        if (!create) return false;
        this.beforeChangeIn(parent);
        mkdirSync(fsPath(absolute), { mode: 0o755 });
        this.touchParentOf(parent);
      } else if (!stat.isDirectory()) {
        throw new ProtocolError(
          "bad-path",
          `refused path ${JSON.stringify(path)}: its parent ${parent} is ${stat.isSymbolicLink() ? "a symbolic link" : "not a directory"} on the standby, which is never written through`,
        );
      }
    }
    return true;
  }

  /** Remembers the mtime of `path`'s directory before its entries first change in this batch. */
  private beforeChangeIn(path: string): void {
    const parent = parentOf(path) ?? "";
    if (this.mtimesBefore.has(parent)) return;
    const stat = lstatOrUndefined(parent === "" ? this.root : join(this.root, parent));
    if (stat?.isDirectory()) this.mtimesBefore.set(parent, stat.mtimeMs);
  }

  private touch(path: string): void {
    this.touched.add(path);
    this.touchParentOf(path);
  }

  private touchParentOf(path: string): void {
    this.touched.add(parentOf(path) ?? "");
  }

  private requireNoLarge(frame: string): void {
    if (this.large)
      throw new ProtocolError("unexpected-frame", `${frame} inside Begin..End of ${this.large.path}`);
  }
}

function requireRealDirectory(path: string): void {
  const stat = lstatOrUndefined(path);
  if (!stat?.isDirectory()) {
    throw new Error(
      `${path} is ${stat ? (stat.isSymbolicLink() ? "a symbolic link" : "not a directory") : "missing"}: ` +
        "the standby's own directory must be a real one (something on the standby replaced it); remove it and restart the standby",
    );
  }
}

function notAFile(path: string): ProtocolError {
  return new ProtocolError("bad-reference", `${path} is not a regular file on the standby`);
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(fsPath(path));
  } catch {
    return undefined;
  }
}

function openOrUndefined(path: string, flags: number): number | undefined {
  try {
    return openSync(fsPath(path), flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}
