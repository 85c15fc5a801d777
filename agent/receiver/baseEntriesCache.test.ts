import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_ENTRIES_CACHE_MAX, keepBaseEntries, keptBaseEntries } from "./baseEntriesCache.ts";
import { writeManifest } from "./manifestFile.ts";
import type { ManifestEntry } from "../protocol/messages.ts";

function withVersions(run: (manifestOf: (source: string, version: string) => string) => void): void {
  const root = mkdtempSync(join(tmpdir(), "offsite-base-entries-"));
  try {
    run((source, version) => {
      const dir = join(root, source, "versions", version);
      mkdirSync(dir, { recursive: true });
      return join(dir, "manifest.jsonl");
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function entriesOf(count: number, tag = "f"): Map<string, ManifestEntry> {
  const entries = new Map<string, ManifestEntry>();
  for (let i = 0; i < count; i++) {
    const path = `${tag}${String(i).padStart(7, "0")}`;
    entries.set(path, { type: "dir", path, mtime: 0, mode: 0o755 });
  }
  return entries;
}

describe("the receiver's kept base entries", () => {
  it("gives the committed version's entries back while its manifest is the file they came from", () => {
    withVersions((manifestOf) => {
      const manifest = manifestOf("a", "v1");
      const entries = entriesOf(3);
      const digest = writeManifest(manifest, entries.values());
      keepBaseEntries("a", manifest, entries, digest);
      assert.deepEqual(keptBaseEntries("a", manifest), { entries, digest });
      // Another version of the source is not the kept one.
      assert.equal(keptBaseEntries("a", manifestOf("a", "v2")), undefined);
    });
  });

  it("reads the disk again once the manifest or its digest file changed", () => {
    withVersions((manifestOf) => {
      const manifest = manifestOf("a", "v1");
      const entries = entriesOf(3);
      keepBaseEntries("a", manifest, entries, writeManifest(manifest, entries.values()));
      writeManifest(manifest, entriesOf(2).values()); // rewritten in place: another file's worth
      assert.equal(keptBaseEntries("a", manifest), undefined);

      keepBaseEntries("a", manifest, entries, writeManifest(manifest, entries.values()));
      writeFileSync(join(manifest, "..", "entries.sha256"), "0".repeat(64) + "\n");
      assert.equal(keptBaseEntries("a", manifest), undefined);

      keepBaseEntries("a", manifest, entries, writeManifest(manifest, entries.values()));
      rmSync(manifest);
      assert.equal(keptBaseEntries("a", manifest), undefined);
    });
  });

  it(`keeps at most ${BASE_ENTRIES_CACHE_MAX} entries in all, the least recently used going first`, () => {
    withVersions((manifestOf) => {
      const half = BASE_ENTRIES_CACHE_MAX / 2 + 1;
      const kept = (source: string) => {
        const manifest = manifestOf(source, "v1");
        const entries = entriesOf(half, source);
        keepBaseEntries(source, manifest, entries, writeManifest(manifest, []));
        return manifest;
      };
      const a = kept("a");
      const b = kept("b"); // a and b together are over the bound: a goes
      assert.equal(keptBaseEntries("a", a), undefined);
      assert.equal(keptBaseEntries("b", b)?.entries.size, half);

      const huge = manifestOf("c", "v1");
      keepBaseEntries("c", huge, entriesOf(BASE_ENTRIES_CACHE_MAX + 1), writeManifest(huge, []));
      assert.equal(keptBaseEntries("c", huge), undefined, "a version over the bound is not kept");
      assert.equal(keptBaseEntries("b", b)?.entries.size, half, "nor does it push out what is kept");
    });
  });
});
