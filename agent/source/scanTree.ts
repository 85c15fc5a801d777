/**
 * Walks the source tree: every directory, regular file and symlink under the root, with
 * the filters applied as it goes (an excluded directory is not descended into). lstat,
 * never stat: a symlink is recorded as a link and never followed out of the tree.
 * Synchronous on purpose — a walk is many tiny system calls, which the async API makes
 * several times slower (../shared/notes/performance.md).
 */
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { comparePaths } from "../receiver/manifestFile.ts";
import { excludedPath, type FilterOptions, type FilterReason, fileFilterReason } from "./filters.ts";

export type SourceEntry =
  | { type: "file"; path: string; size: number; mtime: number; mode: number }
  | { type: "dir"; path: string; mtime: number; mode: number }
  | { type: "symlink"; path: string; mtime: number; target: string };

export interface ScanResult {
  /** In path order, a directory before its contents. */
  entries: SourceEntry[];
  filtered: { path: string; reason: FilterReason | "special-file" }[];
}

export function scanTree(root: string, filters: FilterOptions): ScanResult {
  const entries: SourceEntry[] = [];
  const filtered: ScanResult["filtered"] = [];
  const walk = (prefix: string) => {
    const names = readdirSync(prefix ? join(root, prefix) : root);
    for (const name of names) {
      const path = prefix ? `${prefix}/${name}` : name;
      const absolute = join(root, path);
      const stat = lstatSync(absolute);
      const mtime = Math.floor(stat.mtimeMs);
      if (stat.isDirectory()) {
        if (excludedPath(path, filters)) {
          filtered.push({ path, reason: "excluded" });
          continue;
        }
        entries.push({ type: "dir", path, mtime, mode: stat.mode & 0o7777 });
        walk(path);
      } else if (stat.isFile()) {
        const reason = fileFilterReason(path, stat.size, absolute, filters);
        if (reason) filtered.push({ path, reason });
        else entries.push({ type: "file", path, size: stat.size, mtime, mode: stat.mode & 0o7777 });
      } else if (stat.isSymbolicLink()) {
        if (excludedPath(path, filters)) filtered.push({ path, reason: "excluded" });
        else entries.push({ type: "symlink", path, mtime, target: readlinkSync(absolute) });
      } else {
        // Sockets, FIFOs and devices are not data to back up; they are reported, not sent.
        filtered.push({ path, reason: "special-file" });
      }
    }
  };
  walk("");
  entries.sort((a, b) => comparePaths(a.path, b.path));
  return { entries, filtered };
}
