import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { NumberColumn, StringColumn } from "./columns.ts";

// Three blocks and a bit (a block holds 16,384 entries): every boundary is crossed.
const COUNT = 3 * 16_384 + 7;

describe("the scan's blocked columns", () => {
  it("read back every number at its width, across block boundaries", () => {
    const times = new NumberColumn((n) => new Float64Array(n));
    const modes = new NumberColumn((n) => new Uint16Array(n));
    for (let i = 0; i < COUNT; i++) {
      times.push(1_764_000_000_000 + i * 1.5);
      modes.push(i & 0o7777);
    }
    assert.equal(times.length, COUNT);
    for (const i of [0, 16_383, 16_384, 32_768, COUNT - 1]) {
      assert.equal(times.at(i), 1_764_000_000_000 + i * 1.5);
      assert.equal(modes.at(i), i & 0o7777);
    }
  });

  it("keep strings in order, by index and when iterated", () => {
    const paths = new StringColumn();
    for (let i = 0; i < COUNT; i++) paths.push(`d/${i}`);
    assert.equal(paths.length, COUNT);
    assert.equal(paths.at(16_384), "d/16384");
    const all = [...paths];
    assert.equal(all.length, COUNT);
    assert.ok(all.every((path, i) => path === `d/${i}`));
  });
});
