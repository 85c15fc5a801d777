import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LiveEntries } from "./liveEntries.ts";

const MiB = 1024 * 1024;

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function treeOfLargeFiles(count: number, size: number): { root: string; files: Map<string, Buffer> } {
  const root = mkdtempSync(join(tmpdir(), "offsite-entries-"));
  roots.push(root);
  mkdirSync(join(root, ".offsite"));
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const content = randomBytes(size);
    writeFileSync(join(root, `large-${i}.bin`), content);
    files.set(`large-${i}.bin`, content);
  }
  return { root, files };
}

describe("the standby's entries", () => {
  it("hashes a tree without holding the event loop: timers run while large files are hashed", async () => {
    const { root, files } = treeOfLargeFiles(3, 24 * MiB);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const { entries } = await new LiveEntries(root).scan();
    clearInterval(timer);
    // Hashing 72 MiB takes well over one 20 ms slice; a synchronous scan lets no timer run.
    assert.ok(ticks >= 2, `${ticks} timer ticks during the scan`);
    for (const [name, content] of files) {
      const entry = entries.find((e) => e.path === name);
      assert.ok(entry?.type === "file", name);
      assert.equal(entry.sha256, createHash("sha256").update(content).digest("hex"));
      assert.ok((entry.chunks?.length ?? 0) > 1, "a large file's entry lists its chunks");
    }
    assert.ok(existsSync(join(root, ".offsite", "hashes.json")), "the hashes are cached");
  });

  it("stops listing once the session asking is over, keeping the hashes made so far", async () => {
    const { root } = treeOfLargeFiles(4, 8 * MiB);
    let asked = 0;
    await assert.rejects(
      new LiveEntries(root).scan(() => ++asked < 3),
      /the session ended while the standby listed its tree/,
    );
    const cached = Object.keys(
      JSON.parse(readFileSync(join(root, ".offsite", "hashes.json"), "utf8")) as Record<string, unknown>,
    );
    assert.ok(cached.length >= 1 && cached.length < 4, `cached ${cached.join(", ")}`);
  });
});
