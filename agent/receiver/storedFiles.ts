/**
 * What every file the receiver writes for a version has in common, whoever writes it (the
 * staged tree, the large-file assembly): it is created read-only, and written whole. The
 * subtle point is the short write: writev may write less than asked (a signal, a nearly
 * full disk), and a file written short would fail its hash only much later, so writeAll
 * loops until every byte is down.
 */
import { closeSync, constants, fstatSync, openSync, writeSync, writevSync } from "node:fs";
import { fsPath } from "../protocol/byteNames.ts";
import { ProtocolError } from "../protocol/frames.ts";

/** Stored files are read-only: versions share them and must never change. */
export const STORED_FILE_MODE = 0o444;

const { O_APPEND, O_CREAT, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY } = constants;
/**
 * Open flags for the receiver's own files (staging, journal, manifests) and the stored
 * files it reads: never through a symlink at the name, so a link planted in the store
 * cannot make the receiver write, or read, outside it (PROTOCOL.md, threat model).
 */
export const OPEN = {
  read: O_RDONLY | O_NOFOLLOW | O_NONBLOCK,
  write: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
  update: O_RDWR | O_CREAT | O_NOFOLLOW,
  append: O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW,
} as const;

/** Writes `text` as the whole of the receiver's own file at `path`, never through a link. */
export function writeOwnFile(path: string, text: string): void {
  const fd = openSync(path, OPEN.write, 0o644);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** A stored file that is a link (or otherwise not what the manifest says): the store was changed outside Offsite. */
export function damagedStore(file: string, problem: string): ProtocolError {
  return new ProtocolError(
    "damaged-store",
    `the store is damaged: ${file} ${problem}. It was changed outside Offsite and is not read through; ` +
      "repair or remove that version",
  );
}

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

/** Opens a stored file to read, refusing a link or anything but a regular file (`damaged-store`). */
export function openStoredFile(file: string): number {
  let fd: number;
  try {
    fd = openSync(fsPath(file), OPEN.read);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ELOOP") throw damagedStore(file, "is a symbolic link");
    throw error;
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw damagedStore(file, "is not a regular file");
  }
  return fd;
}
