/**
 * The one decision of "what changed": a scanned local entry against the receiver's
 * manifest entry at the same path. push acts on it (what to send), compare reports it,
 * and both therefore agree: whatever push would record as a change in the next version,
 * compare reports as a difference, and nothing else. It is pure: it reads no file.
 *
 * The rule (PROTOCOL.md, "Sessions"):
 * - no entry → `new`; another type → `type`; a symlink with another target → `target`;
 * - a file of another size → `content`;
 * - a file of the same size: content is decided by the SHA-256 when the caller has it
 *   (`localSha256`). Without one, in checksum mode the hash is the only judge, and
 *   without checksum mode size and mtime are trusted as rsync's quick check does: the
 *   same mtime means the same content; another mtime cannot tell content from a touch.
 *   Either way the answer is then `needs-hash`: the caller hashes and asks again;
 * - the same content (or no content: directories, symlinks) with another mode or mtime, or
 *   a file hard-linked to another one than before (or no longer) → `metadata`, naming
 *   which; else `unchanged`.
 *
 * The subtle point is that metadata is part of a version: modes and mtimes live in the
 * manifest, so a chmod or a touch makes the next push record a new entry even though no
 * byte travels, and a compare that ignored them would call trees equal that the next push
 * makes differ. A directory's mtime is metadata too: adding or removing a file in it
 * changes its entry as well as the file's.
 */
import type { ManifestEntry } from "../protocol/messages.ts";
import type { SourceEntry } from "./scanTree.ts";

/**
 * The metadata of an entry that is not its content (symlinks have no mode). `hardLink`: a
 * file is (or is no longer) another name of an earlier file, or of another one.
 */
export type MetadataAspect = "mode" | "mtime" | "hardLink";

export type Change =
  /** The receiver has nothing at this path. */
  | { kind: "new" }
  | { kind: "unchanged" }
  /** The same content (or none: a directory, the same symlink target); other metadata. */
  | { kind: "metadata"; aspects: MetadataAspect[] }
  /** A file with other content (size or SHA-256). */
  | { kind: "content" }
  /** The path is of another type (file, dir, symlink) on the receiver. */
  | { kind: "type"; was: ManifestEntry["type"] }
  /** A symlink to another target. */
  | { kind: "target" }
  /**
   * Only the file's SHA-256 can tell: hash it and ask again with `localSha256`. `aspects`
   * is the metadata that differs whatever the hash says.
   */
  | { kind: "needs-hash"; aspects: MetadataAspect[] };

export interface WhatChangedOptions {
  /** Checksum mode: only the hash decides whether a file's content is the same. */
  checksum: boolean;
  /** The local file's SHA-256, when the caller has it; it always decides content. */
  localSha256?: string;
  /** The receiver records hard links (protocol version 2); default true. */
  hardLinks?: boolean;
}

export function whatChanged(
  local: SourceEntry,
  known: ManifestEntry | undefined,
  options: WhatChangedOptions,
): Change {
  if (!known) return { kind: "new" };
  if (known.type !== local.type) return { kind: "type", was: known.type };
  const aspects: MetadataAspect[] = [];
  if ("mode" in known && "mode" in local && known.mode !== local.mode) aspects.push("mode");
  if (known.mtime !== local.mtime) aspects.push("mtime");
  if (
    options.hardLinks !== false &&
    local.type === "file" &&
    known.type === "file" &&
    local.hardLinkOf !== known.hardLink
  )
    aspects.push("hardLink");
  const byMetadata: Change = aspects.length > 0 ? { kind: "metadata", aspects } : { kind: "unchanged" };

  if (local.type === "symlink" && known.type === "symlink") {
    return known.target !== local.target ? { kind: "target" } : byMetadata;
  }
  if (local.type === "file" && known.type === "file") {
    if (known.size !== local.size) return { kind: "content" };
    if (options.localSha256 !== undefined) {
      return options.localSha256 === known.sha256 ? byMetadata : { kind: "content" };
    }
    if (options.checksum || known.mtime !== local.mtime) return { kind: "needs-hash", aspects };
  }
  return byMetadata;
}
