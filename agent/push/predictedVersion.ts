/**
 * The entries the receiver's new version will have, worked out by the pusher as it sends:
 * the receiver's view with each change applied as the receiver applies it (staging.ts,
 * and commitVersion.ts for hard links carried over). After Committed, their digest is
 * compared with the receiver's; only an exact match becomes the next job's cache
 * (receiverStateCache.ts). A prediction that is wrong therefore costs one full exchange
 * of entries next time, never a wrong backup.
 */
import type { FileEntry, ManifestEntry } from "../protocol/messages.ts";
import { comparePaths } from "../protocol/paths.ts";

export class PredictedVersion {
  private readonly entries: Map<string, ManifestEntry>;
  private readonly base: ReadonlyMap<string, ManifestEntry>;
  /** Paths this job sent something for: a hard link among them is checked, not carried. */
  private readonly changed = new Set<string>();

  constructor(base: ReadonlyMap<string, ManifestEntry>) {
    this.base = base;
    this.entries = new Map(base);
  }

  delete(path: string): void {
    this.entries.delete(path);
    this.changed.add(path);
  }

  put(entry: ManifestEntry): void {
    this.entries.set(entry.path, entry);
    this.changed.add(entry.path);
  }

  /** Link: `path` has the content of the base's file `from` (its size and chunks too). */
  link(path: string, from: string, mtime: number, mode: number, sha256: string): void {
    const source = this.base.get(from) as FileEntry;
    const entry: FileEntry = { type: "file", path, size: source.size, mtime, mode, sha256 };
    if (source.chunks) entry.chunks = source.chunks;
    this.put(entry);
  }

  /** HardLink: `path` is another name of `to`, as it is in the new version so far. */
  hardLink(path: string, to: string): void {
    const { hardLink: _, ...content } = this.entries.get(to) as FileEntry;
    this.put({ ...content, path, hardLink: to });
  }

  /** The new version's entries in path order, as the commit writes them. */
  sorted(): ManifestEntry[] {
    const sorted = [...this.entries.values()].sort((a, b) => comparePaths(a.path, b.path));
    const byPath = new Map(sorted.map((entry) => [entry.path, entry]));
    return sorted.map((entry) => {
      if (entry.type !== "file" || entry.hardLink === undefined || this.changed.has(entry.path)) return entry;
      // Carried from the base: a file of its own again if its first name changed (commitVersion.ts).
      const first = byPath.get(entry.hardLink);
      if (first?.type === "file" && first.hardLink === undefined && first.sha256 === entry.sha256)
        return entry;
      const { hardLink: _, ...own } = entry;
      return own;
    });
  }
}
