/**
 * `offsite push`: one backup job in one session. Scan and filter the source, learn what
 * the receiver has (its entries arrive once, up front, or come from this agent's cache of
 * them when the receiver confirms it by digest: receiverStateCache.ts), then stream only
 * the difference —
 * deletions, then directories, links and file content in path order — without waiting
 * for any acknowledgement until Commit.
 *
 * What counts as a difference is decided by whatChanged (source/whatChanged.ts), the
 * decision compare reports, so a push records a change exactly where compare said the
 * trees differ. Unchanged files (same size, mtime and mode) are not read; a file whose
 * content is the same but whose mode or mtime is not travels as a Link to itself (no
 * data); a changed large file sends only chunks its previous version lacks. With
 * `checksum`, every file is hashed first and its hash decides.
 */
import { createHash } from "node:crypto";
import { type EntriesFrom, openSession, type Endpoint } from "../client/openSession.ts";
import { PeerError } from "../protocol/connection.ts";
import { FrameType } from "../protocol/frames.ts";
import {
  ABANDON_VERSION,
  BINARY_FRAMES_VERSION,
  DELTA_VERSION,
  BYTE_NAMES_VERSION,
  encodeJson,
  ENTRIES_CACHE_VERSION,
  type FileEntry,
  INLINE_MAX,
  type ManifestEntry,
  HARD_LINKS_VERSION,
  UNREADABLE_COUNT,
  ZEROS_VERSION,
} from "../protocol/messages.ts";
import { type FilterOptions } from "../source/filters.ts";
import { hashFile } from "../source/hashFile.ts";
import {
  coveredBy,
  type EntryProblem,
  isEntryProblem,
  isVanished,
  problemReason,
  scanTree,
  type SourceEntry,
  withoutByteNames,
} from "../source/scanTree.ts";
import { whatChanged } from "../source/whatChanged.ts";
import { encodePatch } from "../protocol/deltaFrames.ts";
import { patchFor } from "../transfer/smallFileDelta.ts";
import { PredictedVersion } from "./predictedVersion.ts";
import { SignatureFetch } from "./signatureFetch.ts";
import { ReceiverStateCache } from "./receiverStateCache.ts";
import {
  AbandonedFile,
  chunkOffsets,
  readSmallFile,
  sendLargeFile,
  sendSmallFile,
  smallFileScratch,
} from "../transfer/sendTree.ts";

export interface PushOptions {
  source: string;
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  filters: FilterOptions;
  /** Hash every file instead of trusting size and mtime. */
  checksum?: boolean;
  onProgress?: (progress: PushProgress) => void;
  /** sending: the session is open and the difference starts; committing: Commit is sent. */
  onPhase?: (phase: "sending" | "committing") => void;
  /** Aborting it ends the session (the receiver keeps what is durable for the next push to resume). */
  signal?: AbortSignal;
  /**
   * Keep a cache of the receiver's entries here (receiverStateCache.ts), so that the next
   * incremental need not download them; undefined: no cache.
   */
  cacheDir?: string | undefined;
}

export interface PushProgress {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface PushReport {
  /**
   * `partial`: the version holds everything but the entries in `problems` (exit status 3);
   * `succeeded`: it holds the whole source, filters applied. (A failed job has no report.)
   * The names of contract/reports.ts's jobResult.
   */
  outcome: "succeeded" | "partial";
  version: string;
  base: string | null;
  resumed: boolean;
  /** `patched`: of those sent, the small files that went as a Patch of the receiver's copy. */
  files: { total: number; unchanged: number; sent: number; patched: number; linked: number; deleted: number };
  bytes: { total: number; content: number; wire: number; received: number };
  filtered: { path: string; reason: string }[];
  /**
   * Files the scan saw that were gone when their turn came (deleted or renamed while the
   * job ran, as live data is): not in the new version, and reported rather than failing
   * the job — rsync's "file has vanished".
   */
  vanished: string[];
  /**
   * Entries that could not be read (permission, I/O error, a link swapped in, a name too
   * long), with why: not backed up by this job. The new version keeps the receiver's
   * previous copy of each (no Delete is sent), and everything it had under a directory
   * that could not be listed.
   */
  problems: EntryProblem[];
  pruned: string[];
  /** Files sent again without Copy frames because the receiver's chunk list of them was wrong. */
  resentWhole: string[];
  /**
   * The receiver's entries this job diffed against: `from` the receiver or the cache, and
   * why a cache offered was not used (EntriesFrom, openSession.ts); and whether the cache
   * now holds the new version's (`off`: no cache directory, or a receiver older than
   * protocol version 3).
   */
  receiverState: {
    from: EntriesFrom;
    cache: "saved" | "dropped" | "off";
    problem?: string;
  };
  /** Milliseconds of each phase: the scan, the handshake with the entries, sending, the commit. */
  phases: { scanMs: number; handshakeMs: number; sendMs: number; commitMs: number };
  ms: number;
}

type FileSourceEntry = Extract<SourceEntry, { type: "file" }>;

/**
 * A Copy the receiver finds wrong (`copy-mismatch`) means its chunk list of that file is
 * wrong: a pusher sent HashedData with wrong hashes (a bug), and every later push of the
 * file would fail the same way. The job then runs again, resuming what was staged, with
 * that file sent without Copy frames, so the new version's chunk list is right. At most
 * three such files in one job.
 */
export async function pushJob(options: PushOptions): Promise<PushReport> {
  const distrusted = new Set<string>();
  for (;;) {
    try {
      const report = await pushSession(options, distrusted);
      return { ...report, resentWhole: [...distrusted] };
    } catch (error) {
      const path = error instanceof PeerError && error.code === "copy-mismatch" ? error.path : undefined;
      if (path === undefined || distrusted.has(path) || distrusted.size >= 3) throw error;
      distrusted.add(path);
    }
  }
}

/** One session of the job; `distrusted`: files whose base on the receiver is not to be copied from. */
async function pushSession(options: PushOptions, distrusted: ReadonlySet<string>): Promise<PushReport> {
  const started = Date.now();
  const scanned = scanTree(options.source, options.filters);
  const scannedAt = Date.now();
  const cache =
    options.cacheDir === undefined
      ? undefined
      : new ReceiverStateCache(options.cacheDir, {
          ca: options.endpoint.credentials.ca,
          host: options.endpoint.host,
          site: options.site,
          source: options.sourceId,
        });
  const session = await openSession(options.endpoint, {
    role: "push",
    site: options.site,
    source: options.sourceId,
    signal: options.signal,
    cached: cache?.load(),
  });
  const handshakeAt = Date.now();
  options.onPhase?.("sending");
  const { connection, entries } = session;
  // What the new version will hold, for the cache; only a receiver of version 3 confirms it.
  const predicted =
    cache && session.welcome.version >= ENTRIES_CACHE_VERSION ? new PredictedVersion(entries) : undefined;
  const scan =
    session.welcome.version >= BYTE_NAMES_VERSION
      ? scanned
      : withoutByteNames(scanned, session.welcome.version);
  try {
    const progress: PushProgress = {
      filesDone: 0,
      filesTotal: scan.entries.fileCount,
      bytesDone: 0,
      bytesTotal: scan.entries.fileBytes,
    };
    const report: PushReport = {
      outcome: "succeeded",
      version: "",
      base: session.welcome.base,
      resumed: session.welcome.resumed,
      files: { total: scan.entries.fileCount, unchanged: 0, sent: 0, patched: 0, linked: 0, deleted: 0 },
      bytes: { total: progress.bytesTotal, content: 0, wire: 0, received: 0 },
      filtered: scan.filtered,
      vanished: [...scan.vanished],
      problems: [...scan.problems],
      pruned: [],
      resentWhole: [],
      receiverState: { from: session.entriesFrom, cache: "off" },
      phases: { scanMs: scannedAt - started, handshakeMs: handshakeAt - scannedAt, sendMs: 0, commitMs: 0 },
      ms: 0,
    };

    // Deletions first, so a path that changes type (file ↔ directory) is free again. What
    // the scan could not see (an unreadable entry, a directory it could not list) is not
    // deleted: the receiver's previous copy stays in the new version.
    const present = new Set(scan.entries.paths);
    const unknown = coveredBy(scan.problems);
    const removed = [...entries.values()].filter((e) => !present.has(e.path) && !unknown(e.path));
    for (const entry of removed.sort((a, b) => b.path.length - a.path.length)) {
      await connection.send(encodeJson(FrameType.Delete, { path: entry.path }));
      predicted?.delete(entry.path);
      if (entry.type === "file") report.files.deleted++;
    }
    // Content of removed or replaced files, for rename detection: by hash, and by size for large files.
    const byHash = new Map<string, FileEntry>();
    const bySize = new Map<number, FileEntry>();
    for (const entry of entries.values()) {
      if (entry.type !== "file") continue;
      byHash.set(entry.sha256, entry);
      if (entry.size > INLINE_MAX && !present.has(entry.path)) bySize.set(entry.size, entry);
    }

    const vanishedFile = async (path: string) => {
      // The receiver must not carry its older copy over into the new version.
      if (entries.has(path)) {
        await connection.send(encodeJson(FrameType.Delete, { path }));
        predicted?.delete(path);
      }
      report.vanished.push(path);
    };
    /**
     * A file that cannot be read: nothing is sent for it, so the receiver carries its
     * previous copy (if any) into the new version, as rsync keeps it.
     */
    const unreadable = (path: string, error: unknown) => {
      report.problems.push({ path, reason: problemReason(error) });
    };
    let lastReport = 0;
    const scratch = smallFileScratch();
    /** The receiver has the bytes at `from` of its base: `entry` travels as a Link. */
    const sendLink = async (entry: FileSourceEntry, from: string, sha256: string) => {
      await connection.send(
        encodeJson(FrameType.Link, { path: entry.path, from, mtime: entry.mtime, mode: entry.mode, sha256 }),
      );
      predicted?.link(entry.path, from, entry.mtime, entry.mode, sha256);
      report.files.linked++;
    };
    /** Bytes of the large file in flight read so far: progress moves within a file too. */
    let inFile = 0;
    const report200ms = () => {
      if (options.onProgress && Date.now() - lastReport > 200) {
        lastReport = Date.now();
        options.onProgress({ ...progress, bytesDone: progress.bytesDone + inFile });
      }
    };
    /** A file is done: sent, carried, or skipped as vanished or unreadable. */
    const advance = (entry: FileSourceEntry) => {
      progress.filesDone++;
      progress.bytesDone += entry.size;
      inFile = 0;
      report200ms();
    };
    const checksum = options.checksum ?? false;
    const hardLinks = session.welcome.version >= HARD_LINKS_VERSION;
    // Small-file delta (version 3): the changed small files whose older copy the receiver
    // has get that copy's block signatures, asked for before the first file goes.
    const candidates =
      session.welcome.version >= DELTA_VERSION ? deltaCandidates(scan.entries, entries, hardLinks) : [];
    const signatures = candidates.length > 0 ? await SignatureFetch.start(connection, candidates) : undefined;
    const sourceRoot = options.source.endsWith("/") ? options.source.slice(0, -1) : options.source;
    const binaryFrames = session.welcome.version >= BINARY_FRAMES_VERSION;
    // Files of the new version so far (sent, linked or unchanged), and those unchanged: a
    // hard link names an earlier one of them (PROTOCOL.md, "Hard links").
    const kept = new Set<string>();
    const unchangedFiles = new Set<string>();
    for (const scanned of scan.entries) {
      // A later name of a file this job does not keep (unreadable, gone, a receiver of
      // version 1) travels as a file of its own.
      const entry =
        scanned.type === "file" &&
        scanned.hardLinkOf !== undefined &&
        (!hardLinks || !kept.has(scanned.hardLinkOf))
          ? { ...scanned, hardLinkOf: undefined }
          : scanned;
      const known = entries.get(entry.path);
      if (entry.type === "file" && entry.hardLinkOf !== undefined) {
        const to = entry.hardLinkOf;
        // Unchanged only if what it names is too: the receiver checks both are one file.
        const first = entries.get(to);
        const same =
          known?.type === "file" &&
          known.hardLink === to &&
          unchangedFiles.has(to) &&
          first?.type === "file" &&
          first.sha256 === known.sha256 &&
          whatChanged(entry, known, { checksum: false }).kind === "unchanged";
        if (same) {
          report.files.unchanged++;
          unchangedFiles.add(entry.path);
        } else {
          await connection.send(encodeJson(FrameType.HardLink, { path: entry.path, to }));
          predicted?.hardLink(entry.path, to);
          report.files.linked++;
        }
        kept.add(entry.path);
        advance(entry);
        continue;
      }
      let change = whatChanged(entry, known, { checksum, hardLinks });
      if (entry.type === "dir") {
        if (change.kind !== "unchanged") {
          await connection.send(
            encodeJson(FrameType.Directory, { path: entry.path, mtime: entry.mtime, mode: entry.mode }),
          );
          predicted?.put({ type: "dir", path: entry.path, mtime: entry.mtime, mode: entry.mode });
        }
        continue;
      }
      if (entry.type === "symlink") {
        if (change.kind !== "unchanged") {
          await connection.send(
            encodeJson(FrameType.Symlink, { path: entry.path, mtime: entry.mtime, target: entry.target }),
          );
          predicted?.put({ type: "symlink", path: entry.path, mtime: entry.mtime, target: entry.target });
        }
        continue;
      }
      // Concatenated, not joined (the scan's paths are relative and normal): most files of
      // an incremental are unchanged, and path.join cost more than deciding so.
      const absolute = `${sourceRoot}/${entry.path}`;
      // A small file is read whole (it travels whole unless the receiver has its bytes); a
      // large one only in checksum mode, to be hashed, because the hash alone decides there.
      let content: Buffer | undefined;
      let sha256: string | undefined;
      if (change.kind !== "unchanged" && change.kind !== "metadata") {
        try {
          if (entry.size <= INLINE_MAX) {
            content = readSmallFile(absolute, scratch);
            // One that grew past INLINE_MAX since the scan goes as a large one.
            if (content.length <= INLINE_MAX) {
              sha256 = createHash("sha256").update(content).digest("hex");
              change = whatChanged({ ...entry, size: content.length }, known, {
                checksum,
                localSha256: sha256,
                hardLinks,
              });
            }
          } else if (change.kind === "needs-hash" && checksum) {
            change = whatChanged(entry, known, {
              checksum,
              localSha256: hashFile(absolute, entry.size),
              hardLinks,
            });
          }
        } catch (error) {
          if (isVanished(error)) await vanishedFile(entry.path);
          else if (isEntryProblem(error)) unreadable(entry.path, error);
          else throw error;
          advance(entry);
          continue;
        }
      }
      if (change.kind === "unchanged") {
        report.files.unchanged++;
        unchangedFiles.add(entry.path);
      } else if (change.kind === "metadata" && known?.type === "file") {
        // The receiver has exactly these bytes at this path: only the metadata travels.
        await sendLink(entry, known.path, known.sha256);
      } else if (content && sha256 !== undefined) {
        const from = byHash.get(sha256);
        if (from) {
          // The receiver has these bytes already (a rename or a copy).
          await sendLink(entry, from.path, sha256);
        } else {
          const header = {
            path: entry.path,
            size: content.length,
            mtime: entry.mtime,
            mode: entry.mode,
            sha256,
          };
          // The receiver's older copy, where it has one: only what differs from it travels.
          const signature = await signatures?.signatureOf(entry.path);
          const patch = signature && patchFor(content, signature);
          if (signature && patch) {
            await connection.send(encodePatch(header, signature.blockSize, patch));
            report.files.patched++;
            report.bytes.content += patch.reduce(
              (sum, op) => sum + ("literal" in op ? op.literal.length : 0),
              0,
            );
          } else {
            await sendSmallFile(connection, header, content, binaryFrames);
            report.bytes.content += content.length;
          }
          predicted?.put({ type: "file", ...header });
          report.files.sent++;
        }
      } else {
        const base = distrusted.has(entry.path)
          ? undefined
          : known?.type === "file"
            ? known
            : bySize.get(entry.size);
        const written = connection.bytesWritten;
        let sent;
        try {
          sent = await sendLargeFile(connection, {
            path: entry.path,
            mtime: entry.mtime,
            mode: entry.mode,
            file: absolute,
            ...(base?.chunks ? { base: { path: base.path, offsets: chunkOffsets(base.chunks) } } : {}),
            ...(session.partial?.path === entry.path ? { staged: session.partial.chunks } : {}),
            zeros: session.welcome.version >= ZEROS_VERSION,
            abandon: session.welcome.version >= ABANDON_VERSION,
            chunkList: predicted !== undefined,
            hashedData: binaryFrames,
            onChunk: (bytes) => {
              inFile = Math.min(inFile + bytes, entry.size);
              report200ms();
            },
          });
        } catch (error) {
          // Unreadable halfway (an EIO): the receiver dropped what it staged and keeps its
          // previous copy; the file is reported like any unreadable entry.
          if (error instanceof AbandonedFile) {
            unreadable(entry.path, error.cause);
            advance(entry);
            continue;
          }
          // Opening the file and reading its first chunk come before any frame: a file that
          // is gone or unreadable has sent nothing, and an open one cannot vanish under its
          // reader. A read error once Begin has gone (EIO halfway) cannot be taken back in
          // protocol version 1: the job fails, and the next push resumes what was staged.
          // (Version 2 abandons the file instead: AbandonedFile above.)
          if (connection.bytesWritten !== written) {
            if (!isEntryProblem(error)) throw error;
            throw new Error(
              `${entry.path}: ${problemReason(error)} after part of it was sent; ` +
                "the job stops here and the next push resumes it",
              { cause: error },
            );
          }
          if (isVanished(error)) await vanishedFile(entry.path);
          else if (isEntryProblem(error)) unreadable(entry.path, error);
          else throw error;
          advance(entry);
          continue;
        }
        predicted?.put({
          type: "file",
          path: entry.path,
          size: sent.size,
          mtime: entry.mtime,
          mode: entry.mode,
          sha256: sent.sha256,
          ...(sent.chunks ? { chunks: sent.chunks } : {}),
        });
        report.files.sent++;
        report.bytes.content += sent.dataBytes;
      }
      kept.add(entry.path);
      advance(entry);
    }

    const filteredCounts: Record<string, number> = {};
    for (const { reason } of scan.filtered) filteredCounts[reason] = (filteredCounts[reason] ?? 0) + 1;
    // Carried in the counts every receiver takes (PROTOCOL.md, "Messages": Commit).
    if (report.problems.length > 0) filteredCounts[UNREADABLE_COUNT] = report.problems.length;
    // Every signature asked for must be in before Committed is awaited (and a failure there shows).
    await signatures?.done();
    options.onPhase?.("committing");
    const sentAt = Date.now();
    await connection.send(
      encodeJson(FrameType.Commit, {
        files: scan.entries.fileCount,
        bytes: progress.bytesTotal,
        filtered: filteredCounts,
      }),
    );
    // The cache's lines are made while the receiver commits, not after: Commit goes first.
    connection.flushNow();
    const prepared = cache && predicted ? ReceiverStateCache.prepare(predicted.sorted()) : undefined;
    const committed = await connection.expect(FrameType.Committed);
    options.onProgress?.({ ...progress });
    report.version = committed.version;
    report.outcome = report.problems.length > 0 ? "partial" : "succeeded";
    report.pruned = committed.pruned;
    report.bytes.received = committed.bytesReceived;
    report.bytes.wire = connection.bytesWritten;
    const committedAt = Date.now();
    if (cache && prepared && committed.digest !== undefined) {
      try {
        report.receiverState.cache = cache.save(committed.version, prepared, committed.digest)
          ? "saved"
          : "dropped";
      } catch (error) {
        // The cache only saves time: a directory it cannot write costs the next job a full exchange.
        report.receiverState.cache = "off";
        report.receiverState.problem = `cannot write the receiver state cache in ${cache.dir}: ${(error as Error).message}`;
      }
    }
    report.phases.sendMs = sentAt - handshakeAt;
    report.phases.commitMs = committedAt - sentAt;
    report.ms = Date.now() - started;
    return report;
  } finally {
    await connection.close();
  }
}

/** A small file's older copy is worth a patch from this size on; smaller ones travel whole. */
const DELTA_MIN_BYTES = 1024;

/**
 * The files worth a patch: small, changed by size or mtime (so most likely by content),
 * and whose copy at the same path on the receiver is a small file too.
 */
function deltaCandidates(
  scanned: Iterable<SourceEntry>,
  entries: ReadonlyMap<string, ManifestEntry>,
  hardLinks: boolean,
): string[] {
  const paths: string[] = [];
  for (const entry of scanned) {
    if (entry.type !== "file" || entry.hardLinkOf !== undefined) continue;
    if (entry.size < DELTA_MIN_BYTES || entry.size > INLINE_MAX) continue;
    const known = entries.get(entry.path);
    if (known?.type !== "file" || known.size < DELTA_MIN_BYTES || known.size > INLINE_MAX) continue;
    const kind = whatChanged(entry, known, { checksum: false, hardLinks }).kind;
    if (kind === "content" || kind === "needs-hash") paths.push(entry.path);
  }
  return paths;
}
