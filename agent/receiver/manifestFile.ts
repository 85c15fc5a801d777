/**
 * A version's manifest: one JSON ManifestEntry per line, sorted by path. Read back
 * through the same zod schema as the wire, so a damaged file is an error, not a guess.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
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

/** Writes and fsyncs the manifest; entries must already be sorted by path. */
export function writeManifest(path: string, entries: Iterable<ManifestEntry>): void {
  const fd = openSync(path, OPEN.write, 0o644);
  try {
    let batch = "";
    for (const entry of entries) {
      batch += JSON.stringify(entry) + "\n";
      if (batch.length > 1 << 20) {
        writeSync(fd, batch);
        batch = "";
      }
    }
    writeSync(fd, batch);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export { comparePaths } from "../protocol/paths.ts";
