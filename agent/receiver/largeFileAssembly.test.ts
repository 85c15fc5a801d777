import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LargeFileAssembly } from "./largeFileAssembly.ts";
import { STORED_FILE_MODE } from "./storedFiles.ts";

const noBase = () => {
  throw new Error("no base in this test");
};
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("LargeFileAssembly", () => {
  it("keeps staged data writable by its owner until End, so a receiver that is not root can resume it", () => {
    const dir = mkdtempSync(join(tmpdir(), "offsite-assembly-"));
    try {
      const chunks = [Buffer.alloc(70_000, 1), Buffer.alloc(80_000, 2)];
      const first = new LargeFileAssembly(join(dir, "partial"), noBase);
      first.begin("big.bin", 0, 0o644, undefined, undefined);
      first.appendData(chunks[0]!);
      first.flush();
      first.close(); // the receiver was killed here
      const data = join(dir, "partial", "data");
      // Root ignores file modes, so the test checks the mode itself: a 0444 file here made
      // every resume of a non-root receiver fail with EACCES.
      assert.equal(statSync(data).mode & 0o777, 0o600);

      const second = new LargeFileAssembly(join(dir, "partial"), noBase);
      assert.deepEqual(second.staged()?.chunks, [[70_000, sha256(chunks[0]!)]]);
      second.begin("big.bin", 0, 0o644, undefined, 70_000);
      second.appendData(chunks[1]!);
      const whole = Buffer.concat(chunks);
      const file = second.end(whole.length, sha256(whole));
      assert.equal(statSync(file.data).mode & 0o777, STORED_FILE_MODE, "read-only once verified");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
