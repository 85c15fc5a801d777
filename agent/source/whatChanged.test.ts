import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ManifestEntry } from "../protocol/messages.ts";
import type { SourceEntry } from "./scanTree.ts";
import { whatChanged } from "./whatChanged.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

const file = (over: Partial<Extract<SourceEntry, { type: "file" }>> = {}): SourceEntry => ({
  type: "file",
  path: "f",
  size: 10,
  mtime: 1_000,
  mode: 0o644,
  ...over,
});
const stored = (over: Partial<Extract<ManifestEntry, { type: "file" }>> = {}): ManifestEntry => ({
  type: "file",
  path: "f",
  size: 10,
  mtime: 1_000,
  mode: 0o644,
  sha256: SHA_A,
  ...over,
});
const quick = { checksum: false };
const checksum = { checksum: true };

describe("whatChanged", () => {
  it("calls a path the receiver lacks new", () => {
    assert.deepEqual(whatChanged(file(), undefined, quick), { kind: "new" });
    assert.deepEqual(whatChanged({ type: "dir", path: "d", mtime: 1, mode: 0o755 }, undefined, checksum), {
      kind: "new",
    });
  });

  describe("files without checksum mode (size and mtime trusted)", () => {
    it("the same size, mtime and mode: unchanged, without a hash", () => {
      assert.deepEqual(whatChanged(file(), stored(), quick), { kind: "unchanged" });
    });
    it("another size: content, without a hash", () => {
      assert.deepEqual(whatChanged(file({ size: 11 }), stored(), quick), { kind: "content" });
      assert.deepEqual(whatChanged(file({ size: 11, mode: 0o600 }), stored(), quick), { kind: "content" });
    });
    it("only the mode differs (chmod): metadata, without a hash", () => {
      assert.deepEqual(whatChanged(file({ mode: 0o600 }), stored(), quick), {
        kind: "metadata",
        aspects: ["mode"],
      });
    });
    it("another mtime needs the hash; with it, touch-only is metadata and an edit is content", () => {
      assert.deepEqual(whatChanged(file({ mtime: 2_000 }), stored(), quick), {
        kind: "needs-hash",
        aspects: ["mtime"],
      });
      assert.deepEqual(whatChanged(file({ mtime: 2_000 }), stored(), { ...quick, localSha256: SHA_A }), {
        kind: "metadata",
        aspects: ["mtime"],
      });
      assert.deepEqual(whatChanged(file({ mtime: 2_000 }), stored(), { ...quick, localSha256: SHA_B }), {
        kind: "content",
      });
      assert.deepEqual(whatChanged(file({ mtime: 2_000, mode: 0o600 }), stored(), quick), {
        kind: "needs-hash",
        aspects: ["mode", "mtime"],
      });
    });
    it("a hash the caller has decides content even when size and mtime match", () => {
      assert.deepEqual(whatChanged(file(), stored(), { ...quick, localSha256: SHA_B }), { kind: "content" });
      assert.deepEqual(whatChanged(file(), stored(), { ...quick, localSha256: SHA_A }), {
        kind: "unchanged",
      });
    });
  });

  describe("files in checksum mode (the hash decides content)", () => {
    it("asks for the hash even when size, mtime and mode match", () => {
      assert.deepEqual(whatChanged(file(), stored(), checksum), { kind: "needs-hash", aspects: [] });
      assert.deepEqual(whatChanged(file({ mode: 0o600 }), stored(), checksum), {
        kind: "needs-hash",
        aspects: ["mode"],
      });
    });
    it("another size is content without a hash", () => {
      assert.deepEqual(whatChanged(file({ size: 9 }), stored(), checksum), { kind: "content" });
    });
    it("with the hash: unchanged, metadata or content", () => {
      const same = { ...checksum, localSha256: SHA_A };
      const other = { ...checksum, localSha256: SHA_B };
      assert.deepEqual(whatChanged(file(), stored(), same), { kind: "unchanged" });
      assert.deepEqual(whatChanged(file(), stored(), other), { kind: "content" });
      assert.deepEqual(whatChanged(file({ mode: 0o600, mtime: 5 }), stored(), same), {
        kind: "metadata",
        aspects: ["mode", "mtime"],
      });
      assert.deepEqual(whatChanged(file({ mode: 0o600 }), stored(), other), { kind: "content" });
    });
  });

  describe("types", () => {
    it("file → symlink, file → dir, dir → file, symlink → file are type changes", () => {
      const symlink: SourceEntry = { type: "symlink", path: "f", mtime: 1_000, target: "x" };
      const dir: SourceEntry = { type: "dir", path: "f", mtime: 1_000, mode: 0o755 };
      assert.deepEqual(whatChanged(symlink, stored(), quick), { kind: "type", was: "file" });
      assert.deepEqual(whatChanged(dir, stored(), checksum), { kind: "type", was: "file" });
      assert.deepEqual(whatChanged(file(), { type: "dir", path: "f", mtime: 1_000, mode: 0o755 }, quick), {
        kind: "type",
        was: "dir",
      });
      assert.deepEqual(
        whatChanged(file(), { type: "symlink", path: "f", mtime: 1_000, target: "x" }, quick),
        {
          kind: "type",
          was: "symlink",
        },
      );
    });
  });

  describe("directories", () => {
    const known: ManifestEntry = { type: "dir", path: "d", mtime: 1_000, mode: 0o755 };
    it("mode and mtime are their metadata; nothing is hashed", () => {
      const dir = (over: object = {}): SourceEntry => ({
        type: "dir",
        path: "d",
        mtime: 1_000,
        mode: 0o755,
        ...over,
      });
      assert.deepEqual(whatChanged(dir(), known, checksum), { kind: "unchanged" });
      assert.deepEqual(whatChanged(dir({ mode: 0o700 }), known, quick), {
        kind: "metadata",
        aspects: ["mode"],
      });
      assert.deepEqual(whatChanged(dir({ mtime: 2 }), known, checksum), {
        kind: "metadata",
        aspects: ["mtime"],
      });
    });
  });

  describe("symlinks", () => {
    const known: ManifestEntry = { type: "symlink", path: "l", mtime: 1_000, target: "a" };
    const link = (over: object = {}): SourceEntry => ({
      type: "symlink",
      path: "l",
      mtime: 1_000,
      target: "a",
      ...over,
    });
    it("another target is a target change, whatever the mtime", () => {
      assert.deepEqual(whatChanged(link({ target: "b" }), known, quick), { kind: "target" });
      assert.deepEqual(whatChanged(link({ target: "b", mtime: 5 }), known, quick), { kind: "target" });
    });
    it("the mtime is their only metadata", () => {
      assert.deepEqual(whatChanged(link(), known, checksum), { kind: "unchanged" });
      assert.deepEqual(whatChanged(link({ mtime: 5 }), known, quick), {
        kind: "metadata",
        aspects: ["mtime"],
      });
    });
  });
});
