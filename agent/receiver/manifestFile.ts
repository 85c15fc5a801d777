/**
 * A version's manifest: one JSON ManifestEntry per line, sorted by path. Read back
 * through the same zod schema as the wire, so a damaged file is an error, not a guess.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { canonicalEntryLine, EntriesDigest } from "../protocol/entriesDigest.ts";
import { manifestEntry, type ManifestEntry } from "../protocol/messages.ts";
import { OPEN } from "./storedFiles.ts";

export function readManifest(path: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const lines = readFileSync(path, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (line === "") return;
    const parsed = manifestEntry.safeParse(JSON.parse(line));
    if (!parsed.success) throw new Error(`${path}:${i + 1}: not a manifest entry: ${parsed.error.message}`);
    entries.push(parsed.data);
  });
  return entries;
}

/**
 * Writes and fsyncs the manifest in canonical lines; entries must already be sorted by
 * path. Returns the entries' digest (entriesDigest.ts), made from the same lines.
 */
export function writeManifest(path: string, entries: Iterable<ManifestEntry>): string {
  const fd = openSync(path, OPEN.write, 0o644);
  const digest = new EntriesDigest();
  try {
    let batch = "";
    for (const entry of entries) {
      batch += canonicalEntryLine(entry);
      if (batch.length > 1 << 20) {
        writeSync(fd, batch);
        digest.update(batch);
        batch = "";
      }
    }
    writeSync(fd, batch);
    digest.update(batch);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return digest.digest();
}

export { comparePaths } from "../protocol/paths.ts";
