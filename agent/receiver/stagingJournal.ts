/**
 * The durable log of what a job has staged: one JSON line per accepted change (an entry
 * put at a path, or a path deleted), replayed when the next session resumes the job
 * (PROTOCOL.md, "Resume"). It knows nothing of where the staged data lives; whoever
 * replays it says which logged entries are still backed by data on disk.
 *
 * The subtle point is ordering. A line is appended only after its change is on disk, so a
 * crash can lose lines but never log a change that is not there; lines are written in
 * groups (and whenever the session is about to wait), so a crash loses at most the
 * unwritten group, which the client simply sends again. A crash can also tear the last
 * line: replay stops there, and rewrites the journal to what it kept, so a torn tail
 * never stands before the lines a resumed session appends.
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import type { ManifestEntry } from "../protocol/messages.ts";
import { OPEN, writeOwnFile } from "./storedFiles.ts";

export type JournalRecord = { put: ManifestEntry } | { delete: string };

/** Journal lines are written in groups of at most this many (and whenever the session waits). */
const JOURNAL_GROUP = 32;

export class StagingJournal {
  readonly file: string;
  /** What the journal says is staged, by path: an entry, or null for a deletion. */
  readonly changes = new Map<string, ManifestEntry | null>();
  private fd: number | undefined;
  /** Lines whose changes are on disk, not yet appended to the journal. */
  private pending: string[] = [];

  constructor(file: string) {
    this.file = file;
  }

  /**
   * Loads what an interrupted session logged into `changes` (a missing journal is an empty
   * one). A logged entry is kept only if `trust` says its data is still on disk; the
   * journal is then rewritten to exactly what was kept.
   */
  replay(trust: (entry: ManifestEntry) => boolean): void {
    const lines = existsSync(this.file) ? readFileSync(this.file, "utf8").split("\n") : [];
    for (const line of lines) {
      let record: JournalRecord;
      try {
        record = JSON.parse(line) as JournalRecord;
      } catch {
        break; // a torn last line: everything before it stands
      }
      if ("put" in record) {
        if (trust(record.put)) this.changes.set(record.put.path, record.put);
      } else {
        this.changes.set(record.delete, null);
      }
    }
    writeOwnFile(
      this.file,
      [...this.changes]
        .map(([path, entry]) => JSON.stringify(entry ? { put: entry } : { delete: path }) + "\n")
        .join(""),
    );
  }

  /** Opens the journal for appending (after replay, or on an empty staging area). */
  open(): void {
    this.fd = openSync(this.file, OPEN.append, 0o644);
  }

  /** Records a change whose data is already on disk; it reaches the journal with its group. */
  record(record: JournalRecord): void {
    if ("put" in record) this.changes.set(record.put.path, record.put);
    else this.changes.set(record.delete, null);
    this.pending.push(JSON.stringify(record) + "\n");
    if (this.pending.length >= JOURNAL_GROUP) this.flush();
  }

  /** Appends the pending lines. */
  flush(): void {
    if (this.pending.length > 0 && this.fd !== undefined) {
      writeSync(this.fd, this.pending.join(""));
      this.pending = [];
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
