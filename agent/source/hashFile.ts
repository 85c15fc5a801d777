/**
 * A local file's SHA-256, for deciding whether its content changed (source/whatChanged.ts)
 * when size and mtime cannot tell. Read in 1 MiB blocks with no chunking: the decision
 * needs only the whole file's hash. Reading to the end rather than to the scanned size
 * matters: a file that grew since the scan must not hash like its old prefix. Opened as
 * the pusher opens what it sends (openRegularFile: never through a link swapped in since
 * the scan, ELOOP; never a FIFO, EFTYPE).
 */
import { createHash } from "node:crypto";
import { closeSync, readSync } from "node:fs";
import { openRegularFile } from "../transfer/sendTree.ts";

/** The SHA-256 of the file at `path`; `size` (the scanned size) only sizes the read buffer. */
export function hashFile(path: string, size: number): string {
  const hash = createHash("sha256");
  // One more byte than the scanned size: a file that did not grow ends in one read.
  const buffer = Buffer.allocUnsafe(Math.min(Math.max(size + 1, 4096), 1024 * 1024));
  const fd = openRegularFile(path);
  try {
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}
