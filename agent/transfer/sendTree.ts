/**
 * Sending file content over a connection, shared by the pusher (source → receiver) and
 * the receiver's restore (stored version → client). Files up to INLINE_MAX go whole in one
 * File frame; larger ones as Begin, one Data or Copy frame per content-defined chunk, End.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { chunksOf } from "../chunking/fileChunks.ts";
import type { FramedConnection } from "../protocol/connection.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import { parentOf } from "../protocol/paths.ts";
import {
  binaryFilePayload,
  encodeCopy,
  encodeJson,
  encodeZeros,
  type FileHeader,
  filePayload,
  INLINE_MAX,
  type ManifestEntry,
} from "../protocol/messages.ts";
import { fsPath, printableName } from "../protocol/byteNames.ts";
import { isAllZeros, zerosHash } from "../chunking/zeros.ts";
import { isEntryProblem, problemReason } from "../source/scanTree.ts";

export interface LargeFileSend {
  path: string;
  mtime: number;
  mode: number;
  /** The absolute path to read. */
  file: string;
  /** Chunks the receiver can copy from its base version's file `base.path`. */
  base?: { path: string; offsets: Map<string, number> };
  /** The receiver already staged these leading chunks of this path (resume). */
  staged?: [number, string][];
  /** Chunks of zeros go as Zeros frames, holes at the other end (protocol version 2). */
  zeros?: boolean;
  /**
   * A read error once Begin has gone sends Abandon and throws AbandonedFile (the job goes
   * on without the file) instead of failing the job (protocol version 2).
   */
  abandon?: boolean;
  /** After each chunk is read (sent, copied or skipped): its length, for progress within a file. */
  onChunk?: (bytes: number) => void;
  /** Hash every chunk and return the file's chunk list (the replicator's view of the standby). */
  chunkList?: boolean;
  /** New chunks go as HashedData, each with its hash (protocol version 3, a push), not as Data. */
  hashedData?: boolean;
  /**
   * Asked once the last chunk is read: false when the file changed while it was read (its
   * bytes may be torn), and the file is then abandoned (AbandonedFile) instead of ended.
   */
  unchangedWhileRead?: () => boolean;
}

/** A large file abandoned mid-way because it could not be read: `cause` says why. */
export class AbandonedFile extends Error {
  constructor(path: string, cause: unknown) {
    super(`${path}: abandoned after part of it was sent: ${(cause as Error).message}`, { cause });
    this.name = "AbandonedFile";
  }
}

export interface SentFile {
  size: number;
  sha256: string;
  /** Bytes of file content that crossed the wire (Data and File payloads). */
  dataBytes: number;
  /** With `chunkList`: [length, SHA-256] of each chunk. */
  chunks?: [number, string][];
}

/**
 * Sends a small file already read into memory (it may be reused once this returns): as a
 * BinaryFile frame with `binary` (protocol version 3), else as a File frame.
 */
export async function sendSmallFile(
  connection: FramedConnection,
  header: FileHeader,
  content: Buffer,
  binary = false,
): Promise<void> {
  if (binary) await connection.sendParts(FrameType.BinaryFile, binaryFilePayload(header, content));
  else await connection.sendParts(FrameType.File, filePayload(header, content));
}

/**
 * Reads a small file whole into `scratch` (at least INLINE_MAX + 1 bytes, reused from file
 * to file so the many small files of a tree allocate nothing) and returns the bytes read.
 * Reading stops one byte past INLINE_MAX: a file that grew beyond it since the scan is
 * then seen as large by the caller.
 */
export function readSmallFile(path: string, scratch: Buffer): Buffer {
  const fd = openRegularFile(path);
  try {
    // One read: a short read of a regular file is its end, so no second call to learn that.
    const filled = readSync(fd, scratch, 0, scratch.length, null);
    return scratch.subarray(0, filled);
  } finally {
    closeSync(fd);
  }
}

const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * Opens a regular file for reading, never through a symlink at its name (O_NOFOLLOW) and
 * never blocking on a FIFO put in its place (O_NONBLOCK): a file that the scan saw, or a
 * stored file, replaced by a link is refused rather than read from wherever the link
 * points. Throws an error with code ELOOP (a link) or EFTYPE (not a regular file).
 */
export function openRegularFile(path: string): number {
  let fd: number;
  try {
    fd = openSync(fsPath(path), READ_NO_FOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ELOOP") throw error;
    throw Object.assign(
      new Error(`${printableName(path)} is a symbolic link, not a regular file; it is not read through`),
      {
        code: "ELOOP",
      },
    );
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw Object.assign(new Error(`${printableName(path)} is not a regular file`), { code: "EFTYPE" });
  }
  return fd;
}

/** A buffer for readSmallFile. */
export function smallFileScratch(): Buffer {
  return Buffer.allocUnsafe(INLINE_MAX + 1);
}

export async function sendLargeFile(connection: FramedConnection, file: LargeFileSend): Promise<SentFile> {
  const whole = createHash("sha256");
  let dataBytes = 0;
  let size = 0;
  let count = 0;
  let begun = false;
  let skipping = file.staged !== undefined && file.staged.length > 0;
  const chunkList: [number, string][] | undefined = file.chunkList ? [] : undefined;
  // Refuse a link or a special file before the first frame (chunksOf opens by name again).
  closeSync(openRegularFile(file.file));
  const chunks = chunksOf(file.file);
  for (;;) {
    let next: IteratorResult<{ bytes: Buffer }>;
    try {
      next = chunks.next();
    } catch (error) {
      // Before Begin nothing was sent: the caller reports the file. After it, the receiver
      // must drop what it staged, and the job goes on (PROTOCOL.md, "Sessions").
      if (!begun || file.abandon !== true || !isEntryProblem(error)) throw error;
      await connection.send(encodeJson(FrameType.Abandon, { reason: problemReason(error) }));
      throw new AbandonedFile(file.path, error);
    }
    if (next.done) break;
    const { bytes } = next.value;
    whole.update(bytes);
    size += bytes.length;
    count++;
    file.onChunk?.(bytes.length);
    // A chunk's hash only finds chunks the receiver has (in the base, or in the staged
    // prefix while that lasts); a file new to the receiver is sent without them.
    const zeros = file.zeros === true && isAllZeros(bytes);
    const digest =
      !zeros && (file.base !== undefined || skipping || chunkList || file.hashedData)
        ? createHash("sha256").update(bytes).digest()
        : undefined;
    const hash = zeros ? zerosHash(bytes.length) : digest ? digest.toString("hex") : "";
    chunkList?.push([bytes.length, hash]);
    // Resume: the receiver has these leading chunks already; send from the first that differs.
    if (skipping) {
      const staged = file.staged![count - 1];
      if (staged && staged[0] === bytes.length && staged[1] === hash) continue;
      skipping = false;
    }
    if (!begun) {
      begun = true;
      await sendBegin(connection, file, count - 1);
    }
    // Zeros before Copy: copying zeros from the base would write them out as data.
    const copyFrom = zeros ? undefined : file.base?.offsets.get(hash);
    if (zeros) {
      await connection.send(encodeZeros(bytes.length));
    } else if (copyFrom !== undefined) {
      await connection.send(encodeCopy(copyFrom, bytes.length, hash));
    } else {
      dataBytes += bytes.length;
      if (file.hashedData) await connection.sendParts(FrameType.HashedData, [digest!, bytes]);
      else await connection.sendParts(FrameType.Data, [bytes]);
    }
  }
  if (!begun) await sendBegin(connection, file, count);
  if (file.unchangedWhileRead && !file.unchangedWhileRead()) {
    await connection.send(encodeJson(FrameType.Abandon, { reason: "changed while it was read" }));
    throw new AbandonedFile(
      file.path,
      Object.assign(new Error("it changed while it was read"), { code: "ECHANGED" }),
    );
  }
  const sha256 = whole.digest("hex");
  await connection.send(encodeJson(FrameType.End, { size, sha256 }));
  return { size, sha256, dataBytes, ...(chunkList ? { chunks: chunkList } : {}) };
}

async function sendBegin(
  connection: FramedConnection,
  file: LargeFileSend,
  stagedChunks: number,
): Promise<void> {
  const resumeAt =
    file.staged && stagedChunks > 0
      ? file.staged.slice(0, stagedChunks).reduce((sum, [length]) => sum + length, 0)
      : undefined;
  await connection.send(
    encodeJson(FrameType.Begin, {
      path: file.path,
      mtime: file.mtime,
      mode: file.mode,
      ...(file.base && file.base.path !== file.path ? { base: file.base.path } : {}),
      ...(resumeAt !== undefined ? { resumeAt } : {}),
    }),
  );
}

/** Offsets of each chunk in a stored file, from its manifest chunk list. */
export function chunkOffsets(chunks: [number, string][]): Map<string, number> {
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const [length, hash] of chunks) {
    if (!offsets.has(hash)) offsets.set(hash, offset);
    offset += length;
  }
  return offsets;
}

/**
 * Sends a stored version's entries and content (restore), in path order. The tree is the
 * receiver's own, but it is on a disk others can reach: a stored file that is a link, a
 * directory that is not one, or an entry outside any directory of the manifest is refused
 * as `damaged-store` instead of being read from outside the store.
 */
export async function sendTree(
  connection: FramedConnection,
  tree: string,
  entries: ManifestEntry[],
  options: { zeros: boolean; hardLinks: boolean },
): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const scratch = smallFileScratch();
  const directories = new Set<string>();
  for (const entry of entries) {
    const parent = parentOf(entry.path);
    if (parent !== undefined && !directories.has(parent)) {
      throw damagedStore(entry.path, tree, `its directory ${parent} is not in the manifest`);
    }
    if (entry.type === "dir") {
      if (!lstatOrUndefined(join(tree, entry.path))?.isDirectory()) {
        throw damagedStore(entry.path, tree, "it is not a directory on disk (a link, a file, or missing)");
      }
      directories.add(entry.path);
      await connection.send(
        encodeJson(FrameType.Directory, { path: entry.path, mtime: entry.mtime, mode: entry.mode }),
      );
    } else if (entry.type === "symlink") {
      await connection.send(
        encodeJson(FrameType.Symlink, { path: entry.path, mtime: entry.mtime, target: entry.target }),
      );
    } else if (entry.hardLink !== undefined && options.hardLinks) {
      files++;
      await connection.send(encodeJson(FrameType.HardLink, { path: entry.path, to: entry.hardLink }));
    } else {
      files++;
      bytes += entry.size;
      const file = join(tree, entry.path);
      try {
        if (entry.size <= INLINE_MAX) {
          const { path, size, mtime, mode, sha256 } = entry;
          const content = readSmallFile(file, scratch);
          // Stored files never change; a size that differs means the store is damaged.
          if (content.length !== size)
            throw damagedStore(path, tree, `it is not ${size} bytes as the manifest says`);
          await sendSmallFile(connection, { path, size, mtime, mode, sha256 }, content);
        } else {
          const { path, mtime, mode } = entry;
          await sendLargeFile(connection, { path, mtime, mode, file, zeros: options.zeros });
        }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ELOOP")
          throw damagedStore(entry.path, tree, "it is a symbolic link, which restore never reads through");
        if (code === "EFTYPE") throw damagedStore(entry.path, tree, "it is not a regular file");
        if (code === "ENOENT" || code === "ENOTDIR") throw damagedStore(entry.path, tree, "it is missing");
        throw error;
      }
    }
  }
  return { files, bytes };
}

function damagedStore(path: string, tree: string, problem: string): ProtocolError {
  return new ProtocolError(
    "damaged-store",
    `the stored version is damaged at ${JSON.stringify(path)} (in ${tree}): ${problem}. ` +
      "It was changed outside Offsite; restore another version, or repair the store",
  );
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(fsPath(path));
  } catch {
    return undefined;
  }
}
