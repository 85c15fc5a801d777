/**
 * The digest of a version's entries (PROTOCOL.md, "Receiver state cache", version 3): the
 * SHA-256 of a fixed prefix and one canonical line per entry, in path order. The receiver
 * names it in Welcome when it withholds its entries and in Committed for the new version;
 * a pusher's cache of those entries is used only when its own lines hash to it. The
 * canonical line fixes the key order, so the form an entry was parsed from (an older
 * manifest, a journal record) does not matter, and the manifest is written in it.
 */
import { createHash, type Hash } from "node:crypto";
import type { ManifestEntry } from "./messages.ts";

export const ENTRIES_DIGEST_PREFIX = "offsite-entries-3\n";

/** One entry as its canonical JSON line, newline included. */
export function canonicalEntryLine(entry: ManifestEntry): string {
  switch (entry.type) {
    case "file": {
      const { path, size, mtime, mode, sha256, chunks, hardLink } = entry;
      const canonical: Record<string, unknown> = { type: "file", path, size, mtime, mode, sha256 };
      if (chunks !== undefined) canonical.chunks = chunks;
      if (hardLink !== undefined) canonical.hardLink = hardLink;
      return JSON.stringify(canonical) + "\n";
    }
    case "dir":
      return JSON.stringify({ type: "dir", path: entry.path, mtime: entry.mtime, mode: entry.mode }) + "\n";
    case "symlink":
      return (
        JSON.stringify({ type: "symlink", path: entry.path, mtime: entry.mtime, target: entry.target }) + "\n"
      );
  }
}

/** Hashes canonical lines as they are produced (or read back from a file that holds them). */
export class EntriesDigest {
  private readonly hash: Hash = createHash("sha256").update(ENTRIES_DIGEST_PREFIX);

  update(lines: string | Uint8Array): this {
    this.hash.update(lines);
    return this;
  }

  digest(): string {
    return this.hash.digest("hex");
  }
}

/**
 * `entries` as canonical lines, gathered into strings of about a megabyte: what the
 * manifest writer, the pusher's cache and the digest consume, each in its own way.
 */
export function* canonicalLineBatches(entries: Iterable<ManifestEntry>): Generator<string> {
  let batch = "";
  for (const entry of entries) {
    batch += canonicalEntryLine(entry);
    if (batch.length > 1 << 20) {
      yield batch;
      batch = "";
    }
  }
  yield batch;
}

/** The digest of `entries`, which must be in path order (comparePaths). */
export function entriesDigest(entries: Iterable<ManifestEntry>): string {
  const digest = new EntriesDigest();
  for (const batch of canonicalLineBatches(entries)) digest.update(batch);
  return digest.digest();
}

/** Canonical lines (one JSON object each, newline-terminated) as the text of one JSON array. */
export function linesAsJsonArray(lines: Buffer): string {
  const text = lines.toString("utf8");
  const body = text.endsWith("\n") ? text.slice(0, -1) : text;
  return body === "" ? "[]" : `[${body.replaceAll("\n", ",")}]`;
}
