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

function treeOfFiles(count: number, size: number): { root: string; files: Map<string, Buffer> } {
  const root = mkdtempSync(join(tmpdir(), "offsite-entries-"));
  roots.push(root);
  mkdirSync(join(root, ".offsite"));
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const content = randomBytes(size);
    writeFileSync(join(root, `file-${i}.bin`), content);
    files.set(`file-${i}.bin`, content);
  }
  return { root, files };
}

describe("the standby's entries", () => {
  it("hashes a tree without holding the event loop: timers run while large files are hashed", async () => {
    const { root, files } = treeOfFiles(3, 24 * MiB);
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

  it("stops listing once the session asking is over, as the peer gone, keeping the hashes made so far", async () => {
    // Small files: hashed at once, so `wanted` is asked exactly once per file.
    const { root } = treeOfFiles(4, 16 * 1024);
    let asked = 0;
    await assert.rejects(
      new LiveEntries(root).scan(() => ++asked < 3),
      (error: Error) => {
        assert.equal(error.name, "PeerError", "a replaced session ends as its peer gone, not as a failure");
        assert.match(error.message, /the session ended while the standby listed its tree/);
        return true;
      },
    );
    const cached = Object.keys(
      JSON.parse(readFileSync(join(root, ".offsite", "hashes.json"), "utf8")) as Record<string, unknown>,
    );
    assert.deepEqual(cached.sort(), ["file-0.bin", "file-1.bin"]);
  });

  it("stops in the middle of a large file too, within a slice", async () => {
    const { root } = treeOfFiles(1, 96 * MiB);
    let asked = 0;
    const started = performance.now();
    // The first question (before the file) says yes, every later one (after a slice) no.
    await assert.rejects(
      new LiveEntries(root).scan(() => ++asked < 2),
      /the session ended/,
    );
    assert.ok(asked >= 2, "asked again while the file was hashed");
    process.stderr.write(
      `[liveEntries] stopped ${(performance.now() - started).toFixed(0)} ms into a 96 MiB file\n`,
    );
  });
});
