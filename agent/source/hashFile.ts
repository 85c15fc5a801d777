/**
 * A local file's SHA-256, for deciding whether its content changed (source/whatChanged.ts)
 * when size and mtime cannot tell. Read in 1 MiB blocks with no chunking: the decision
 * needs only the whole file's hash. Reading to the end rather than to the scanned size
 * matters: a file that grew since the scan must not hash like its old prefix.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { INLINE_MAX } from "../protocol/messages.ts";

/** The SHA-256 of the file at `path`; `size` (the scanned size) only picks how to read it. */
export function hashFile(path: string, size: number): string {
  if (size <= INLINE_MAX) return createHash("sha256").update(readFileSync(path)).digest("hex");
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const fd = openSync(path, "r");
  try {
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}
