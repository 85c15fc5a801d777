/**
 * Turns a finished staging area into a version: the complete tree (unchanged files hard
 * linked from the base, so they share data), its manifest, everything fsynced, then the
 * `current` link swapped atomically. Until that swap the previous version is untouched
 * and current; a crash anywhere before it leaves the staging area to resume from.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import {
  closeSync,
  type Dirent,
  existsSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { ProtocolError } from "../protocol/frames.ts";
import { type ManifestEntry, UNREADABLE_COUNT } from "../protocol/messages.ts";
import { comparePaths, writeManifest } from "./manifestFile.ts";
import { keepBaseEntries } from "./baseEntriesCache.ts";
import { DEFAULT_RETENTION, type RetentionPolicy, versionsToKeep } from "./retention.ts";
import type { SourceLayout } from "./layout.ts";
import type { StagingArea } from "./staging.ts";
import { damagedStore, OPEN } from "./storedFiles.ts";
import { fsPath, nameFromBytes } from "../protocol/byteNames.ts";

export interface CommitResult {
  version: string;
  files: number;
  /** The new version's entries digest (protocol/entriesDigest.ts), for Committed in version 3. */
  digest: string;
  pruned: string[];
  /** Retention could not run after the commit (the version is committed all the same). */
  pruneProblem?: string;
}

/** What the client's Commit says about the job, for the version's job.json. */
export interface JobCounts {
  files: number;
  bytes: number;
  /** By reason; the key UNREADABLE_COUNT counts the entries the client could not read. */
  filtered: Record<string, number>;
}

/**
 * The version's job.json: the client's counts, with `outcome` — `partial` when the client
 * could not read some entries (their count is `unreadable`; the version holds the previous
 * copy of each), `succeeded` otherwise — and `files`, the files the version holds.
 */
export function jobRecord(report: JobCounts, base: string | null, files: number): object {
  const { [UNREADABLE_COUNT]: unreadable = 0, ...filtered } = report.filtered;
  return {
    ...report,
    outcome: unreadable > 0 ? "partial" : "succeeded",
    filtered,
    unreadable,
    base,
    files,
  };
}

export function commitVersion(
  staging: StagingArea,
  report: JobCounts,
  retention: RetentionPolicy = DEFAULT_RETENTION,
  now = new Date(),
): CommitResult {
  const { layout } = staging;
  // Everything accepted is journaled before the commit starts: a crash inside it resumes.
  staging.flush();
  const entries = [...staging.effectiveEntries()].sort((a, b) => comparePaths(a.path, b.path));
  const byPath = new Map(entries.map((entry) => [entry.path, entry]));
  for (const entry of entries) {
    const parent = dirname(entry.path);
    if (parent !== "." && byPath.get(parent)?.type !== "dir") {
      throw new ProtocolError(
        "inconsistent-tree",
        `${entry.path} has no directory ${parent} in the new version; send the directory (or delete the entry)`,
      );
    }
  }

  const tree = staging.tree;
  const baseTree = staging.base === null ? "" : layout.treeOf(staging.base);
  let files = 0;
  // Entries are in path order, so a directory is made before its contents. Each step tries
  // the common case first and looks only when it fails: a large tree costs one system
  // call per carried file.
  for (let i = 0; i < entries.length; i++) {
    let entry = entries[i]!;
    // Concatenated, not joined: entry paths are checked relative paths (paths.ts), and
    // path.join's normalising was a tenth of a large tree's commit.
    const target = fsPath(`${tree}/${entry.path}`);
    if (entry.type === "dir") {
      try {
        mkdirSync(target, { mode: 0o755 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        if (!lstatSync(target).isDirectory()) {
          rmSync(target, { force: true });
          mkdirSync(target, { mode: 0o755 });
        }
      }
    } else if (entry.type === "file") {
      files++;
      if (entry.hardLink !== undefined) {
        // Another name of an earlier file of this version, placed above in path order.
        const first = byPath.get(entry.hardLink);
        if (first?.type === "file" && first.hardLink === undefined && first.sha256 === entry.sha256) {
          rmSync(target, { recursive: true, force: true });
          linkSync(fsPath(`${tree}/${entry.hardLink}`), target);
          continue;
        }
        // Sent in this job, it must name the same file; carried from the base (it was under
        // an unreadable directory, or an older pusher did not know it), its first name
        // changed or went: it is a file of its own again, with the content it had.
        if (staging.changes.has(entry.path) || staging.base === null) {
          throw new ProtocolError(
            "inconsistent-tree",
            `${entry.path} is a hard link of ${entry.hardLink}, which is not the same file in the new version`,
          );
        }
        // A copy: the base's entry is shared with the next sessions (baseEntriesCache.ts).
        const { hardLink: _, ...own } = entry;
        entry = own;
        entries[i] = own;
        byPath.set(own.path, own);
      }
      // A staged file was verified when it arrived (or when the journal was replayed).
      if (staging.changes.has(entry.path)) continue;
      const source = fsPath(`${baseTree}/${entry.path}`);
      try {
        linkSync(source, target);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        rmSync(target, { recursive: true, force: true });
        linkSync(source, target);
      }
    }
  }
  // The tree must hold exactly the manifest's files and directories (by their bytes), or
  // the version would list what is not there: checked on the sweep's way, at no cost.
  const onDisk = removeStrays(tree, "", byPath, layout.treeOf(staging.base ?? ""));
  const expected = entries.filter((entry) => entry.type !== "symlink").length;
  if (onDisk !== expected) {
    throw new ProtocolError(
      "internal",
      `the staged tree holds ${onDisk} of the new version's ${expected} files and directories; ` +
        "nothing is committed (the previous version stays current). Report this as a bug",
    );
  }

  // One syncfs flushes the whole file system at once, ten times faster here than an fsync
  // per file; where it is unavailable (no `sync` binary, as in the distroless image), fsync
  // every file and directory this job wrote.
  if (!syncFileSystem(tree)) {
    for (const path of staging.written) fsyncPath(join(tree, path));
    for (const entry of entries) if (entry.type === "dir") fsyncPath(join(tree, entry.path));
    fsyncPath(tree);
  }

  const version = layout.nextVersionId(now);
  const versionDir = layout.versionDir(version);
  mkdirSync(versionDir, { recursive: true });
  renameSync(tree, layout.treeOf(version));
  writeFileSync(
    join(versionDir, "job.json"),
    JSON.stringify(jobRecord(report, staging.base, files), null, 2),
  );
  // The manifest is written last: a version directory without one is not a version.
  const digest = writeManifest(layout.manifestOf(version), entries);
  keepBaseEntries(layout.dir, layout.manifestOf(version), byPath, digest);
  fsyncPath(versionDir);
  fsyncPath(layout.versionsDir);

  const link = `${layout.currentLink}.tmp`;
  rmSync(link, { force: true });
  symlinkSync(relative(layout.dir, versionDir), link);
  renameSync(link, layout.currentLink);
  fsyncPath(layout.dir);
  staging.close();
  rmSync(staging.dir, { recursive: true, force: true });

  // The version is committed: retention failing now (a full disk, a permission) must not
  // make the client believe otherwise. The next commit tries again.
  try {
    return { version, files, digest, pruned: prune(staging, retention, version) };
  } catch (error) {
    return { version, files, digest, pruned: [], pruneProblem: (error as Error).message };
  }
}

/**
 * Retention: the versions it removes leave versions/ at once, each by one rename into
 * the source's trash, and are deleted after Committed is sent (emptyTrash): deleting a
 * version of a million files takes seconds that the client need not wait for. A version
 * in the trash is no version (it is not listed, compared or restored), and a trash left
 * by a crash is emptied by the next push of the source.
 */
function prune(staging: StagingArea, retention: RetentionPolicy, current: string): string[] {
  const { layout } = staging;
  const all = layout.versions();
  const keep = versionsToKeep(all, retention, current);
  const pruned = all.filter((id) => !keep.has(id));
  // The trash directory itself is never removed (emptyTrash empties it), so a deletion
  // still running for an earlier commit cannot take it away under this rename.
  mkdirSync(layout.trashDir, { recursive: true });
  const trash = (name: string) =>
    renameSync(layout.versionDir(name), join(layout.trashDir, `${name}.${randomBytes(6).toString("hex")}`));
  // A commit that died before writing its manifest left a directory that is no version.
  for (const name of readdirSync(layout.versionsDir)) {
    if (name !== current && !existsSync(layout.manifestOf(name))) trash(name);
  }
  for (const id of pruned) trash(id);
  return pruned;
}

/**
 * Deletes what pruning put in the source's trash, off the event loop. Deleting a version
 * only drops its names for shared files: the hard links of the versions that remain keep
 * the data.
 */
export async function emptyTrash(layout: SourceLayout): Promise<void> {
  let names: string[];
  try {
    names = await readdir(layout.trashDir);
  } catch {
    return; // no trash yet
  }
  for (const name of names) await rm(join(layout.trashDir, name), { recursive: true, force: true });
}

/** Removes what the staged tree holds but the new version does not; returns how many entries fit. */
function removeStrays(
  tree: string,
  prefix: string,
  byPath: Map<string, ManifestEntry>,
  baseTree: string,
): number {
  let kept = 0;
  for (const [name, dirent] of namedDirents(prefix ? `${tree}/${prefix}` : tree)) {
    const path = prefix ? `${prefix}/${name}` : name;
    const entry = byPath.get(path);
    // A file carried from the base is a hard link to the stored name, and link(2) does not
    // follow symlinks: a stored file swapped for a link arrives here as a link.
    if (entry?.type === "file" && dirent.isSymbolicLink()) {
      throw damagedStore(join(baseTree, path), "is a symbolic link, not the stored file");
    }
    const fits =
      entry && ((entry.type === "dir" && dirent.isDirectory()) || (entry.type === "file" && dirent.isFile()));
    if (!fits) rmSync(fsPath(`${tree}/${path}`), { recursive: true, force: true });
    else {
      kept++;
      if (dirent.isDirectory()) kept += removeStrays(tree, path, byPath, baseTree);
    }
  }
  return kept;
}

/**
 * A directory's entries, each with its name in the agent's form (byteNames.ts), so that a
 * name that is not UTF-8 matches its manifest entry and is not taken for a stray. Listed
 * as strings first (the fast path: no conversion per name); a name that is not UTF-8
 * shows there as U+FFFD, and only then is the directory listed again as bytes.
 */
function namedDirents(dir: string): [string, Dirent<string | Buffer>][] {
  const path = fsPath(dir);
  const dirents = readdirSync(path, { withFileTypes: true });
  if (!dirents.some((dirent) => dirent.name.includes("\ufffd"))) {
    return dirents.map((dirent) => [dirent.name, dirent]);
  }
  return readdirSync(path, { withFileTypes: true, encoding: "buffer" }).map((dirent) => [
    nameFromBytes(dirent.name),
    dirent,
  ]);
}

/** syncfs(2) on the file system holding `path`, through coreutils' `sync -f`; false if unavailable. */
function syncFileSystem(path: string): boolean {
  return spawnSync("sync", ["-f", path], { stdio: "ignore" }).status === 0;
}

function fsyncPath(path: string): void {
  const fd = openSync(fsPath(path), OPEN.read);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
