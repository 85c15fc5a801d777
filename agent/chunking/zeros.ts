/**
 * Runs of zero bytes (a sparse file's holes, a preallocated disk image): a chunk of zeros
 * travels as a Zeros frame and is left as a hole on disk, as rsync -S and restic do.
 * Content-defined chunking cuts a run of zeros into chunks of the maximum size, so a few
 * lengths recur and their hashes are worth keeping.
 */
import { createHash, type Hash } from "node:crypto";
import { MAX_CHUNK } from "./fastCdc.ts";

const ZEROS = Buffer.alloc(MAX_CHUNK);
const hashes = new Map<number, string>();

/** Whether every byte is zero (memcmp speed; a data chunk fails at its first non-zero byte). */
export function isAllZeros(bytes: Uint8Array): boolean {
  return bytes.length <= ZEROS.length && ZEROS.subarray(0, bytes.length).equals(bytes);
}

/** The SHA-256 of `length` zero bytes, hex (length ≤ MAX_CHUNK). */
export function zerosHash(length: number): string {
  let hash = hashes.get(length);
  if (hash === undefined) {
    hash = createHash("sha256").update(ZEROS.subarray(0, length)).digest("hex");
    if (hashes.size < 1024) hashes.set(length, hash);
  }
  return hash;
}

/** Feeds `length` zero bytes (≤ MAX_CHUNK) into a running hash. */
export function hashZeros(hash: Hash, length: number): void {
  hash.update(ZEROS.subarray(0, length));
}
