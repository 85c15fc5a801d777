/**
 * Assembles one large file from its chunks — Begin, then Data (new bytes) or Copy (bytes
 * of a base file, verified by hash) per chunk, then End, which checks the whole file's
 * size and SHA-256 — in a directory of its own (staging/partial/: begin.json, data,
 * chunks.log). It survives a killed session: the next one is offered the longest prefix
 * of logged chunks whose bytes are on disk and hash right, and may resume there
 * (PROTOCOL.md, "Resume"). It knows nothing of trees or versions: where the finished file
 * goes, and which file a Copy reads from, is the caller's.
 *
 * The subtle point is the order of a chunk group's writes: its chunks.log lines go first,
 * then its data. That costs nothing in safety, because resume trusts a logged chunk only
 * if its bytes are there and hash right, and it is what bounds the waste of a crash to the
 * one chunk being written.
 */
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fchmodSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ProtocolError } from "../protocol/frames.ts";
import { checkRelativePath } from "../protocol/paths.ts";
import { OPEN, openStoredFile, STORED_FILE_MODE, writeAll, writeOwnFile } from "./storedFiles.ts";
import { hashZeros, zerosHash } from "../chunking/zeros.ts";

/**
 * Chunks are written in groups of up to this many bytes, the data in one writev (8 KiB
 * writes run five times slower here than large ones); a crash anywhere in a group still
 * wastes at most the one chunk being written (see above) — the bound PROTOCOL.md promises.
 */
const CHUNK_GROUP_BYTES = 1024 * 1024;
const BASE_WINDOW_BYTES = 1024 * 1024;

/** The file Copy frames read from: where it is, and how long. */
export interface CopySource {
  file: string;
  size: number;
}

/** A verified, complete file, still at `data` in the assembly directory. */
export interface AssembledFile {
  path: string;
  mtime: number;
  mode: number;
  size: number;
  sha256: string;
  chunks: [number, string][];
  data: string;
}

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

export class LargeFileAssembly {
  readonly dir: string;
  /** Resolves a Copy frames' base path (Begin's `base`) to a file, or throws `bad-reference`. */
  private readonly copySource: (path: string) => CopySource;
  private partial: PartialFile | undefined;

  constructor(dir: string, copySource: (path: string) => CopySource) {
    this.dir = dir;
    this.copySource = copySource;
  }

  private get stateFile(): string {
    return join(this.dir, "begin.json");
  }
  private get dataFile(): string {
    return join(this.dir, "data");
  }
  private get logFile(): string {
    return join(this.dir, "chunks.log");
  }

  /** The partly received file an interrupted session left, with its durable chunks. */
  staged(): { path: string; chunks: [number, string][] } | undefined {
    if (!existsSync(this.stateFile)) return undefined;
    const begin = JSON.parse(readFileSync(this.stateFile, "utf8")) as { path: string };
    return { path: begin.path, chunks: this.verifiedChunks() };
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
    const chunks: [number, string][] = [];
    if (resumeAt !== undefined) {
      const state = existsSync(this.stateFile)
        ? (JSON.parse(readFileSync(this.stateFile, "utf8")) as { path: string })
        : undefined;
      const staged = state?.path === path ? this.verifiedChunks() : [];
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
      this.remove();
    }
    mkdirSync(this.dir, { recursive: true });
    writeOwnFile(this.stateFile, JSON.stringify({ path, mtime, mode, base: base ?? path }));
    // The staged data stays writable by the receiver until End (a receiver that is not
    // root could not reopen a 0444 file to resume it); End makes it read-only.
    if (resumeAt !== undefined) makeWritable(this.dataFile);
    const fd = openSync(this.dataFile, resumeAt !== undefined ? OPEN.update : OPEN.write, STAGED_DATA_MODE);
    const size = chunks.reduce((sum, [length]) => sum + length, 0);
    ftruncateSync(fd, size);
    const hash = createHash("sha256");
    if (size > 0) hashRange(fd, 0, size, hash);
    // The log restarts as exactly the verified chunks: lines for chunks whose bytes never
    // arrived must not stand before the ones this session appends.
    const logFd = openSync(this.logFile, OPEN.write, 0o644);
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
  }

  /**
   * A chunk with the hash its sender computed (HashedData, version 3). Not hashed
   * here: a wrong hash cannot make a wrong file (End verifies the whole file), and a Copy
   * that later trusts it verifies the bytes it reads (copy-mismatch otherwise).
   */
  appendHashedData(bytes: Buffer, sha256: string): void {
    this.appendChunk(this.requirePartial("HashedData"), bytes, sha256);
  }

  appendCopy(offset: number, length: number, sha256: string): void {
    const partial = this.requirePartial("Copy");
    if (partial.baseFd === undefined) {
      const source = this.copySource(partial.base);
      if (offset + length > source.size) {
        throw new ProtocolError("bad-message", `Copy beyond the end of the base file ${partial.base}`);
      }
      partial.baseFd = openStoredFile(source.file);
    }
    const bytes = readBaseRange(partial, offset, length);
    const actual = createHash("sha256").update(bytes).digest("hex");
    if (bytes.length !== length || actual !== sha256) {
      throw new ProtocolError(
        "copy-mismatch",
        `${partial.path}: the base's bytes at ${offset}+${length} differ`,
        partial.path,
      );
    }
    this.appendChunk(partial, bytes, sha256);
  }

  /**
   * A chunk of zeros: logged like any chunk, but never written, so the staged data keeps a
   * hole there (the file is extended past it; PROTOCOL.md, "Sparse files").
   */
  appendZeros(length: number): void {
    const partial = this.requirePartial("Zeros");
    // What is grouped goes first: the hole begins where the data written so far ends.
    this.writeChunkGroup(partial);
    const hash = zerosHash(length);
    writeSync(partial.logFd, `${length} ${hash}\n`);
    partial.size += length;
    ftruncateSync(partial.fd, partial.size);
    hashZeros(partial.hash, length);
    partial.chunks.push([length, hash]);
  }

  /**
   * Ends the file: verified against the declared size and hash, it is returned (its data
   * still in this directory, for the caller to move, then `remove()`); a file that does
   * not verify is discarded.
   */
  end(size: number, sha256: string): AssembledFile {
    const partial = this.requirePartial("End");
    this.writeChunkGroup(partial);
    const actual = partial.hash.digest("hex");
    fchmodSync(partial.fd, STORED_FILE_MODE);
    this.close();
    if (partial.size !== size || actual !== sha256) {
      this.remove();
      throw new ProtocolError(
        "hash-mismatch",
        `${partial.path}: received ${partial.size} bytes hashing to ${actual}, the sender declared ${size} bytes, ${sha256}`,
      );
    }
    const { path, mtime, mode, chunks } = partial;
    return { path, mtime, mode, size, sha256, chunks, data: this.dataFile };
  }

  /** Writes the chunks still grouped in memory (at commit, and when the session ends). */
  flush(): void {
    if (this.partial) this.writeChunkGroup(this.partial);
  }

  /** The sender could not read the file to its end: it is dropped, staged data and all. */
  abandon(): void {
    this.requirePartial("Abandon");
    this.close();
    this.remove();
  }

  /** Closes the file in progress; what is on disk stays to resume from. */
  close(): void {
    if (!this.partial) return;
    closeSync(this.partial.fd);
    closeSync(this.partial.logFd);
    if (this.partial.baseFd !== undefined) closeSync(this.partial.baseFd);
    this.partial = undefined;
  }

  /** Removes the assembly directory and whatever it held. */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
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

  /** The logged chunks whose bytes are on disk and hash right: the durable prefix. */
  private verifiedChunks(): [number, string][] {
    if (!existsSync(this.logFile) || !existsSync(this.dataFile)) return [];
    const chunks: [number, string][] = [];
    const fd = openSync(this.dataFile, OPEN.read);
    try {
      let offset = 0;
      for (const line of readFileSync(this.logFile, "utf8").split("\n")) {
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
}

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

/** Staged data of a file in assembly: the receiver's to write, nobody else's. */
const STAGED_DATA_MODE = 0o600;

/**
 * Gives the receiver write access to staged data again (data staged by an older receiver
 * was 0444 from the start), through a descriptor so a link there is never followed.
 */
function makeWritable(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, OPEN.read);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  try {
    fchmodSync(fd, STAGED_DATA_MODE);
  } finally {
    closeSync(fd);
  }
}

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
