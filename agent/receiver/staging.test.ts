import { it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitVersion } from "./commitVersion.ts";
import { SourceLayout } from "./layout.ts";
import { StagingArea } from "./staging.ts";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

it("a job interrupted after a HardLink resumes with it, and the commit links the names", () => {
  const root = mkdtempSync(join(tmpdir(), "offsite-staging-"));
  try {
    const layout = new SourceLayout(root, "site", "source");
    const first = new StagingArea(layout, null);
    assert.equal(first.open(), false);
    first.putDirectory("d", 0, 0o755);
    const content = Buffer.from("one file, two names\n");
    first.putFile(
      { path: "a.txt", size: content.length, mtime: 0, mode: 0o644, sha256: sha(content.toString()) },
      content,
    );
    first.hardLink("d/b.txt", "a.txt");
    first.flushJournal();
    first.close(); // the session is cut here

    const resumed = new StagingArea(layout, null);
    assert.equal(resumed.open(), true);
    const b = [...resumed.effectiveEntries()].find((e) => e.path === "d/b.txt");
    assert.deepEqual(
      b && "hardLink" in b ? b.hardLink : undefined,
      "a.txt",
      "the hard link survives the resume",
    );
    const { version } = commitVersion(resumed, { files: 2, bytes: content.length * 2, filtered: {} });
    const tree = layout.treeOf(version);
    assert.equal(statSync(join(tree, "d", "b.txt")).ino, statSync(join(tree, "a.txt")).ino);
    assert.equal(readFileSync(join(tree, "d", "b.txt"), "utf8"), "one file, two names\n");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
