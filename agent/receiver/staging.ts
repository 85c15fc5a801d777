/**
 * The job in progress for one source: files land in staging/tree as they arrive (each
 * verified by hash before it becomes visible there), every accepted change is appended
 * to staging/journal.jsonl, and one large file at a time is assembled in
 * staging/partial. The staging area survives a killed receiver or a cut connection; the
 * next session for the same source and base resumes from it (PROTOCOL.md, "Resume").
 */
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  futimesSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  utimesSync,
  writeFileSync,
  writeSync,
  writevSync,
} from "node:fs";
import { join } from "node:path";
import { ProtocolError } from "../protocol/frames.ts";
import type { FileEntry, FileHeader, ManifestEntry } from "../protocol/messages.ts";
import { checkRelativePath, parentsOf } from "../protocol/paths.ts";
import type { SourceLayout } from "./layout.ts";
import { readManifest } from "./manifestFile.ts";

/** Stored files are read-only: versions share them and must never change. */
export const STORED_FILE_MODE = 0o444;

/**
 * A large file's chunks are written in groups of up to this many bytes: their chunks.log
 * lines first, then the data in one writev (8 KiB writes run five times slower here than
 * large ones). The order costs nothing in safety: resume trusts a logged chunk only if its
 * bytes are on disk and hash right, so a crash anywhere in a group wastes at most the one
 * chunk being written — the bound PROTOCOL.md promises.
 */
const CHUNK_GROUP_BYTES = 1024 * 1024;
/** Journal lines are written in groups of at most this many (and whenever the session waits). */
const JOURNAL_GROUP = 32;

type JournalRecord = { put: ManifestEntry } | { delete: string };

interface PartialFile {
  path: string;
  base: string;
  mtime: number;
  mode: number;
  fd: number;
  logFd: number;
  hash: Hash;
  size: number;
  chunks: [number, string][];
  baseFd: number | undefined;
  /** The base file's bytes read ahead for Copy frames, which mostly come in file order. */
  baseWindow: { offset: number; bytes: Buffer } | undefined;
  /** Chunks received but not yet written, with their chunks.log lines. */
  group: Buffer[];
  groupBytes: number;
  groupLog: string;
}

export class StagingArea {
  readonly layout: SourceLayout;
  readonly base: string | null;
  /** The base version's entries by path (empty without a base). */
  readonly baseEntries: Map<string, ManifestEntry>;
  /** What this job changed so far: an entry, or null for a deletion. */
  readonly changes = new Map<string, ManifestEntry | null>();
  /** Paths whose content was written (not linked) in this job: fsynced at commit. */
  readonly written = new Set<string>();
  bytesWritten = 0;
  private partial: PartialFile | undefined;
  /** Directories of the staged tree known to exist, so each file costs no lstat per parent. */
  private readonly knownDirectories = new Set<string>();
  private journalFd: number | undefined;
  /** Journal lines whose changes are on disk, not yet appended to the journal. */
  private journalPending: string[] = [];

  constructor(layout: SourceLayout, base: string | null) {
    this.layout = layout;
    this.base = base;
    this.baseEntries = new Map(base ? readManifest(layout.manifestOf(base)).map((e) => [e.path, e]) : []);
  }

  get dir(): string {
    return this.layout.stagingDir;
  }
  get tree(): string {
    return join(this.dir, "tree");
  }
  private get partialDir(): string {
    return join(this.dir, "partial");
  }

  /**
   * Opens the staging area: resumes what an interrupted job on the same base left, or
   * starts empty. Returns whether something was resumed.
   */
  open(): boolean {
    const baseFile = join(this.dir, "base.json");
    let resumed = false;
    if (
      existsSync(baseFile) &&
      (JSON.parse(readFileSync(baseFile, "utf8")) as { base: string | null }).base === this.base
    ) {
      resumed = this.loadJournal();
    }
    if (!resumed) {
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.tree, { recursive: true });
      writeFileSync(baseFile, JSON.stringify({ base: this.base }));
    }
    this.journalFd = openSync(join(this.dir, "journal.jsonl"), "a");
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
    if (this.journalFd !== undefined) closeSync(this.journalFd);
    this.journalFd = undefined;
    this.closePartial();
  }

  /**
   * Writes what was accepted but is still grouped in memory: the large file's pending
   * chunks and the pending journal lines (at commit, and when the session ends).
   */
  flush(): void {
    if (this.partial) this.writeChunkGroup(this.partial);
    this.flushJournal();
  }

  /**
   * Writes the pending journal lines. The session calls this whenever it is about to wait
   * for the peer, so finished files are resumable as soon as the receiver has nothing else
   * to do. A large file's chunk group is not written then: a TLS record brings only two
   * chunks, and writing each pair on its own is what the group exists to avoid.
   */
  flushJournal(): void {
    if (this.journalPending.length > 0 && this.journalFd !== undefined) {
      writeSync(this.journalFd, this.journalPending.join(""));
      this.journalPending = [];
    }
  }

  /** The view a pusher diffs against: the base with this job's changes applied. */
  *effectiveEntries(): Iterable<ManifestEntry> {
    for (const [path, entry] of this.baseEntries) {
      if (!this.changes.has(path)) yield entry;
    }
    for (const entry of this.changes.values()) if (entry) yield entry;
  }

  /** The partly received large file, for the pusher to resume (at most one). */
  partialState(): { path: string; chunks: [number, string][] } | undefined {
    const stateFile = join(this.partialDir, "begin.json");
    if (!existsSync(stateFile)) return undefined;
    const begin = JSON.parse(readFileSync(stateFile, "utf8")) as { path: string };
    return { path: begin.path, chunks: this.verifiedPartialChunks() };
  }

  putFile(header: FileHeader, content: Buffer): void {
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
    this.bytesWritten += content.length;
    this.record({ put: { type: "file", ...header } }, true);
  }

  putDirectory(path: string, mtime: number, mode: number): void {
    checkRelativePath(path);
    this.prepareParents(path);
    const target = this.inTree(path);
    const existing = lstatOrUndefined(target);
    if (existing && !existing.isDirectory()) rmSync(target, { force: true });
    if (!existing?.isDirectory()) mkdirSync(target, { mode: 0o755 });
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
    const source = this.baseFile(from);
    if (source.sha256 !== sha256) {
      throw new ProtocolError("hash-mismatch", `${path}: the base version's ${from} has other content`);
    }
    this.prepareParents(path);
    const target = this.inTree(path);
    this.removeStaged(path);
    linkSync(join(this.layout.treeOf(this.base!), from), target);
    const entry: FileEntry = { type: "file", path, size: source.size, mtime, mode, sha256 };
    if (source.chunks) entry.chunks = source.chunks;
    this.record({ put: entry }, false);
  }

  begin(
    path: string,
    mtime: number,
    mode: number,
    base: string | undefined,
    resumeAt: number | undefined,
  ): void {
    checkRelativePath(path);
    if (base !== undefined) checkRelativePath(base);
    if (this.partial) throw new ProtocolError("unexpected-frame", "Begin inside another file");
    const stateFile = join(this.partialDir, "begin.json");
    const chunks: [number, string][] = [];
    if (resumeAt !== undefined) {
      const state = existsSync(stateFile)
        ? (JSON.parse(readFileSync(stateFile, "utf8")) as { path: string })
        : undefined;
      const staged = state?.path === path ? this.verifiedPartialChunks() : [];
      // The client may resume short of everything staged (its file changed after the
      // first chunks): keep the staged chunks up to resumeAt, which must fall between two.
      let durable = 0;
      for (const chunk of staged) {
        if (durable + chunk[0] > resumeAt) break;
        chunks.push(chunk);
        durable += chunk[0];
      }
      if (durable !== resumeAt) {
        const total = staged.reduce((sum, [length]) => sum + length, 0);
        throw new ProtocolError(
          "resume-mismatch",
          `${path}: cannot resume at byte ${resumeAt}; ${total} bytes are staged, and no staged chunk ends there. ` +
            `Start the file again without resumeAt`,
        );
      }
    } else {
      rmSync(this.partialDir, { recursive: true, force: true });
    }
    mkdirSync(this.partialDir, { recursive: true });
    writeFileSync(stateFile, JSON.stringify({ path, mtime, mode, base: base ?? path }));
    const dataPath = join(this.partialDir, "data");
    const fd = openSync(dataPath, resumeAt !== undefined ? "r+" : "w", STORED_FILE_MODE);
    const size = chunks.reduce((sum, [length]) => sum + length, 0);
    ftruncateSync(fd, size);
    const hash = createHash("sha256");
    if (size > 0) hashRange(fd, 0, size, hash);
    // The log restarts as exactly the verified chunks: lines for chunks whose bytes never
    // arrived must not stand before the ones this session appends.
    const logFd = openSync(join(this.partialDir, "chunks.log"), "w");
    if (chunks.length > 0) writeSync(logFd, chunks.map(([length, hash]) => `${length} ${hash}\n`).join(""));
    this.partial = {
      path,
      base: base ?? path,
      mtime,
      mode,
      fd,
      logFd,
      hash,
      size,
      chunks,
      baseFd: undefined,
      baseWindow: undefined,
      group: [],
      groupBytes: 0,
      groupLog: "",
    };
  }

  appendData(bytes: Buffer): void {
    const partial = this.requirePartial("Data");
    this.appendChunk(partial, bytes, createHash("sha256").update(bytes).digest("hex"));
    this.bytesWritten += bytes.length;
  }

  appendCopy(offset: number, length: number, sha256: string): void {
    const partial = this.requirePartial("Copy");
    if (partial.baseFd === undefined) {
      const source = this.baseFile(partial.base);
      if (offset + length > source.size) {
        throw new ProtocolError("bad-message", `Copy beyond the end of the base file ${partial.base}`);
      }
      partial.baseFd = openSync(join(this.layout.treeOf(this.base!), partial.base), "r");
    }
    const bytes = readBaseRange(partial, offset, length);
    const actual = createHash("sha256").update(bytes).digest("hex");
    if (bytes.length !== length || actual !== sha256) {
      throw new ProtocolError(
        "copy-mismatch",
        `${partial.path}: the base's bytes at ${offset}+${length} differ`,
      );
    }
    this.appendChunk(partial, bytes, sha256);
  }

  end(size: number, sha256: string): void {
    const partial = this.requirePartial("End");
    this.writeChunkGroup(partial);
    const actual = partial.hash.digest("hex");
    if (partial.size !== size || actual !== sha256) {
      const path = partial.path;
      this.closePartial();
      rmSync(this.partialDir, { recursive: true, force: true });
      throw new ProtocolError(
        "hash-mismatch",
        `${path}: received ${partial.size} bytes hashing to ${actual}, the sender declared ${size} bytes, ${sha256}`,
      );
    }
    this.closePartial();
    this.placeFile(join(this.partialDir, "data"), partial.path, partial.mtime);
    rmSync(this.partialDir, { recursive: true, force: true });
    this.record(
      {
        put: {
          type: "file",
          path: partial.path,
          size,
          mtime: partial.mtime,
          mode: partial.mode,
          sha256,
          chunks: partial.chunks,
        },
      },
      true,
    );
  }

  private appendChunk(partial: PartialFile, bytes: Buffer, hash: string): void {
    if (partial.groupBytes + bytes.length > CHUNK_GROUP_BYTES) this.writeChunkGroup(partial);
    partial.group.push(bytes);
    partial.groupBytes += bytes.length;
    partial.groupLog += `${bytes.length} ${hash}\n`;
    partial.hash.update(bytes);
    partial.chunks.push([bytes.length, hash]);
  }

  /** Writes the grouped chunks' log lines, then their data (see CHUNK_GROUP_BYTES). */
  private writeChunkGroup(partial: PartialFile): void {
    if (partial.groupBytes === 0) return;
    writeSync(partial.logFd, partial.groupLog);
    writeAll(partial.fd, partial.group, partial.groupBytes, partial.size);
    partial.size += partial.groupBytes;
    partial.group = [];
    partial.groupBytes = 0;
    partial.groupLog = "";
  }

  private requirePartial(frame: string): PartialFile {
    if (!this.partial) throw new ProtocolError("unexpected-frame", `${frame} frame outside Begin..End`);
    return this.partial;
  }

  private closePartial(): void {
    if (!this.partial) return;
    closeSync(this.partial.fd);
    closeSync(this.partial.logFd);
    if (this.partial.baseFd !== undefined) closeSync(this.partial.baseFd);
    this.partial = undefined;
  }

  /** The logged chunks whose bytes are on disk and hash right: the durable prefix. */
  private verifiedPartialChunks(): [number, string][] {
    const logPath = join(this.partialDir, "chunks.log");
    const dataPath = join(this.partialDir, "data");
    if (!existsSync(logPath) || !existsSync(dataPath)) return [];
    const chunks: [number, string][] = [];
    const fd = openSync(dataPath, "r");
    try {
      let offset = 0;
      for (const line of readFileSync(logPath, "utf8").split("\n")) {
        const match = /^(\d+) ([0-9a-f]{64})$/.exec(line);
        if (!match) break;
        const length = Number(match[1]);
        const hash = createHash("sha256");
        if (hashRange(fd, offset, length, hash) !== length || hash.digest("hex") !== match[2]) break;
        chunks.push([length, match[2]]);
        offset += length;
      }
    } finally {
      closeSync(fd);
    }
    return chunks;
  }

  private baseFile(path: string): FileEntry {
    checkRelativePath(path);
    const entry = this.baseEntries.get(path);
    if (!this.base || entry?.type !== "file") {
      throw new ProtocolError("bad-reference", `${path} is not a file of the base version`);
    }
    return entry;
  }

  private record(record: JournalRecord, written: boolean): void {
    if ("put" in record) {
      this.changes.set(record.put.path, record.put);
      if (written) this.written.add(record.put.path);
      else this.written.delete(record.put.path);
    } else {
      this.changes.set(record.delete, null);
      this.written.delete(record.delete);
    }
    this.journalPending.push(JSON.stringify(record) + "\n");
    if (this.journalPending.length >= JOURNAL_GROUP) this.flushJournal();
  }

  private loadJournal(): boolean {
    const journal = join(this.dir, "journal.jsonl");
    if (!existsSync(this.tree)) return false;
    const lines = existsSync(journal) ? readFileSync(journal, "utf8").split("\n") : [];
    for (const line of lines) {
      let record: JournalRecord;
      try {
        record = JSON.parse(line) as JournalRecord;
      } catch {
        break; // a torn last line: everything before it stands
      }
      if ("put" in record) {
        const entry = record.put;
        // Trust a staged file only if it is still there with the size it was logged with.
        if (entry.type === "file") {
          const stat = lstatOrUndefined(this.inTree(entry.path));
          if (!stat?.isFile() || stat.size !== entry.size) continue;
          this.written.add(entry.path);
        }
        this.changes.set(entry.path, entry);
      } else {
        this.changes.set(record.delete, null);
        this.written.delete(record.delete);
      }
    }
    // Rewrite the journal to what was kept, so a torn tail never precedes new lines.
    writeFileSync(
      journal,
      [...this.changes]
        .map(([path, entry]) => JSON.stringify(entry ? { put: entry } : { delete: path }) + "\n")
        .join(""),
    );
    return true;
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
    utimesSync(from, mtime / 1000, mtime / 1000);
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

  /** Makes every parent of `path` a real directory in the staged tree. */
  /** A checked relative path inside the staged tree (plain concatenation: path.join costs more here). */
  private inTree(path: string): string {
    return `${this.tree}/${path}`;
  }

  private prepareParents(path: string): void {
    for (const parent of parentsOf(path)) {
      if (this.knownDirectories.has(parent)) continue;
      const dir = this.inTree(parent);
      const stat = lstatOrUndefined(dir);
      if (stat && !stat.isDirectory()) rmSync(dir, { force: true });
      if (!stat?.isDirectory()) mkdirSync(dir, { mode: 0o755 });
      this.knownDirectories.add(parent);
    }
  }

  private removeStaged(path: string): void {
    rmSync(this.inTree(path), { recursive: true, force: true });
    // Whatever was under it is gone too.
    for (const dir of this.knownDirectories) {
      if (dir === path || dir.startsWith(`${path}/`)) this.knownDirectories.delete(dir);
    }
  }
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

const BASE_WINDOW_BYTES = 1024 * 1024;

/**
 * Bytes [offset, offset+length) of the partial file's base (fewer at its end), from the
 * read-ahead window: one read per MiB instead of one per chunk. A window is never reused
 * for other bytes, so chunks sliced from it stay valid while they wait to be written.
 */
function readBaseRange(partial: PartialFile, offset: number, length: number): Buffer {
  const window = partial.baseWindow;
  if (!window || offset < window.offset || offset + length > window.offset + window.bytes.length) {
    const bytes = Buffer.allocUnsafe(Math.max(length, BASE_WINDOW_BYTES));
    let filled = 0;
    for (;;) {
      const read = readSync(partial.baseFd!, bytes, filled, bytes.length - filled, offset + filled);
      if (read === 0) break;
      filled += read;
      if (filled === bytes.length) break;
    }
    partial.baseWindow = { offset, bytes: bytes.subarray(0, filled) };
  }
  const { offset: start, bytes } = partial.baseWindow!;
  return bytes.subarray(offset - start, Math.min(offset - start + length, bytes.length));
}

/** Writes all `total` bytes of `buffers` at `position`, however many calls that takes. */
function writeAll(fd: number, buffers: Buffer[], total: number, position: number): void {
  let written = writevSync(fd, buffers, position);
  if (written === total) return;
  // A short write (rare: a signal, or a nearly full disk): write the rest piece by piece.
  let start = 0;
  for (const buffer of buffers) {
    const end = start + buffer.length;
    while (written < end) {
      written += writeSync(fd, buffer, written - start, end - written, position + written);
    }
    start = end;
  }
}

/** Feeds bytes [offset, offset+length) of fd into hash; returns how many were read. */
function hashRange(fd: number, offset: number, length: number, hash: Hash): number {
  const buffer = Buffer.allocUnsafe(Math.min(length, 1 << 20));
  let done = 0;
  while (done < length) {
    const read = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
    if (read === 0) break;
    hash.update(buffer.subarray(0, read));
    done += read;
  }
  return done;
}
