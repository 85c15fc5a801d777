/**
 * What every file the receiver writes for a version has in common, whoever writes it (the
 * staged tree, the large-file assembly): it is created read-only, and written whole. The
 * subtle point is the short write: writev may write less than asked (a signal, a nearly
 * full disk), and a file written short would fail its hash only much later, so writeAll
 * loops until every byte is down.
 */
import { writeSync, writevSync } from "node:fs";

/** Stored files are read-only: versions share them and must never change. */
export const STORED_FILE_MODE = 0o444;

/** Writes all `total` bytes of `buffers` at `position`, however many calls that takes. */
export function writeAll(fd: number, buffers: Buffer[], total: number, position: number): void {
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
