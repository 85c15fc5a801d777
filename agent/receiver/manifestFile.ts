/**
 * A version's manifest: one JSON ManifestEntry per line, sorted by path, in canonical lines
 * (protocol/entriesDigest.ts). Beside it, `entries.sha256` holds the digest of those lines
 * as the commit wrote them. Read back, a manifest whose bytes still hash to that digest is
 * the receiver's own, validated when its entries arrived, and is parsed as it is; any other
 * (an older receiver's, which has no digest file, or one changed since) goes through the
 * wire's zod schema, so a damaged file is an error, not a guess. The first is a tenth of
 * the cost, and an incremental push reads its base's manifest every time.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { canonicalLineBatches, EntriesDigest, linesAsJsonArray } from "../protocol/entriesDigest.ts";
import { manifestEntry, type ManifestEntry } from "../protocol/messages.ts";
import { OPEN, writeOwnFile } from "./storedFiles.ts";

/** The file beside a manifest that holds its entries digest. */
export const MANIFEST_DIGEST_FILE = "entries.sha256";

export function readManifest(path: string): ManifestEntry[] {
  return readManifestWithDigest(path).entries;
}

/** The entries, and their digest when the manifest is the one the commit wrote (else undefined). */
export function readManifestWithDigest(path: string): {
  entries: ManifestEntry[];
  digest: string | undefined;
} {
  const bytes = readOwnFile(path);
  const digest = new EntriesDigest().update(bytes).digest();
  const trusted = recordedDigest(join(dirname(path), MANIFEST_DIGEST_FILE)) === digest;
  if (trusted) return { entries: JSON.parse(linesAsJsonArray(bytes)) as ManifestEntry[], digest };
  const entries: ManifestEntry[] = [];
  bytes
    .toString("utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line === "") return;
      const parsed = manifestEntry.safeParse(JSON.parse(line));
      if (!parsed.success) throw new Error(`${path}:${i + 1}: not a manifest entry: ${parsed.error.message}`);
      entries.push(parsed.data);
    });
  return { entries, digest: undefined };
}

function recordedDigest(path: string): string | undefined {
  try {
    return readOwnFile(path).toString("ascii").trim();
  } catch {
    return undefined;
  }
}

function readOwnFile(path: string): Buffer {
  const fd = openSync(path, OPEN.read);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes and fsyncs the manifest in canonical lines; entries must already be sorted by
 * path. Returns the entries' digest (entriesDigest.ts), made from the same lines.
 */
export function writeManifest(path: string, entries: Iterable<ManifestEntry>): string {
  const fd = openSync(path, OPEN.write, 0o644);
  const digest = new EntriesDigest();
  try {
    for (const batch of canonicalLineBatches(entries)) {
      writeSync(fd, batch);
      digest.update(batch);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const hex = digest.digest();
  // Not fsynced: lost in a crash, the manifest is only read the slower way.
  writeOwnFile(join(dirname(path), MANIFEST_DIGEST_FILE), hex + "\n");
  return hex;
}

export { comparePaths } from "../protocol/paths.ts";
