/**
 * The entries of recently committed versions, parsed and keyed by path, kept by the
 * (long-running) receiver between sessions. Without it every push starts by reading and
 * parsing its base's manifest: 30–40 ms at 20,000 files, seconds at a million, for the
 * version the previous push just wrote. The commit puts its new version here as it writes
 * the manifest, so the next incremental of the source reads nothing.
 *
 * A committed manifest never changes, but what is on disk stays the truth: an entry is used
 * only while the manifest and its digest file are the very files it was made from (device,
 * inode, size, mtime and ctime of both, which no rewrite, edit or replacement keeps). The
 * maps are shared and must not be changed: StagingArea only reads its base, and the commit
 * copies an entry it has to change.
 */
import { lstatSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ManifestEntry } from "../protocol/messages.ts";
import { MANIFEST_DIGEST_FILE } from "./manifestFile.ts";

/**
 * Entries kept in all, across sources (about 150 bytes each in memory): a receiver's
 * resident size grows by at most this many entries, and a larger version is not kept.
 */
export const BASE_ENTRIES_CACHE_MAX = 500_000;

export interface BaseEntries {
  entries: ReadonlyMap<string, ManifestEntry>;
  /** The entries digest the commit recorded (manifestFile.ts). */
  digest: string;
}

interface Kept extends BaseEntries {
  manifest: string;
  identity: string;
}

/**
 * One version a source, the last committed (the next push's base), by the source's
 * directory; least recently used first.
 */
const kept = new Map<string, Kept>();
let keptEntries = 0;

/** What identifies the manifest at `path` and its digest file on disk now; undefined if either is missing. */
function identityOf(path: string): string | undefined {
  const parts: string[] = [];
  for (const file of [path, join(dirname(path), MANIFEST_DIGEST_FILE)]) {
    const stat = lstatSync(file, { throwIfNoEntry: false, bigint: true });
    if (!stat?.isFile()) return undefined;
    parts.push(`${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`);
  }
  return parts.join("/");
}

/** The kept entries of `source`'s manifest at `manifest`, if it is still the file they came from. */
export function keptBaseEntries(source: string, manifest: string): BaseEntries | undefined {
  const entry = kept.get(source);
  if (entry?.manifest !== manifest) return undefined;
  forget(source);
  if (identityOf(manifest) !== entry.identity) return undefined;
  remember(source, entry); // now the most recently used
  return { entries: entry.entries, digest: entry.digest };
}

/**
 * Keeps `entries` (by path, in path order) as those of `source`'s manifest just written at
 * `manifest`, with its digest file, in place of the version kept before.
 */
export function keepBaseEntries(
  source: string,
  manifest: string,
  entries: ReadonlyMap<string, ManifestEntry>,
  digest: string,
): void {
  forget(source);
  if (entries.size > BASE_ENTRIES_CACHE_MAX) return;
  const identity = identityOf(manifest);
  if (identity === undefined) return;
  for (const [oldest] of kept) {
    if (keptEntries + entries.size <= BASE_ENTRIES_CACHE_MAX) break;
    forget(oldest);
  }
  remember(source, { manifest, entries, digest, identity });
}

function remember(source: string, entry: Kept): void {
  kept.set(source, entry);
  keptEntries += entry.entries.size;
}

function forget(source: string): void {
  const entry = kept.get(source);
  if (!entry) return;
  kept.delete(source);
  keptEntries -= entry.entries.size;
}
