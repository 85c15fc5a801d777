/**
 * Watches a tree for changes with inotify, one watch per directory (Node's non-recursive
 * fs.watch; each is one inotify watch on the directory, none per file). The watcher only
 * says *which path* may have changed; the replicator looks at the path itself (lstat) to
 * learn what it is now, so a lost or merged event cannot make it send something wrong,
 * only late.
 *
 * The subtle points:
 * - a new directory is watched (watchDirectory) before it is listed, by the caller, so a
 *   file created in it in between is seen by the listing or by the watch;
 * - a directory renamed keeps its inotify watch, which would then report names under its
 *   old path: the caller re-watches the subtree under the new path (unwatchUnder, then
 *   watchDirectory as it walks), and a watch whose inode is not the directory's at its path
 *   any more (isWatchedAs) is made again;
 * - the watch limit (ENOSPC from inotify_add_watch, fs.inotify.max_user_watches) and any
 *   other failure to watch are reported through onLost: the replicator then falls back to
 *   rescanning, never to a silent gap. libuv does not report inotify's queue overflow
 *   (IN_Q_OVERFLOW), so the replicator also rescans on a timer (see replicateJob.ts).
 */
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { fsPath, nameFromBytes } from "../protocol/byteNames.ts";

/** fs.watch reporting names as bytes (names need not be UTF-8); its typings lack this overload. */
const watchNamesAsBytes = watch as unknown as (
  path: string | Buffer,
  options: { encoding: "buffer"; persistent: boolean },
) => FSWatcher;

export interface TreeWatcherEvents {
  /** `path` (relative to the root; "" is the root) may have changed. */
  onChange: (path: string) => void;
  /** Changes under `path` may be missed from now on: rescan it. */
  onLost: (path: string, reason: string) => void;
}

export class TreeWatcher {
  private readonly root: string;
  private readonly events: TreeWatcherEvents;
  private readonly watchers = new Map<string, FSWatcher>();
  /** The inode each watch was made on: a watch follows its directory if that is renamed. */
  private readonly inodes = new Map<string, number>();
  private closed = false;

  constructor(root: string, events: TreeWatcherEvents) {
    this.root = root;
    this.events = events;
  }

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Whether `path` is watched on the directory `ino` that is there now. A directory renamed
   * away and another made at its name (mv d old; mkdir d) leaves the watch on the old one.
   */
  isWatchedAs(path: string, ino: number): boolean {
    return this.watchers.has(path) && this.inodes.get(path) === ino;
  }

  /** Watches the directory `path`, inode `ino` (not its subdirectories). False when it cannot be watched. */
  watchDirectory(path: string, ino: number): boolean {
    if (this.closed || this.watchers.has(path)) return !this.closed;
    let watcher: FSWatcher;
    try {
      watcher = watchNamesAsBytes(fsPath(path === "" ? this.root : join(this.root, path)), {
        encoding: "buffer",
        persistent: false,
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return false; // gone already: its parent's event says so
      this.events.onLost(
        path,
        code === "ENOSPC"
          ? "the inotify watch limit is reached (raise fs.inotify.max_user_watches)"
          : `cannot watch it: ${(error as Error).message}`,
      );
      return false;
    }
    watcher.on("change", (_type, name) => {
      if (name === null || name === undefined) {
        this.events.onChange(path);
        return;
      }
      const child = nameFromBytes(typeof name === "string" ? Buffer.from(name) : name);
      this.events.onChange(path === "" ? child : `${path}/${child}`);
    });
    watcher.on("error", () => {
      // The directory went (or its watch did): drop it; its parent reports the removal.
      this.unwatch(path);
      this.events.onChange(path);
    });
    this.watchers.set(path, watcher);
    this.inodes.set(path, ino);
    return true;
  }

  /** Stops watching `path` and every directory under it. */
  unwatchUnder(path: string): void {
    const prefix = `${path}/`;
    for (const watched of [...this.watchers.keys()]) {
      if (watched === path || watched.startsWith(prefix) || path === "") this.unwatch(watched);
    }
  }

  close(): void {
    this.closed = true;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  private unwatch(path: string): void {
    this.watchers.get(path)?.close();
    this.watchers.delete(path);
    this.inodes.delete(path);
  }
}
