/**
 * The primary's view of the standby's tree: the Entries it sent when the session began,
 * then every change as it is sent (optimistically: a session that breaks starts again from
 * the standby's own Entries, so this view never outlives the truth). Each entry may carry
 * the local inode it mirrors, which is how a rename is recognised as one.
 */
import type { ManifestEntry } from "../protocol/messages.ts";

export type RemoteEntry = ManifestEntry & { ino?: number };

export class RemoteTree {
  private readonly entries = new Map<string, RemoteEntry>();
  private readonly byInode = new Map<number, string>();

  constructor(entries: Iterable<ManifestEntry>) {
    for (const entry of entries) this.entries.set(entry.path, entry);
  }

  get(path: string): RemoteEntry | undefined {
    return this.entries.get(path);
  }

  has(path: string): boolean {
    return this.entries.has(path);
  }

  get size(): number {
    return this.entries.size;
  }

  values(): IterableIterator<RemoteEntry> {
    return this.entries.values();
  }

  /** The path whose entry mirrors local inode `ino`, if any. */
  pathOfInode(ino: number): string | undefined {
    return this.byInode.get(ino);
  }

  set(entry: RemoteEntry): void {
    // A directory replaced by a file or a link takes its contents with it (the standby's does).
    if (entry.type !== "dir" && this.entries.get(entry.path)?.type === "dir") this.deleteUnder(entry.path);
    const previous = this.entries.get(entry.path);
    if (previous?.ino !== undefined && this.byInode.get(previous.ino) === entry.path) {
      this.byInode.delete(previous.ino);
    }
    this.entries.set(entry.path, entry);
    if (entry.ino) this.byInode.set(entry.ino, entry.path);
  }

  /** Removes `path` and everything under it. */
  deleteUnder(path: string): void {
    for (const key of this.keysUnder(path)) {
      const entry = this.entries.get(key)!;
      if (entry.ino !== undefined && this.byInode.get(entry.ino) === key) this.byInode.delete(entry.ino);
      this.entries.delete(key);
    }
  }

  /** `from` and everything under it are now at `to` (a Rename). */
  move(from: string, to: string): void {
    this.deleteUnder(to);
    const moved = this.keysUnder(from).map((key) => this.entries.get(key)!);
    this.deleteUnder(from);
    for (const entry of moved) this.set({ ...entry, path: to + entry.path.slice(from.length) });
  }

  /** Paths at or under `path` (a directory's subtree). */
  keysUnder(path: string): string[] {
    const prefix = `${path}/`;
    const keys: string[] = [];
    if (this.entries.has(path)) keys.push(path);
    if (this.entries.get(path)?.type === "dir" || !this.entries.has(path)) {
      for (const key of this.entries.keys()) if (key.startsWith(prefix)) keys.push(key);
    }
    return keys;
  }
}
