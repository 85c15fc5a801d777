/**
 * `offsite compare`: how the source differs from a stored version, without sending file
 * data — only the receiver's entries travel. Each entry is judged by whatChanged
 * (source/whatChanged.ts), the same decision push acts on, so compare reports a
 * difference exactly where the next push would record one: content, type and symlink
 * target changes under `changed`, mode and mtime changes (a chmod, a touch, a directory
 * whose contents changed) under `metadata`. Files whose size and mtime match are taken
 * as equal unless `checksum` is set; a file that only its hash can judge is hashed
 * locally. An entry that cannot be read (permission, I/O error, a directory that cannot be
 * listed) is reported under `problems`, never as missing or changed: what the version holds
 * there is neither confirmed nor contradicted, as the next push keeps it.
 */
import { join } from "node:path";
import { openSession, type Endpoint } from "../client/openSession.ts";
import { excludedPath, type FilterOptions } from "../source/filters.ts";
import { hashFile } from "../source/hashFile.ts";
import {
  coveredBy,
  type EntryProblem,
  isEntryProblem,
  isVanished,
  problemReason,
  scanTree,
} from "../source/scanTree.ts";
import { type MetadataAspect, whatChanged } from "../source/whatChanged.ts";
import { HARD_LINKS_VERSION } from "../protocol/messages.ts";

export interface CompareOptions {
  source: string;
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  version?: string;
  filters: FilterOptions;
  checksum?: boolean;
  /** Aborting it ends the session. */
  signal?: AbortSignal;
}

export interface CompareReport {
  version: string;
  /** Files the scan selected (after filters). */
  scanned: number;
  /**
   * Nothing differs and everything could be read: every list below is empty (exit status
   * 0). A difference is exit status 1; no difference but `problems`, 3 (partial).
   */
  match: boolean;
  /** In the source, not in the version (the next push adds them). */
  added: string[];
  /** In both, with different content, type or symlink target. */
  changed: string[];
  /**
   * In both with the same content (or target), but another mode or mtime: the next push
   * records the new metadata, sending no data.
   */
  metadata: { path: string; aspects: MetadataAspect[] }[];
  /** In the version, gone from the source (the next push deletes them). */
  missing: string[];
  /** In the version, but the current filters exclude them from the source. */
  extra: string[];
  filtered: { path: string; reason: string }[];
  /**
   * Entries that could not be read, with why. The version's entries at and under these
   * paths are not compared (neither missing nor changed).
   */
  problems: EntryProblem[];
}

export async function compareJob(options: CompareOptions): Promise<CompareReport> {
  const scan = scanTree(options.source, options.filters);
  const session = await openSession(options.endpoint, {
    role: "compare",
    site: options.site,
    source: options.sourceId,
    ...(options.version ? { version: options.version } : {}),
    signal: options.signal,
  });
  await session.connection.close();
  const stored = session.entries;
  const report: CompareReport = {
    version: session.welcome.base!,
    scanned: scan.entries.fileCount,
    match: true,
    added: [],
    changed: [],
    metadata: [],
    missing: [],
    extra: [],
    filtered: scan.filtered,
    problems: [...scan.problems],
  };
  const checksum = options.checksum ?? false;
  const hardLinks = session.welcome.version >= HARD_LINKS_VERSION;
  const filteredPaths = new Set(scan.filtered.map((f) => f.path));
  const seen = new Set<string>();
  for (const entry of scan.entries) {
    seen.add(entry.path);
    const known = stored.get(entry.path);
    let change = whatChanged(entry, known, { checksum, hardLinks });
    if (change.kind === "needs-hash") {
      let localSha256: string;
      try {
        localSha256 = hashFile(join(options.source, entry.path), entry.type === "file" ? entry.size : 0);
      } catch (error) {
        // Gone since the scan: the source no longer has it (reported as missing below).
        if (isVanished(error)) seen.delete(entry.path);
        else if (isEntryProblem(error))
          report.problems.push({ path: entry.path, reason: problemReason(error) });
        else throw error;
        continue;
      }
      change = whatChanged(entry, known, { checksum, localSha256, hardLinks });
    }
    switch (change.kind) {
      case "unchanged":
        break;
      case "new":
        report.added.push(entry.path);
        break;
      case "metadata":
        report.metadata.push({ path: entry.path, aspects: change.aspects });
        break;
      default:
        report.changed.push(entry.path);
    }
  }
  const unknown = coveredBy(scan.problems);
  for (const path of stored.keys()) {
    if (seen.has(path) || unknown(path)) continue;
    if (filteredPaths.has(path) || excludedPath(path, options.filters)) report.extra.push(path);
    else report.missing.push(path);
  }
  report.match =
    report.added.length +
      report.changed.length +
      report.metadata.length +
      report.missing.length +
      report.extra.length +
      report.problems.length ===
    0;
  return report;
}
