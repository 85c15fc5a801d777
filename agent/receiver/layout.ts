/**
 * The receiver's on-disk layout for one source (PROTOCOL.md, "On-disk layout"):
 *
 *   <root>/<site GUID>/<source GUID>/
 *     versions/<id>/tree/        a complete, browsable tree (unchanged files are hard links
 *                                shared with older versions: a synthetic full)
 *     versions/<id>/manifest.jsonl   one entry per line: the truth about metadata
 *     versions/<id>/job.json     what the job reported (counts, filtered files)
 *     current -> versions/<id>   the newest complete version, swapped atomically
 *     staging/                   the job in progress, kept across interruptions to resume
 *
 * Version ids are the commit time in UTC, `YYYYMMDDTHHMMSSZ`, with `-N` on a collision,
 * so they sort by age.
 */
import { existsSync, readdirSync, readlinkSync } from "node:fs";
import { basename, join } from "node:path";
import { compareVersionIds, nextVersionId, VERSION_ID } from "../../contract/versions.ts";

export class SourceLayout {
  readonly dir: string;
  readonly site: string;
  readonly source: string;

  constructor(root: string, site: string, source: string) {
    // GUIDs are checked against the contract's rule (contract/guid.ts: lower case, no '.'
    // or '/') by the protocol schema before they reach here, so one source has one directory.
    this.site = site;
    this.source = source;
    this.dir = join(root, this.site, this.source);
  }

  get versionsDir(): string {
    return join(this.dir, "versions");
  }
  get currentLink(): string {
    return join(this.dir, "current");
  }
  /** Pruned versions, moved out of versions/ at the commit and deleted after it (commitVersion.ts). */
  get trashDir(): string {
    return join(this.dir, "trash");
  }
  get stagingDir(): string {
    return join(this.dir, "staging");
  }
  versionDir(id: string): string {
    return join(this.versionsDir, id);
  }
  treeOf(id: string): string {
    return join(this.versionDir(id), "tree");
  }
  manifestOf(id: string): string {
    return join(this.versionDir(id), "manifest.jsonl");
  }

  /** Complete versions, oldest first. A version is complete once its manifest exists. */
  versions(): string[] {
    if (!existsSync(this.versionsDir)) return [];
    return readdirSync(this.versionsDir)
      .filter((name) => VERSION_ID.test(name) && existsSync(this.manifestOf(name)))
      .sort(compareVersionIds);
  }

  current(): string | null {
    try {
      const id = basename(readlinkSync(this.currentLink));
      return VERSION_ID.test(id) && existsSync(this.manifestOf(id)) ? id : null;
    } catch {
      return null;
    }
  }

  /** A fresh version id for a commit at `now`, after every existing one. */
  nextVersionId(now: Date): string {
    return nextVersionId(now, existsSync(this.versionsDir) ? readdirSync(this.versionsDir) : []);
  }
}
