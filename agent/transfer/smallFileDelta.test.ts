import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { applyPatch, blockSizeFor, patchFor, signatureOf } from "./smallFileDelta.ts";

const literalBytes = (ops: ReturnType<typeof patchFor>) =>
  (ops ?? []).reduce((sum, op) => sum + ("literal" in op ? op.literal.length : 0), 0);

describe("small-file delta", () => {
  it("sends about the edited bytes of a 10 KB file with a 512-byte edit", () => {
    const base = randomBytes(10_000);
    const content = Buffer.from(base);
    randomBytes(512).copy(content, 4_321);
    const signature = signatureOf(base);
    assert.equal(signature.blockSize, 64);
    const ops = patchFor(content, signature)!;
    assert.ok(ops, "a patch is worth it");
    // The edit, and at most a block's worth on either side of it.
    assert.ok(literalBytes(ops) <= 512 + 2 * 63, `literal ${literalBytes(ops)}`);
    assert.deepEqual(applyPatch(base, signature.blockSize, ops, content.length), content);
  });

  it("finds blocks that moved: an insertion at the start costs only the inserted bytes", () => {
    const base = randomBytes(20_000);
    const content = Buffer.concat([Buffer.from("inserted line\n"), base]);
    const ops = patchFor(content, signatureOf(base))!;
    assert.equal(literalBytes(ops), 14);
    assert.deepEqual(applyPatch(base, blockSizeFor(base.length), ops, content.length), content);
  });

  it("gives no patch where nothing matches (the file then travels whole)", () => {
    assert.equal(patchFor(randomBytes(8_000), signatureOf(randomBytes(8_000))), undefined);
  });

  it("rebuilds any content from any base (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3_000 }),
        fc.array(fc.tuple(fc.nat(3_000), fc.uint8Array({ maxLength: 300 }), fc.nat(300)), { maxLength: 5 }),
        fc.constantFrom(1, 7, 64, 256),
        (baseBytes, edits, blockSize) => {
          const base = Buffer.from(baseBytes);
          let content = Buffer.from(base);
          for (const [at, insert, removed] of edits) {
            const cut = Math.min(at, content.length);
            content = Buffer.concat([content.subarray(0, cut), insert, content.subarray(cut + removed)]);
          }
          const ops = patchFor(content, signatureOf(base, blockSize));
          if (ops) assert.deepEqual(applyPatch(base, blockSize, ops, content.length), content);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("refuses a patch naming blocks the base lacks, or making another size", () => {
    const base = randomBytes(1_000);
    assert.throws(() => applyPatch(base, 256, [{ copy: 3, count: 2 }], 488), /not in the base file/);
    assert.throws(() => applyPatch(base, 256, [{ copy: 0, count: 0 }], 0), /not in the base file/);
    assert.throws(() => applyPatch(base, 256, [{ copy: 0, count: 1 }], 100), /more than the 100 bytes/);
    assert.throws(
      () => applyPatch(base, 256, [{ literal: Buffer.from("ab") }], 3),
      /makes 2 bytes, not the 3/,
    );
  });
});
