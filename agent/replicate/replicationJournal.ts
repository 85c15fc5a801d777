/**
 * The primary's durable record of changes the standby has not yet acknowledged, so that a
 * kill -9 of the agent loses nothing. `<state>/journal.jsonl`, one JSON object a line:
 *
 *   {"seq": N, "t": ms, "paths": [...]}   a batch of changed paths, written and fdatasynced
 *                                         before the batch is sent
 *   {"acked": N}                          the standby made every batch up to N durable
 *
 * On restart the paths of batches after the last `acked` are *suspects*: the catch-up
 * compares them by content (SHA-256) instead of trusting size and mtime, because a file
 * rewritten within the same millisecond with the same size would pass the quick check. The
 * catch-up scan itself finds every other difference, so the journal never has to hold the
 * tree, only what was in flight.
 *
 * Bounded: once everything is acknowledged and the file passes COMPACT_BYTES it starts
 * again empty; while the standby is away, past MAX_PENDING suspect paths it stops listing
 * them and writes {"overflow": ms} instead: the catch-up then compares by size and mtime
 * only, and reports that it did (`journal-overflow`).
 */
import {
  closeSync,
  constants,
  fdatasyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";

const COMPACT_BYTES = 4 * 1024 * 1024;
export const MAX_PENDING = 100_000;

interface BatchRecord {
  seq: number;
  t: number;
  paths: string[];
}

export class ReplicationJournal {
  private readonly fd: number;
  private bytes: number;
  private seq = 0;
  private acked = 0;
  /** Unacknowledged batches, oldest first. */
  private readonly batches: BatchRecord[] = [];
  private pendingPaths = 0;
  private overflowSince: number | undefined;

  constructor(stateDir: string) {
    const file = join(stateDir, "journal.jsonl");
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      // A new pair.
    }
    for (const line of text.split("\n")) {
      let record: Partial<BatchRecord & { acked: number; overflow: number }>;
      try {
        record = JSON.parse(line) as typeof record;
      } catch {
        continue; // a torn last line
      }
      if (typeof record.seq === "number" && Array.isArray(record.paths)) {
        this.seq = Math.max(this.seq, record.seq);
        this.batches.push({ seq: record.seq, t: record.t ?? 0, paths: record.paths });
        this.pendingPaths += record.paths.length;
      } else if (typeof record.acked === "number") {
        // After a compaction the ack may be the only line left: seq goes on from it.
        this.seq = Math.max(this.seq, record.acked);
        this.drop(record.acked);
      } else if (typeof record.overflow === "number") {
        this.overflowSince ??= record.overflow;
      }
    }
    this.fd = openSync(
      file,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
    this.bytes = Buffer.byteLength(text);
  }

  /** The newest batch recorded. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Changes seen and not yet durable on the standby (paths, counted per batch). */
  get pending(): number {
    return this.pendingPaths;
  }

  /** When the oldest unacknowledged change was seen, if any. */
  get oldestPending(): number | undefined {
    return this.overflowSince ?? this.batches[0]?.t;
  }

  /** Whether suspects were dropped for the bound (the catch-up then trusts size and mtime). */
  get overflowed(): boolean {
    return this.overflowSince !== undefined;
  }

  /** Paths changed and not acknowledged: the catch-up checks them by content. */
  suspects(): Set<string> {
    const paths = new Set<string>();
    for (const batch of this.batches) for (const path of batch.paths) paths.add(path);
    return paths;
  }

  /** Records a batch durably (before it is sent); returns its seq. */
  record(paths: string[], seenAt: number): number {
    const seq = ++this.seq;
    if (this.overflowSince !== undefined || this.pendingPaths + paths.length > MAX_PENDING) {
      if (this.overflowSince === undefined) {
        this.overflowSince = this.batches[0]?.t ?? seenAt;
        this.append({ overflow: this.overflowSince });
        this.batches.length = 0;
        this.pendingPaths = 0;
      }
      this.append({ seq, t: seenAt, paths: [] });
    } else {
      this.batches.push({ seq, t: seenAt, paths });
      this.pendingPaths += paths.length;
      this.append({ seq, t: seenAt, paths });
    }
    fdatasyncSync(this.fd);
    return seq;
  }

  /** The standby made every batch up to `seq` durable. */
  acknowledge(seq: number): void {
    if (seq <= this.acked) return;
    this.drop(seq);
    if (seq >= this.seq) this.overflowSince = undefined;
    if (this.batches.length === 0 && this.overflowSince === undefined && this.bytes > COMPACT_BYTES) {
      ftruncateSync(this.fd, 0);
      this.bytes = 0;
    }
    // Not synced: a lost acknowledgement only makes the next catch-up check more by content.
    this.append({ acked: seq });
  }

  close(): void {
    closeSync(this.fd);
  }

  private drop(acked: number): void {
    this.acked = Math.max(this.acked, acked);
    while (this.batches.length > 0 && this.batches[0]!.seq <= acked) {
      this.pendingPaths -= this.batches.shift()!.paths.length;
    }
  }

  private append(record: object): void {
    const line = `${JSON.stringify(record)}\n`;
    writeSync(this.fd, line);
    this.bytes += Buffer.byteLength(line);
  }
}
