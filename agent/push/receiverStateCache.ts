/**
 * The pusher's cache of what the receiver holds (PROTOCOL.md, "Receiver state cache"):
 * the entries of the source's current version on one receiver, so that an incremental
 * push sends its changes after one round trip instead of downloading every entry.
 *
 * The cache is never trusted on its own word. Its body is the entries as canonical lines
 * (protocol/entriesDigest.ts); the receiver names the digest of its current version's
 * entries, and the cache is used only when the body hashes to exactly that. A cache that
 * is deleted, stale, truncated, edited or not a file at all therefore costs one full
 * exchange of entries, never a wrong backup. It is written only when the agent's
 * prediction of the new version hashes to the digest the receiver sends in Committed.
 *
 * One file per receiver and source: `<dir>/<sha256 of CA, host, site, source>.entries`.
 * The CA (not the receiver's certificate, which rotates) and the host tell receivers apart;
 * a port is left out because a local store's receiver takes a new one every run.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { isVersionId } from "../../contract/versions.ts";
import { canonicalLineBatches, EntriesDigest, linesAsJsonArray } from "../protocol/entriesDigest.ts";
import type { ManifestEntry } from "../protocol/messages.ts";

const FORMAT = "offsite-receiver-state-1";
/**
 * A cache larger than this is not written (about 1.7 million entries): the sidecar keeps it
 * in an emptyDir whose sizeLimit (1Gi) evicts the pod when outgrown.
 */
export const RECEIVER_STATE_CACHE_MAX_BYTES = 256 * 1024 * 1024;
/**
 * All the caches of one directory together (an agent pushes several sources, to more than
 * one receiver): past it, the least recently written others go.
 */
export const RECEIVER_STATE_CACHE_DIR_BYTES = 512 * 1024 * 1024;
/** No cache this agent writes is larger; a larger file is not even read (a planted one). */
const MAX_CACHE_BYTES = RECEIVER_STATE_CACHE_MAX_BYTES + 64 * 1024;
const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_EXCL } = constants;

export interface ReceiverIdentity {
  /** The CA certificate (PEM) the client trusts for this receiver. */
  ca: string;
  host: string;
  site: string;
  source: string;
}

/** A cache as read: what it claims, and its entries once its digest is confirmed. */
export interface CachedEntries {
  /** The receiver's version whose entries these are. */
  base: string;
  /** The digest of the body as it is on disk now (not as the file claims). */
  digest: string;
  /** The entries, parsed; undefined when a line does not parse (then the cache is not used). */
  entries(): Map<string, ManifestEntry> | undefined;
}

/** A version's entries as the cache stores them, and their digest (ReceiverStateCache.prepare). */
export interface PreparedEntries {
  parts: string[];
  digest: string;
  bytes: number;
}

export class ReceiverStateCache {
  readonly dir: string;
  readonly file: string;
  private readonly identity: ReceiverIdentity;

  constructor(dir: string, identity: ReceiverIdentity) {
    this.dir = dir;
    this.identity = identity;
    const key = createHash("sha256")
      .update([identity.ca, identity.host, identity.site, identity.source].join("\n"))
      .digest("hex");
    this.file = join(dir, `${key}.entries`);
  }

  /** The cache for this receiver and source, or undefined when there is none usable. */
  load(): CachedEntries | undefined {
    let bytes: Buffer;
    try {
      bytes = readRegularFile(this.file);
    } catch {
      return undefined; // absent, a link, a FIFO, too large: no cache
    }
    const newline = bytes.indexOf(0x0a);
    if (newline < 0) return undefined;
    let header: unknown;
    try {
      header = JSON.parse(bytes.subarray(0, newline).toString("utf8"));
    } catch {
      return undefined;
    }
    const { format, site, source, base } = (header ?? {}) as Record<string, unknown>;
    if (format !== FORMAT || site !== this.identity.site || source !== this.identity.source) return undefined;
    if (typeof base !== "string" || !isVersionId(base)) return undefined;
    const body = bytes.subarray(newline + 1);
    const digest = new EntriesDigest().update(body).digest();
    return { base, digest, entries: () => parseLines(body) };
  }

  /**
   * The canonical lines of `entries` (in path order) and their digest. Made while the
   * receiver commits (the pusher waits for Committed anyway), written by save once the
   * receiver names the version and its digest.
   */
  static prepare(entries: Iterable<ManifestEntry>): PreparedEntries {
    const hash = new EntriesDigest();
    const parts = [...canonicalLineBatches(entries)];
    for (const part of parts) hash.update(part);
    const bytes = parts.reduce((sum, part) => sum + Buffer.byteLength(part), 0);
    return { parts, digest: hash.digest(), bytes };
  }

  /**
   * Writes the prepared entries as those of version `base`, whose digest the receiver says
   * is `digest`; returns false, and removes any older cache, when they do not hash to it.
   */
  save(base: string, prepared: PreparedEntries, digest: string): boolean {
    const header = JSON.stringify({
      format: FORMAT,
      site: this.identity.site,
      source: this.identity.source,
      base,
    });
    const { parts } = prepared;
    if (prepared.digest !== digest || header.length + 1 + prepared.bytes > RECEIVER_STATE_CACHE_MAX_BYTES) {
      this.drop();
      return false;
    }
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const temporary = join(this.dir, `.${randomBytes(8).toString("hex")}.tmp`);
    const fd = openSync(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, header + "\n");
      for (const part of parts) writeSync(fd, part);
    } catch (error) {
      closeSync(fd);
      rmSync(temporary, { force: true });
      throw error;
    }
    closeSync(fd);
    // No fsync: a cache torn by a crash fails its digest and costs one full exchange.
    renameSync(temporary, this.file);
    this.keepWithinBudget();
    return true;
  }

  /**
   * The directory's caches stay under RECEIVER_STATE_CACHE_DIR_BYTES (the sidecar's
   * emptyDir is evicted when it outgrows its limit): the least recently written others are
   * removed first, and temporary files a killed agent left.
   */
  private keepWithinBudget(): void {
    const files = readdirSync(this.dir)
      .filter((name) => name.endsWith(".entries") || name.endsWith(".tmp"))
      .map((name) => {
        const path = join(this.dir, name);
        const stat = lstatSync(path, { throwIfNoEntry: false });
        return { path, size: stat?.size ?? 0, mtime: stat?.mtimeMs ?? 0, stale: name.endsWith(".tmp") };
      })
      .filter((file) => file.path !== this.file);
    let total = files.reduce((sum, file) => sum + file.size, lstatSync(this.file).size);
    const hourAgo = Date.now() - 3_600_000;
    for (const file of files.sort((a, b) => a.mtime - b.mtime)) {
      if (total <= RECEIVER_STATE_CACHE_DIR_BYTES && !(file.stale && file.mtime < hourAgo)) continue;
      rmSync(file.path, { force: true });
      total -= file.size;
    }
  }

  drop(): void {
    rmSync(this.file, { force: true });
  }
}

function readRegularFile(path: string): Buffer {
  const fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.size > MAX_CACHE_BYTES) throw new Error(`${path} is not a cache file`);
    const buffer = Buffer.allocUnsafe(stat.size);
    let read = 0;
    while (read < stat.size) {
      const n = readSync(fd, buffer, read, stat.size - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/**
 * The body's entries. Parsed without the wire's schema: by the time they are used their
 * bytes are known to be the receiver's own canonical lines (the digest matched), which
 * it validated when they arrived. A line that does not parse means the cache is unusable.
 */
function parseLines(body: Buffer): Map<string, ManifestEntry> | undefined {
  const entries = new Map<string, ManifestEntry>();
  try {
    // One parse of the lines as a JSON array: a call per line costs twice as much.
    for (const entry of JSON.parse(linesAsJsonArray(body)) as ManifestEntry[]) {
      if (typeof entry?.path !== "string") return undefined;
      entries.set(entry.path, entry);
    }
  } catch {
    return undefined;
  }
  return entries;
}
