/**
 * `offsite compare`: how the source differs from a stored version, without sending file
 * data — only the receiver's entries travel. Files whose size and mtime match are taken as
 * equal unless `checksum` is set; the others are hashed locally and compared by SHA-256.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { openSession, type Endpoint } from "../client/openSession.ts";
import { INLINE_MAX } from "../protocol/messages.ts";
import { excludedPath, type FilterOptions } from "../source/filters.ts";
import { isVanished, scanTree } from "../source/scanTree.ts";

export interface CompareOptions {
  source: string;
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  version?: string;
  filters: FilterOptions;
  checksum?: boolean;
}

export interface CompareReport {
  version: string;
  match: boolean;
  /** In the source, not in the version (the next push adds them). */
  added: string[];
  /** In both, with different content, type or symlink target. */
  changed: string[];
  /** In the version, gone from the source (the next push deletes them). */
  missing: string[];
  /** In the version, but the current filters exclude them from the source. */
  extra: string[];
  filtered: { path: string; reason: string }[];
}

export async function compareJob(options: CompareOptions): Promise<CompareReport> {
  const scan = scanTree(options.source, options.filters);
  const session = await openSession(options.endpoint, {
    role: "compare",
    site: options.site,
    source: options.sourceId,
    ...(options.version ? { version: options.version } : {}),
  });
  await session.connection.close();
  const stored = session.entries;
  const report: CompareReport = {
    version: session.welcome.base!,
    match: true,
    added: [],
    changed: [],
    missing: [],
    extra: [],
    filtered: scan.filtered,
  };
  const filteredPaths = new Set(scan.filtered.map((f) => f.path));
  const seen = new Set<string>();
  for (const entry of scan.entries) {
    if (entry.type === "dir") {
      seen.add(entry.path);
      if (stored.get(entry.path)?.type !== "dir") report.added.push(entry.path);
      continue;
    }
    seen.add(entry.path);
    const known = stored.get(entry.path);
    if (!known) report.added.push(entry.path);
    else if (entry.type === "symlink") {
      if (known.type !== "symlink" || known.target !== entry.target) report.changed.push(entry.path);
    } else if (known.type !== "file" || known.size !== entry.size) report.changed.push(entry.path);
    else if (options.checksum || known.mtime !== entry.mtime) {
      let sha256: string;
      try {
        sha256 = hashFile(join(options.source, entry.path), entry.size);
      } catch (error) {
        if (!isVanished(error)) throw error;
        // Gone since the scan: the source no longer has it (reported as missing below).
        seen.delete(entry.path);
        continue;
      }
      if (sha256 !== known.sha256) report.changed.push(entry.path);
    }
  }
  for (const path of stored.keys()) {
    if (seen.has(path)) continue;
    if (filteredPaths.has(path) || excludedPath(path, options.filters)) report.extra.push(path);
    else report.missing.push(path);
  }
  report.match =
    report.added.length + report.changed.length + report.missing.length + report.extra.length === 0;
  return report;
}

/** A file's SHA-256, read in 1 MiB blocks (no chunking: compare needs only the whole). */
function hashFile(path: string, size: number): string {
  if (size <= INLINE_MAX) return createHash("sha256").update(readFileSync(path)).digest("hex");
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const fd = openSync(path, "r");
  try {
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}
