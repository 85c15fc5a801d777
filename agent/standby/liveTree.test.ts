import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LiveTree } from "./liveTree.ts";

const header = (path: string, content: Buffer, mode = 0o644, mtime = 1_700_000_000_000) => ({
  path,
  size: content.length,
  mtime,
  mode,
  sha256: createHash("sha256").update(content).digest("hex"),
});

function fresh(): { root: string; tree: LiveTree } {
  const root = mkdtempSync(join(tmpdir(), "offsite-live-"));
  mkdirSync(join(root, ".offsite"));
  return { root, tree: new LiveTree(root, { firewall: true }) };
}

describe("the standby's live tree", () => {
  it("renames a directory onto its own ancestor without losing it", () => {
    const { root, tree } = fresh();
    tree.directory("a", 1_700_000_000_000, 0o755);
    tree.directory("a/b", 1_700_000_000_000, 0o755);
    tree.putFile(header("a/b/f", Buffer.from("kept")), Buffer.from("kept"));
    tree.flush();
    tree.rename("a/b", "a");
    tree.flush();
    assert.equal(readFileSync(join(root, "a", "f"), "utf8"), "kept");
    assert.ok(!existsSync(join(root, "a", "b")));
  });

  it("keeps a directory's mtime when a file in it is replaced, and sets no setuid bit", () => {
    const { root, tree } = fresh();
    mkdirSync(join(root, "d"));
    utimesSync(join(root, "d"), 1_600_000_000, 1_600_000_000);
    tree.putFile(header("d/x", Buffer.from("v1")), Buffer.from("v1"));
    tree.flush();
    utimesSync(join(root, "d"), 1_600_000_000, 1_600_000_000);
    const content = Buffer.from("v2");
    tree.putFile(header("d/x", content, 0o4755), content);
    tree.flush();
    assert.equal(statSync(join(root, "d")).mtimeMs, 1_600_000_000_000);
    assert.equal(statSync(join(root, "d", "x")).mode & 0o7777, 0o755);
  });

  it("refuses a .offsite that is a link, and makes no parents for a Delete", () => {
    const root = mkdtempSync(join(tmpdir(), "offsite-live-"));
    const elsewhere = mkdtempSync(join(tmpdir(), "offsite-elsewhere-"));
    symlinkSync(elsewhere, join(root, ".offsite"));
    assert.throws(() => new LiveTree(root, { firewall: true }), /must be a real one/);
    const { root: other, tree } = fresh();
    tree.delete("missing/parent/file");
    tree.flush();
    assert.ok(!existsSync(join(other, "missing")));
    writeFileSync(join(elsewhere, "untouched"), "");
    assert.ok(existsSync(join(elsewhere, "untouched")));
  });
});
