/**
 * `offsite restore`: brings a version back into a directory. Every file is written to a
 * temporary file of its own, verified against the SHA-256 the receiver sent, given its
 * mode and mtime through its descriptor, then renamed into place. Symlinks are created
 * after all files, directories get their metadata last.
 *
 * The subtle point is that the stream, and the destination, are not trusted: a hostile or
 * tampered receiver may send `Directory x` and then `Symlink x → /etc`, and the destination
 * may hold links of its own. So nothing here follows a link it did not make:
 *
 * - the stream must be in path order with each path once, and every entry must sit in a
 *   directory the stream sent before (`inconsistent-tree` otherwise), so a path cannot be
 *   a directory and then a symlink, nor a symlink with contents;
 * - every directory restore makes (or finds in the destination) is remembered by device
 *   and inode, and each parent of a path is checked to still be that directory before
 *   anything is written under it;
 * - metadata is set through descriptors: a file's on its temporary file, a directory's on
 *   a descriptor opened with O_DIRECTORY | O_NOFOLLOW whose inode must be the one restore
 *   made, a symlink's with lutimes;
 * - temporary names are random and created with O_EXCL, so they never replace or collide
 *   with a file of the user's, and each temporary file's descriptor is closed exactly once.
 *
 * The destination may hold an older tree: every entry of the version replaces what is at
 * its path (a file, a link, a directory of another type), and directories already there
 * are kept and made writable for the restore (their own mode is set at the end). With
 * `deleteExtra`, what the version does not hold is removed afterwards (rsync --delete),
 * walking only directories restore itself verified, removing links as links.
 */
import { createHash, randomBytes, type Hash } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  ftruncateSync,
  fstatSync,
  linkSync,
  fsyncSync,
  futimesSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { openSession, type Endpoint } from "../client/openSession.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import { checkRelativePath, comparePaths, parentOf, parentsOf } from "../protocol/paths.ts";
import { fsPath, nameFromBytes } from "../protocol/byteNames.ts";
import { hashZeros } from "../chunking/zeros.ts";
import { excludedPath, fileFilterReason, type FilterOptions } from "../source/filters.ts";

export interface RestoreOptions {
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  version?: string;
  destination: string;
  /** Remove entries under the destination that the version does not hold. */
  deleteExtra?: boolean;
  /**
   * With deleteExtra: the filters the source's backups run with. An extra entry they leave
   * out (excluded, or stopped by the firewall) was never in any version, so it is kept, as
   * rsync --delete keeps excluded files: a restore must not wipe a cache or the scripts the
   * firewall kept at home.
   */
  keepFiltered?: FilterOptions;
  /** After each file written: the files and bytes so far (the stream does not say how many come). */
  onProgress?: (progress: { filesDone: number; bytesDone: number }) => void;
  /** Aborting it ends the session. */
  signal?: AbortSignal;
}

export interface RestoreReport {
  version: string;
  files: number;
  bytes: number;
  directories: number;
  symlinks: number;
  /** With deleteExtra: the files, links and other non-directories removed (with their directories). */
  deleted: number;
}

export async function restoreJob(options: RestoreOptions): Promise<RestoreReport> {
  const destination = resolve(options.destination);
  mkdirSync(destination, { recursive: true });
  const session = await openSession(options.endpoint, {
    role: "restore",
    site: options.site,
    source: options.sourceId,
    ...(options.version ? { version: options.version } : {}),
    signal: options.signal,
  });
  const { connection } = session;
  const report: RestoreReport = {
    version: session.welcome.base!,
    files: 0,
    bytes: 0,
    directories: 0,
    symlinks: 0,
    deleted: 0,
  };
  const progress = () => options.onProgress?.({ filesDone: report.files, bytesDone: report.bytes });
  const tree = new RestoredTree(destination);
  try {
    for (;;) {
      const message = await connection.next();
      if (message.type === FrameType.Commit) {
        tree.requireNoFile("Commit");
        break;
      }
      switch (message.type) {
        case FrameType.Directory:
          tree.directory(message.path, message.mtime, message.mode);
          report.directories++;
          break;
        case FrameType.Symlink:
          tree.symlink(message.path, message.target, message.mtime);
          break;
        case FrameType.File: {
          const { header, content } = message;
          tree.begin(header.path, header.mtime, header.mode);
          tree.append(content);
          tree.end(header.size, header.sha256);
          report.files++;
          report.bytes += content.length;
          progress();
          break;
        }
        case FrameType.Begin:
          tree.begin(message.path, message.mtime, message.mode);
          break;
        case FrameType.Data:
          tree.append(message.bytes);
          break;
        case FrameType.Zeros:
          tree.appendZeros(message.length);
          break;
        case FrameType.HardLink:
          tree.hardLink(message.path, message.to);
          report.files++;
          break;
        case FrameType.End:
          tree.end(message.size, message.sha256);
          report.files++;
          report.bytes += message.size;
          progress();
          break;
        default:
          throw new ProtocolError("unexpected-frame", `frame ${message.type} has no place in a restore`);
      }
    }
    if (options.deleteExtra) report.deleted = tree.removeExtra(options.keepFiltered);
    report.symlinks = tree.finish();
    return report;
  } catch (error) {
    const failure = restoreFailure(error, destination);
    // Tell the receiver why we stop (it logs it); a PeerError came from the receiver itself.
    if (failure instanceof ProtocolError) await connection.abort(failure.code, failure.message);
    throw failure;
  } finally {
    tree.discardFile();
    await connection.close();
  }
}

/** A path the kernel cannot take (too long under this destination) is a bad path, not an internal error. */
function restoreFailure(error: unknown, destination: string): unknown {
  if ((error as NodeJS.ErrnoException).code === "ENAMETOOLONG") {
    return new ProtocolError(
      "bad-path",
      `a path is too long for the file system once under ${destination} (${(error as Error).message}); ` +
        "restore into a directory with a shorter path",
    );
  }
  return error;
}

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = constants;

interface Identity {
  dev: number;
  ino: number;
}

interface RestoredDirectory extends Identity {
  mtime: number;
  mode: number;
}

interface OpenFile {
  path: string;
  target: string;
  temporary: string;
  /** Undefined once closed: every path out closes it exactly once. */
  fd: number | undefined;
  mtime: number;
  mode: number;
  hash: Hash;
  size: number;
}

/** What a restore has written into its destination, and the checks that keep it there. */
class RestoredTree {
  private readonly root: string;
  /** Directories of the stream, by path, in path order: the inode restore made, and the metadata to set last. */
  private readonly directories = new Map<string, RestoredDirectory>();
  /** Every path of the stream (what deleteExtra keeps). */
  private readonly admitted = new Set<string>();
  /** Files this restore wrote, by path: what a HardLink may name. */
  private readonly files = new Map<string, Identity>();
  private readonly symlinks: { path: string; target: string; mtime: number }[] = [];
  /** The previous entry's path: the stream is in path order, each path once. */
  private previous: string | undefined;
  private file: OpenFile | undefined;

  constructor(root: string) {
    this.root = root;
  }

  directory(path: string, mtime: number, mode: number): void {
    const target = this.admit(path);
    let stat = lstatOrUndefined(target);
    if (stat && !stat.isDirectory()) {
      // The destination held a file or a link here: it is replaced, never followed.
      unlinkSync(fsPath(target));
      stat = undefined;
    }
    if (!stat) {
      // Private until its own mode is set at the end.
      mkdirSync(fsPath(target), { mode: 0o700 });
      stat = lstatSync(fsPath(target));
    } else if ((stat.mode & 0o700) !== 0o700) {
      // One of an older tree (perhaps restored read-only before): writable until finish()
      // sets the version's mode, through a descriptor that cannot follow a link.
      const fd = openSync(fsPath(target), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      try {
        if (!sameInode(fstatSync(fd), stat)) throw replaced(path, this.root);
        fchmodSync(fd, (stat.mode & 0o7777) | 0o700);
      } finally {
        closeSync(fd);
      }
    }
    this.directories.set(path, { dev: stat.dev, ino: stat.ino, mtime, mode });
  }

  symlink(path: string, target: string, mtime: number): void {
    this.admit(path);
    // The schema refuses these too; symlink(2) could not take them.
    if (target.length === 0 || target.includes("\0")) {
      throw new ProtocolError(
        "bad-message",
        `the symlink ${path} has an empty target or one with a NUL byte`,
      );
    }
    this.symlinks.push({ path, target, mtime });
  }

  begin(path: string, mtime: number, mode: number): void {
    const target = this.admit(path);
    const dir = dirname(target);
    for (;;) {
      const temporary = join(dir, `.offsite-restore-${randomBytes(8).toString("hex")}.tmp`);
      let fd: number;
      try {
        fd = openSync(fsPath(temporary), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") continue; // the user's file: another name
        throw error;
      }
      this.file = { path, target, temporary, fd, mtime, mode, hash: createHash("sha256"), size: 0 };
      return;
    }
  }

  append(bytes: Buffer): void {
    const file = this.requireFile("Data");
    // At the file's own offset, not the descriptor's: a hole (appendZeros) moves it on.
    for (let written = 0; written < bytes.length;) {
      written += writeSync(file.fd!, bytes, written, bytes.length - written, file.size + written);
    }
    file.hash.update(bytes);
    file.size += bytes.length;
  }

  /** A run of zeros, left as a hole: nothing is written, End sets the length. */
  appendZeros(length: number): void {
    const file = this.requireFile("Zeros");
    hashZeros(file.hash, length);
    file.size += length;
  }

  /** Verifies the file, sets its metadata on its descriptor, and renames it into place. */
  end(size: number, sha256: string): void {
    const file = this.requireFile("End");
    const actual = file.hash.digest("hex");
    if (actual !== sha256 || file.size !== size) {
      throw new ProtocolError(
        "hash-mismatch",
        `${file.path} arrived damaged (${file.size} bytes hashing to ${actual}; ${size} bytes, ${sha256} declared)`,
      );
    }
    const fd = file.fd!;
    ftruncateSync(fd, file.size); // a file that ends in a hole gets its length
    const identity = fstatSync(fd); // for hard links to it (renaming keeps the inode)
    fchmodSync(fd, file.mode & 0o7777);
    futimesSync(fd, file.mtime / 1000, file.mtime / 1000);
    fsyncSync(fd);
    file.fd = undefined;
    closeSync(fd);
    this.checkParents(file.path);
    if (lstatOrUndefined(file.target)?.isDirectory()) rmSync(fsPath(file.target), { recursive: true });
    renameSync(fsPath(file.temporary), fsPath(file.target));
    this.files.set(file.path, { dev: identity.dev, ino: identity.ino });
    this.file = undefined;
  }

  /**
   * `path` is another name of `to`, a file this restore wrote: linked to it, after checking
   * that `to` is still the very file restore made there (a hostile stream cannot make it
   * link anything else, inside the target or out).
   */
  hardLink(path: string, to: string): void {
    const target = this.admit(path);
    checkRelativePath(to);
    const made = this.files.get(to);
    const existing = lstatOrUndefined(join(this.root, to));
    if (!made || !existing?.isFile() || !sameInode(existing, made)) {
      throw new ProtocolError(
        "bad-reference",
        `${path}: ${to} is not a file this restore wrote, to hard-link to`,
      );
    }
    this.checkParents(to);
    const stat = lstatOrUndefined(target);
    if (stat?.isDirectory()) rmSync(fsPath(target), { recursive: true });
    else if (stat) unlinkSync(fsPath(target));
    linkSync(fsPath(join(this.root, to)), fsPath(target));
  }

  /**
   * Removes every entry under the root and under each directory of the stream that the
   * stream did not send (deleteExtra). Only directories restore verified are listed; an
   * extra directory goes with its contents, walked by lstat, so a link is removed as a
   * link and nothing outside the destination is reached. Returns the non-directories removed.
   */
  removeExtra(keepFiltered?: FilterOptions): number {
    let removed = 0;
    const kept = (path: string) =>
      keepFiltered !== undefined && leftOutByFilters(path, join(this.root, path), keepFiltered);
    for (const dir of [undefined, ...this.directories.keys()]) {
      const absolute = dir === undefined ? this.root : join(this.root, dir);
      if (dir !== undefined) {
        this.checkParents(dir);
        const stat = lstatOrUndefined(absolute);
        if (!stat?.isDirectory() || !sameInode(stat, this.directories.get(dir)!))
          throw replaced(dir, this.root);
      }
      for (const raw of readdirSync(fsPath(absolute), { encoding: "buffer" })) {
        const name = nameFromBytes(raw);
        const path = dir === undefined ? name : `${dir}/${name}`;
        if (!this.admitted.has(path)) removed += removeEntry(this.root, path, kept);
      }
    }
    return removed;
  }

  /** Frames that end the stream or start an entry must not come inside Begin..End. */
  requireNoFile(frame: string): void {
    if (this.file) {
      throw new ProtocolError("unexpected-frame", `${frame} inside Begin..End of ${this.file.path}`);
    }
  }

  /** Creates the symlinks, then sets every directory's metadata, deepest first; returns the symlinks made. */
  finish(): number {
    for (const link of this.symlinks) {
      const target = join(this.root, link.path);
      this.checkParents(link.path);
      const existing = lstatOrUndefined(target);
      if (existing?.isDirectory()) rmSync(fsPath(target), { recursive: true });
      else if (existing) unlinkSync(fsPath(target));
      symlinkSync(fsPath(link.target), fsPath(target));
      lutimesSync(fsPath(target), link.mtime / 1000, link.mtime / 1000);
    }
    // Last, because writing into a directory changes its mtime; children before parents.
    for (const [path, dir] of [...this.directories].reverse()) {
      const fd = openSync(fsPath(join(this.root, path)), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      try {
        if (!sameInode(fstatSync(fd), dir)) throw replaced(path, this.root);
        fchmodSync(fd, dir.mode & 0o7777);
        futimesSync(fd, dir.mtime / 1000, dir.mtime / 1000);
      } finally {
        closeSync(fd);
      }
    }
    return this.symlinks.length;
  }

  /** Closes and removes a file still in progress (a failed restore). Never throws. */
  discardFile(): void {
    const file = this.file;
    if (!file) return;
    this.file = undefined;
    if (file.fd !== undefined) {
      const fd = file.fd;
      file.fd = undefined;
      try {
        closeSync(fd);
      } catch {
        // Nothing more to do with it.
      }
    }
    rmSync(fsPath(file.temporary), { force: true });
  }

  /**
   * Admits the stream's next entry: a safe path, after the previous one in path order,
   * inside a directory the stream sent, whose parents are still the directories restore
   * made. Returns where it goes.
   */
  private admit(path: string): string {
    checkRelativePath(path);
    this.requireNoFile("a new entry");
    if (this.previous !== undefined && comparePaths(path, this.previous) <= 0) {
      throw new ProtocolError(
        "inconsistent-tree",
        `${JSON.stringify(path)} came after ${JSON.stringify(this.previous)}: a restore sends each path once, in path order`,
      );
    }
    this.previous = path;
    this.admitted.add(path);
    const parent = parentOf(path);
    if (parent !== undefined && !this.directories.has(parent)) {
      throw new ProtocolError(
        "inconsistent-tree",
        `${JSON.stringify(path)} is not inside a directory of this version (${JSON.stringify(parent)} was not sent as one)`,
      );
    }
    this.checkParents(path);
    return join(this.root, path);
  }

  /** Every parent of `path` must still be the very directory restore made there (no link, no swap). */
  private checkParents(path: string): void {
    for (const parent of parentsOf(path)) {
      const stat = lstatOrUndefined(join(this.root, parent));
      if (!stat?.isDirectory() || !sameInode(stat, this.directories.get(parent)!)) {
        throw replaced(parent, this.root);
      }
    }
  }

  private requireFile(frame: string): OpenFile {
    if (!this.file) throw new ProtocolError("unexpected-frame", `${frame} outside Begin..End`);
    return this.file;
  }
}

function replaced(path: string, root: string): Error {
  return new Error(
    `${join(root, path)} is no longer the directory restore made there (something replaced it while ` +
      "restoring); restore stops rather than write through it",
  );
}

/** Removes `path` and, for a directory, all under it, never following a link; returns the non-directories removed. */
/**
 * Removes an entry (a directory with its contents, walked by lstat) except what `kept`
 * spares, by its path relative to the restore root; a directory that still holds a
 * spared entry stays (as rsync keeps a directory with excluded files). Returns the
 * non-directories removed.
 */
function removeEntry(root: string, path: string, kept: (path: string) => boolean): number {
  const absolute = join(root, path);
  const stat = lstatOrUndefined(absolute);
  if (!stat || kept(path)) return 0;
  if (!stat.isDirectory()) {
    unlinkSync(fsPath(absolute));
    return 1;
  }
  let removed = 0;
  for (const raw of readdirSync(fsPath(absolute), { encoding: "buffer" }))
    removed += removeEntry(root, `${path}/${nameFromBytes(raw)}`, kept);
  if (readdirSync(fsPath(absolute)).length === 0) rmdirSync(fsPath(absolute));
  return removed;
}

function sameInode(stat: Identity, identity: Identity): boolean {
  return stat.ino === identity.ino && stat.dev === identity.dev;
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(fsPath(path));
  } catch {
    return undefined;
  }
}

/** Whether a backup with `filters` leaves the entry out (never read, so never in a version). */
function leftOutByFilters(path: string, absolute: string, filters: FilterOptions): boolean {
  if (excludedPath(path, filters)) return true;
  const stat = lstatOrUndefined(absolute);
  if (!stat?.isFile()) return false;
  try {
    return fileFilterReason(path, stat.size, absolute, filters) !== undefined;
  } catch {
    return true; // unreadable to the firewall: a backup would not have it either
  }
}
