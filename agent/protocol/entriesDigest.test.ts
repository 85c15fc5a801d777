import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  MANIFEST_DIGEST_FILE,
  readManifest,
  readManifestWithDigest,
  writeManifest,
} from "../receiver/manifestFile.ts";
import { canonicalEntryLine, ENTRIES_DIGEST_PREFIX, entriesDigest } from "./entriesDigest.ts";
import type { ManifestEntry } from "./messages.ts";

const entries: ManifestEntry[] = [
  { type: "dir", path: "a", mtime: 1, mode: 0o755 },
  {
    type: "file",
    path: "a/b.bin",
    size: 70_000,
    mtime: 2,
    mode: 0o644,
    sha256: "a".repeat(64),
    chunks: [
      [65_536, "b".repeat(64)],
      [4_464, "e".repeat(64)],
    ],
  },
  { type: "file", path: "a/c\udce9.txt", size: 3, mtime: 3, mode: 0o600, sha256: "c".repeat(64) },
  {
    type: "file",
    path: "a/d.txt",
    size: 3,
    mtime: 3,
    mode: 0o600,
    sha256: "c".repeat(64),
    hardLink: "a/c\udce9.txt",
  },
  { type: "symlink", path: "z", mtime: 4, target: "a/d.txt" },
];

describe("the entries digest", () => {
  it("does not depend on the key order an entry was parsed from", () => {
    const shuffled = entries.map(
      (entry) => Object.fromEntries(Object.entries(entry).reverse()) as ManifestEntry,
    );
    assert.equal(entriesDigest(shuffled), entriesDigest(entries));
    assert.equal(canonicalEntryLine(shuffled[1]!), canonicalEntryLine(entries[1]!));
    // An absent optional key and one that is undefined are the same entry.
    const withUndefined = { ...entries[2]!, chunks: undefined } as ManifestEntry;
    assert.equal(canonicalEntryLine(withUndefined), canonicalEntryLine(entries[2]!));
  });

  it("changes with any field", () => {
    const base = entriesDigest(entries);
    const edited = entries.map((entry, i) => (i === 2 ? { ...entry, mtime: 4 } : entry));
    assert.notEqual(entriesDigest(edited), base);
    assert.notEqual(entriesDigest(entries.slice(0, -1)), base);
  });

  it("is the SHA-256 of the prefix and the manifest's bytes, which are canonical lines that read back", () => {
    const dir = mkdtempSync(join(tmpdir(), "offsite-digest-"));
    try {
      const file = join(dir, "manifest.jsonl");
      const written = writeManifest(file, entries);
      const bytes = readFileSync(file);
      assert.equal(written, createHash("sha256").update(ENTRIES_DIGEST_PREFIX).update(bytes).digest("hex"));
      assert.equal(entriesDigest(readManifest(file)), written);
      // A lone surrogate (a byte that is not UTF-8) is written as its escape, so the lines are ASCII here.
      assert.match(bytes.toString("latin1"), /a\/c\\udce9\.txt/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("lets a manifest the commit wrote be read as it is, and checks any other against the schema", () => {
    const dir = mkdtempSync(join(tmpdir(), "offsite-digest-"));
    try {
      const file = join(dir, "manifest.jsonl");
      const written = writeManifest(file, entries);
      assert.equal(readManifestWithDigest(file).digest, written);
      // Changed since the commit (here: a line the schema refuses): no digest, and the error names the line.
      const edited = readFileSync(file, "utf8").replace('"mode":384', '"mode":"rw"');
      writeFileSync(file, edited);
      assert.throws(() => readManifestWithDigest(file), /manifest\.jsonl:3: not a manifest entry/);
      // An older receiver's manifest (no digest file, keys in another order) reads through the schema.
      rmSync(join(dir, MANIFEST_DIGEST_FILE));
      writeFileSync(
        file,
        entries.map((e) => JSON.stringify(Object.fromEntries(Object.entries(e).reverse()))).join("\n"),
      );
      const older = readManifestWithDigest(file);
      assert.equal(older.digest, undefined);
      assert.equal(entriesDigest(older.entries), written);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
