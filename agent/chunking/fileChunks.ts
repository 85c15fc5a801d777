/**
 * Chunks a file as it is read: content-defined cut points (FastCDC), with a bounded
 * buffer whatever the file's size (chunksOf), and each chunk's SHA-256 where a caller
 * needs it (chunkFile). Reads are synchronous on purpose: on this kind of machine they
 * run several times faster than fs.promises for the many small reads a backup makes
 * (../shared/notes/performance.md).
 */
import { createHash } from "node:crypto";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { MAX_CHUNK } from "./fastCdc.ts";
import { WasmChunker } from "./wasmChunker.ts";
import { fsPath } from "../protocol/byteNames.ts";
import type { TimeSlice } from "../timeSlice.ts";

export interface Chunk {
  offset: number;
  length: number;
  /** SHA-256 of the chunk's bytes, hex. */
  hash: string;
}

/** A chunk as cut, with its bytes: callers hash it only when they need to. */
export interface CutChunk {
  offset: number;
  /** Valid only until the next chunk is requested (the buffer is reused). */
  bytes: Buffer;
}

const BUFFER_SIZE = 16 * MAX_CHUNK;

/**
 * Yields every chunk of the file in order with its bytes; the bytes are valid only until
 * the next chunk is requested (the buffer is reused), so copy or send them at once. No
 * hashing here: a new file's chunks go out as they are, and hashing them would be a
 * second pass over every byte (the receiver hashes what it receives anyway).
 */
export function* chunksOf(path: string): Generator<CutChunk> {
  // Never through a link swapped in since the scan, never blocking on a FIFO.
  const fd = openSync(fsPath(path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    // The file is read straight into the chunker's WebAssembly memory.
    const chunker = new WasmChunker(BUFFER_SIZE);
    const buffer = chunker.buffer;
    let filled = 0;
    let consumed = 0;
    let fileOffset = 0;
    let eof = false;
    for (;;) {
      // Keep at least MAX_CHUNK bytes ahead of the cursor until the end of the file.
      if (!eof && filled - consumed < MAX_CHUNK) {
        buffer.copyWithin(0, consumed, filled);
        filled -= consumed;
        consumed = 0;
        while (filled < BUFFER_SIZE) {
          const read = readSync(fd, buffer, filled, BUFFER_SIZE - filled, null);
          if (read === 0) {
            eof = true;
            break;
          }
          filled += read;
        }
      }
      const available = filled - consumed;
      if (available === 0) return;
      const length = chunker.nextCut(consumed, available);
      yield { offset: fileOffset, bytes: buffer.subarray(consumed, consumed + length) };
      consumed += length;
      fileOffset += length;
    }
  } finally {
    closeSync(fd);
  }
}

/** Every chunk of a file, and the whole file's SHA-256 and size as read. */
export function chunkFile(
  path: string,
  onChunk: (chunk: Chunk, bytes: Buffer) => void,
): { sha256: string; size: number } {
  const hashing = new ChunkHashing();
  for (const { offset, bytes } of chunksOf(path)) onChunk(hashing.add(offset, bytes), bytes);
  return hashing.whole();
}

/**
 * chunkFile for a server: between chunks the event loop may turn (`slice`), so hashing a
 * file of many GiB never stalls the other sessions or the health endpoint; `afterYield`
 * runs each time it did (it throws to stop: the file is closed).
 */
export async function chunkFileInSlices(
  path: string,
  onChunk: (chunk: Chunk) => void,
  slice: TimeSlice,
  afterYield: () => void = () => undefined,
): Promise<{ sha256: string; size: number }> {
  const hashing = new ChunkHashing();
  for (const { offset, bytes } of chunksOf(path)) {
    onChunk(hashing.add(offset, bytes));
    const turn = slice.yieldIfSpent();
    if (turn) {
      await turn;
      afterYield();
    }
  }
  return hashing.whole();
}

/** Each chunk's SHA-256, and the whole file's over the chunks in order. */
class ChunkHashing {
  private readonly hash = createHash("sha256");
  private size = 0;

  add(offset: number, bytes: Buffer): Chunk {
    this.hash.update(bytes);
    this.size += bytes.length;
    return { offset, length: bytes.length, hash: createHash("sha256").update(bytes).digest("hex") };
  }

  whole(): { sha256: string; size: number } {
    return { sha256: this.hash.digest("hex"), size: this.size };
  }
}
