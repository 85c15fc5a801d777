/**
 * The job in progress for one source, as a staged tree: small files, directories,
 * symlinks, deletions and links land in staging/tree (or, for symlinks, only in the
 * entries) as they arrive, each verified before it becomes visible there; a large file is
 * assembled beside it (largeFileAssembly.ts) and moved in at End; every accepted change is
 * logged in the journal (stagingJournal.ts). The view a pusher diffs against is the base
 * version with those changes applied. The staging area survives a killed receiver or a cut
 * connection; the next session for the same source and base resumes from it (PROTOCOL.md,
 * "Resume"), and commitVersion.ts turns it into a version.
 *
 * The subtle point is that a name in the staged tree may be a hard link shared with a
 * stored version (a Link, or a file left by an interrupted session): content is therefore
 * never written through an existing name, only into a new file (O_EXCL) or by rename.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  futimesSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { join } from "node:path";
import { entriesDigest } from "../protocol/entriesDigest.ts";
import { ProtocolError } from "../protocol/frames.ts";
import { type FileEntry, type FileHeader, INLINE_MAX, type ManifestEntry } from "../protocol/messages.ts";
import { checkRelativePath, comparePaths, parentOf } from "../protocol/paths.ts";
import { LargeFileAssembly } from "./largeFileAssembly.ts";
import type { SourceLayout } from "./layout.ts";
import { keptBaseEntries } from "./baseEntriesCache.ts";
import { readManifestWithDigest } from "./manifestFile.ts";
import { type JournalRecord, StagingJournal } from "./stagingJournal.ts";
import { damagedStore, openStoredFile, STORED_FILE_MODE, writeAll, writeOwnFile } from "./storedFiles.ts";
import { applyPatch, type BlockSignature, type PatchOp, signatureOf } from "../transfer/smallFileDelta.ts";
import { fsPath } from "../protocol/byteNames.ts";

export { STORED_FILE_MODE } from "./storedFiles.ts";

export class StagingArea {
  readonly layout: SourceLayout;
  readonly base: string | null;
  /**
   * The base version's entries by path (empty without a base). Shared with
   * baseEntriesCache.ts: read, never changed (nor the entries in it).
   */
  readonly baseEntries: ReadonlyMap<string, ManifestEntry>;
  /** What this job changed so far: an entry, or null for a deletion (the journal's view). */
  readonly changes: Map<string, ManifestEntry | null>;
  /** Paths whose content was written (not linked) in this job: fsynced at commit. */
  readonly written = new Set<string>();
  bytesWritten = 0;
  private readonly journal: StagingJournal;
  private readonly assembly: LargeFileAssembly;
  /**
   * Directories of the staged tree known to exist, so each file costs no lstat per parent.
   * Closed under parents (a directory is added only once its parents are known, and
   * removeStaged forgets whole subtrees), so a known parent means all of them are.
   */
  private readonly knownDirectories = new Set<string>();
  private readonly recordedBaseDigest: string | undefined;
  /** The staged changes the session's client was shown (a resumed push's entries include them). */
  private resumedChanges = new Map<string, ManifestEntry | null>();

  constructor(layout: SourceLayout, base: string | null) {
    this.layout = layout;
    this.base = base;
    this.tree = join(layout.stagingDir, "tree");
    const manifest = base === null ? undefined : layout.manifestOf(base);
    const kept = manifest === undefined ? undefined : keptBaseEntries(layout.dir, manifest);
    if (kept) {
      this.baseEntries = kept.entries;
      this.recordedBaseDigest = kept.digest;
    } else {
      const read = manifest ? readManifestWithDigest(manifest) : { entries: [], digest: undefined };
      this.baseEntries = new Map(read.entries.map((e) => [e.path, e]));
      this.recordedBaseDigest = read.digest;
    }
    this.journal = new StagingJournal(join(this.dir, "journal.jsonl"));
    this.changes = this.journal.changes;
    this.assembly = new LargeFileAssembly(join(this.dir, "partial"), (path) => {
      const { entry, file } = this.sourceFile(path);
      return { file, size: entry.size };
    });
  }

  get dir(): string {
    return this.layout.stagingDir;
  }
  /** The staged tree (a field, not a getter that joins: every frame uses it). */
  readonly tree: string;

  /**
   * Opens the staging area: resumes what an interrupted job on the same base left, or
   * starts empty. Returns whether something was resumed.
   */
  open(): boolean {
    const baseFile = join(this.dir, "base.json");
    let resumed = false;
    if (
      existsSync(baseFile) &&
      (JSON.parse(readFileSync(baseFile, "utf8")) as { base: string | null }).base === this.base &&
      existsSync(this.tree)
    ) {
      // Trust a staged file only if it is still there with the size it was logged with;
      // a hard link has nothing on disk until the commit links it.
      this.journal.replay((entry) => {
        if (entry.type !== "file" || entry.hardLink !== undefined) return true;
        const stat = lstatOrUndefined(this.inTree(entry.path));
        return stat !== undefined && stat.isFile() && stat.size === entry.size;
      });
      for (const [path, entry] of this.changes)
        if (entry?.type === "file" && entry.hardLink === undefined) this.written.add(path);
      resumed = true;
    }
    if (!resumed) {
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.tree, { recursive: true });
      writeOwnFile(baseFile, JSON.stringify({ base: this.base }));
    }
    this.journal.open();
    this.resumedChanges = new Map(this.changes);
    return resumed;
  }

  /**
   * Closes the staging area; what was accepted is written first, so the next session
   * resumes from it. A failure to write it (a full disk) only costs a resend.
   */
  close(): void {
    try {
      this.flush();
    } catch {
      // Unwritten groups are simply not resumable; the pusher sends them again.
    }
    this.journal.close();
    this.assembly.close();
  }

  /**
   * Writes what was accepted but is still grouped in memory: the large file's pending
   * chunks and the pending journal lines (at commit, and when the session ends).
   */
  flush(): void {
    this.assembly.flush();
    this.journal.flush();
  }

  /**
   * Writes the pending journal lines. The session calls this whenever it is about to wait
   * for the peer, so finished files are resumable as soon as the receiver has nothing else
   * to do. A large file's chunk group is not written then: a TLS record brings only two
   * chunks, and writing each pair on its own is what the group exists to avoid.
   */
  flushJournal(): void {
    this.journal.flush();
  }

  /** The view a pusher diffs against: the base with this job's changes applied. */
  *effectiveEntries(): Iterable<ManifestEntry> {
    for (const [path, entry] of this.baseEntries) {
      if (!this.changes.has(path)) yield entry;
    }
    for (const entry of this.changes.values()) if (entry) yield entry;
  }

  /**
   * The base version's entries digest (protocol/entriesDigest.ts): the one its commit
   * recorded, or, for a manifest an older receiver wrote, made from its entries in path
   * order (the manifest's order; sorted here only if it is not).
   */
  baseDigest(): string {
    if (this.recordedBaseDigest !== undefined) return this.recordedBaseDigest;
    const entries = [...this.baseEntries.values()];
    for (let i = 1; i < entries.length; i++) {
      if (comparePaths(entries[i - 1]!.path, entries[i]!.path) >= 0) {
        entries.sort((a, b) => comparePaths(a.path, b.path));
        break;
      }
    }
    return entriesDigest(entries);
  }

  /** The partly received large file, for the pusher to resume (at most one). */
  partialState(): { path: string; chunks: [number, string][] } | undefined {
    return this.assembly.staged();
  }

  /** A whole small file; `received` is how many of its bytes crossed the wire (a Patch: fewer). */
  putFile(header: FileHeader, content: Buffer, received = content.length): void {
    checkRelativePath(header.path);
    const actual = createHash("sha256").update(content).digest("hex");
    if (actual !== header.sha256) {
      throw new ProtocolError(
        "hash-mismatch",
        `${header.path}: content hashes to ${actual}, not ${header.sha256}`,
      );
    }
    this.prepareParents(header.path);
    this.writeStagedFile(header.path, content, header.mtime);
    this.bytesWritten += received;
    this.record({ put: { type: "file", ...header } }, true);
  }

  /** The block signatures of the base's small file at `path` (Signatures), or undefined if it has none. */
  signatureOf(path: string): BlockSignature | undefined {
    checkRelativePath(path);
    const bytes = this.baseSmallFile(path);
    return bytes ? signatureOf(bytes) : undefined;
  }

  /** A small file as a patch of the base's file at the same path (version 3), checked as a File. */
  putPatch(header: FileHeader, blockSize: number, ops: PatchOp[]): void {
    checkRelativePath(header.path);
    const base = this.baseSmallFile(header.path);
    if (!base) {
      throw new ProtocolError(
        "bad-reference",
        `${header.path} is not a small file of the base version to patch`,
      );
    }
    let content: Buffer;
    try {
      content = applyPatch(base, blockSize, ops, header.size);
    } catch (error) {
      if (error instanceof RangeError)
        throw new ProtocolError("bad-message", `${header.path}: ${error.message}`);
      throw error;
    }
    const literal = ops.reduce((sum, op) => sum + ("literal" in op ? op.literal.length : 0), 0);
    this.putFile(header, content, literal);
  }

  /** The bytes of the base's file at `path` when it is a non-empty small file, checked as stored. */
  private baseSmallFile(path: string): Buffer | undefined {
    const entry = this.baseEntries.get(path);
    if (!this.base || entry?.type !== "file" || entry.size === 0 || entry.size > INLINE_MAX) return undefined;
    const file = `${this.layout.treeOf(this.base)}/${path}`;
    const fd = openStoredFile(file);
    try {
      const bytes = readFileSync(fd);
      if (bytes.length !== entry.size)
        throw damagedStore(file, `holds ${bytes.length} bytes, not ${entry.size}`);
      return bytes;
    } finally {
      closeSync(fd);
    }
  }

  putDirectory(path: string, mtime: number, mode: number): void {
    checkRelativePath(path);
    this.prepareParents(path);
    this.makeDirectory(path);
    this.record({ put: { type: "dir", path, mtime, mode } }, false);
  }

  putSymlink(path: string, target: string, mtime: number): void {
    checkRelativePath(path);
    // Symlinks are kept in the manifest only, never created in the tree: the receiver
    // must not have a link in its tree that something could follow.
    this.removeStaged(path);
    this.record({ put: { type: "symlink", path, target, mtime } }, false);
  }

  delete(path: string): void {
    checkRelativePath(path);
    this.removeStaged(path);
    this.record({ delete: path }, false);
  }

  /** A file whose content equals the base version's `from` (a rename or a copy). */
  link(path: string, from: string, mtime: number, mode: number, sha256: string): void {
    checkRelativePath(path);
    const source = this.sourceFile(from);
    if (source.entry.sha256 !== sha256) {
      throw new ProtocolError("hash-mismatch", `${path}: the receiver's ${from} has other content`);
    }
    const entry: FileEntry = { type: "file", path, size: source.entry.size, mtime, mode, sha256 };
    if (source.entry.chunks) entry.chunks = source.entry.chunks;
    if (source.staged && from === path) {
      // Only the metadata of a file this job staged changed: it lives in the manifest.
      this.record({ put: entry }, true);
      return;
    }
    this.prepareParents(path);
    const target = this.inTree(path);
    // link(2) does not follow a symlink: a stored file swapped for one would put a link in the tree.
    if (!source.staged && !lstatOrUndefined(fsPath(source.file))?.isFile())
      throw damagedStore(source.file, "is not a regular file (a link?)");
    this.removeStaged(path);
    linkSync(fsPath(source.file), target);
    this.record({ put: entry }, source.staged);
  }

  /**
   * The file a Link or a Copy reads: `path` in the view the client was shown, the base
   * with the staged files of an interrupted push this one resumes. A staged file is read
   * from the staging tree while it still holds those bytes (this session has not replaced
   * or deleted it); otherwise (or
   * when nothing was staged there) it is the base's file, which a deletion in this job
   * does not take away (a rename is a Delete, then a Link from the old name).
   */
  private sourceFile(path: string): { entry: FileEntry; file: string; staged: boolean } {
    checkRelativePath(path);
    const shown = this.resumedChanges.get(path);
    const now = this.changes.get(path);
    // Still those bytes in the staging tree (a metadata change since keeps them).
    if (
      shown?.type === "file" &&
      now?.type === "file" &&
      now.hardLink === undefined &&
      now.sha256 === shown.sha256 &&
      this.written.has(path)
    )
      return { entry: shown, file: `${this.tree}/${path}`, staged: true };
    return { entry: this.baseFile(path), file: join(this.layout.treeOf(this.base!), path), staged: false };
  }

  /**
   * `path` is another name of `to`, a file of the new version earlier in path order (a
   * hard link in the source). Nothing is written now: the commit links the two names once
   * `to` is in place, and checks they are one file then.
   */
  hardLink(path: string, to: string): void {
    checkRelativePath(path);
    checkRelativePath(to);
    if (comparePaths(to, path) >= 0) {
      throw new ProtocolError(
        "bad-reference",
        `${path} cannot be a hard link of ${to}, which does not come before it`,
      );
    }
    const target = this.changes.has(to) ? this.changes.get(to) : this.baseEntries.get(to);
    if (target?.type !== "file") {
      throw new ProtocolError(
        "bad-reference",
        `${path}: ${to} is not a file of the new version to hard-link to`,
      );
    }
    if (target.hardLink !== undefined) {
      throw new ProtocolError(
        "bad-reference",
        `${path}: ${to} is itself a hard link; name the first file (${target.hardLink})`,
      );
    }
    this.prepareParents(path);
    this.removeStaged(path);
    const { hardLink: _, ...content } = target;
    this.record({ put: { ...content, path, hardLink: to } }, false);
  }

  begin(
    path: string,
    mtime: number,
    mode: number,
    base: string | undefined,
    resumeAt: number | undefined,
  ): void {
    this.assembly.begin(path, mtime, mode, base, resumeAt);
  }

  appendData(bytes: Buffer): void {
    this.assembly.appendData(bytes);
    this.bytesWritten += bytes.length;
  }

  /** A chunk that came with its hash (version 3): not hashed again; the whole file is, at End. */
  appendHashedData(bytes: Buffer, sha256: string): void {
    this.assembly.appendHashedData(bytes, sha256);
    this.bytesWritten += bytes.length;
  }

  appendCopy(offset: number, length: number, sha256: string): void {
    this.assembly.appendCopy(offset, length, sha256);
  }

  appendZeros(length: number): void {
    this.assembly.appendZeros(length);
  }

  /** The file in Begin..End is not part of this job: the new version keeps the previous copy. */
  abandon(): void {
    this.assembly.abandon();
  }

  end(size: number, sha256: string): void {
    const file = this.assembly.end(size, sha256);
    this.placeFile(file.data, file.path, file.mtime);
    this.assembly.remove();
    const { path, mtime, mode, chunks } = file;
    this.record({ put: { type: "file", path, size, mtime, mode, sha256, chunks } }, true);
  }

  /** The base version's file at `path` (a Link's `from`, a Copy's base), or `bad-reference`. */
  private baseFile(path: string): FileEntry {
    checkRelativePath(path);
    const entry = this.baseEntries.get(path);
    if (!this.base || entry?.type !== "file") {
      throw new ProtocolError("bad-reference", `${path} is not a file of the base version`);
    }
    return entry;
  }

  private record(record: JournalRecord, written: boolean): void {
    const path = "put" in record ? record.put.path : record.delete;
    if (written) this.written.add(path);
    else this.written.delete(path);
    this.journal.record(record);
  }

  /**
   * Writes verified content as a new file at `path` in the staged tree. Never through an
   * existing name: that could be a hard link shared with a stored version (a Link, or a
   * file left by an interrupted session), so an existing entry is removed and the file
   * created anew (O_EXCL). A torn write is removed; it is never journaled either way.
   */
  private writeStagedFile(path: string, content: Buffer, mtime: number): void {
    const target = this.inTree(path);
    let fd: number;
    try {
      fd = openSync(target, "wx", STORED_FILE_MODE);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      this.removeStaged(path);
      fd = openSync(target, "wx", STORED_FILE_MODE);
    }
    try {
      writeAll(fd, [content], content.length, 0);
      futimesSync(fd, mtime / 1000, mtime / 1000);
    } catch (error) {
      closeSync(fd);
      rmSync(target, { force: true });
      throw error;
    }
    closeSync(fd);
  }

  /** Moves a finished file into the staged tree at `path`, replacing whatever is there. */
  private placeFile(from: string, path: string, mtime: number): void {
    this.prepareParents(path);
    const target = this.inTree(path);
    lutimesSync(from, mtime / 1000, mtime / 1000); // never through a link planted there
    try {
      renameSync(from, target);
    } catch (error) {
      // A directory stands where the file goes (the path changed type): replace it.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EISDIR" && code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
      this.removeStaged(path);
      renameSync(from, target);
    }
  }

  /**
   * A checked relative path inside the staged tree, as the file system takes it (its bytes
   * when the name is not UTF-8: byteNames.ts). Plain concatenation: path.join costs more here.
   */
  private inTree(path: string): string | Buffer {
    return fsPath(`${this.tree}/${path}`);
  }

  /**
   * Makes every parent of `path` a real directory in the staged tree. One lookup when the
   * parent is known (the usual case: a directory's entries follow it), not one string
   * built and hashed per parent, which cost O(depth²) per frame on a deep path and let one
   * session of nested Directory frames hold the event loop for many seconds.
   */
  private prepareParents(path: string): void {
    const missing: string[] = [];
    let dir = parentOf(path);
    while (dir !== undefined && !this.knownDirectories.has(dir)) {
      missing.push(dir);
      dir = parentOf(dir);
    }
    for (let i = missing.length - 1; i >= 0; i--) this.makeDirectory(missing[i]!);
  }

  /** Makes `path`, whose parents are known, a real directory in the staged tree (replacing a non-directory). */
  private makeDirectory(path: string): void {
    if (this.knownDirectories.has(path)) return;
    const dir = this.inTree(path);
    const stat = lstatOrUndefined(dir);
    if (stat && !stat.isDirectory()) rmSync(dir, { force: true });
    if (!stat?.isDirectory()) mkdirSync(dir, { mode: 0o755 });
    this.knownDirectories.add(path);
  }

  private removeStaged(path: string): void {
    rmSync(this.inTree(path), { recursive: true, force: true });
    // Whatever was under it is gone too. Only a known directory has known ones under it
    // (they are closed under parents): a Delete, Symlink or Link of anything else costs no
    // scan of them all.
    if (!this.knownDirectories.delete(path)) return;
    const under = `${path}/`;
    for (const dir of this.knownDirectories) if (dir.startsWith(under)) this.knownDirectories.delete(dir);
  }
}

function lstatOrUndefined(path: string | Buffer) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
