/**
 * A version's manifest: one JSON ManifestEntry per line, sorted by path. Read back
 * through the same zod schema as the wire, so a damaged file is an error, not a guess.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { manifestEntry, type ManifestEntry } from "../protocol/messages.ts";

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
  const fd = openSync(path, "w", 0o644);
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

/** Path order that puts a directory right before its contents ("a", "a/b", "a-c"). */
export function comparePaths(a: string, b: string): number {
  const x = a.replaceAll("/", "\0");
  const y = b.replaceAll("/", "\0");
  return x < y ? -1 : x > y ? 1 : 0;
}
