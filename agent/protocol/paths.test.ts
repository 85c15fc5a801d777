import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { comparePaths } from "./paths.ts";

/** The definition: the strings compared with "/" replaced by the lowest code unit. */
const byDefinition = (a: string, b: string) => {
  const x = a.replaceAll("/", "\0");
  const y = b.replaceAll("/", "\0");
  return x < y ? -1 : x > y ? 1 : 0;
};

describe("path order", () => {
  it("puts a directory right before its contents", () => {
    assert.deepEqual(["a-c", "a/b", "a", "a.txt", "a/b/c", "b"].sort(comparePaths), [
      "a",
      "a/b",
      "a/b/c",
      "a-c",
      "a.txt",
      "b",
    ]);
  });

  it("is the definition's order for any names, byte escapes and other code units included", () => {
    const unit = fc.constantFrom("/", "-", ".", "a", "b", "é", "\udce9", "\ud83d\ude00", " ", "0");
    const path = fc.array(unit, { maxLength: 12 }).map((units) => units.join(""));
    fc.assert(
      fc.property(path, path, (a, b) => assert.equal(comparePaths(a, b), byDefinition(a, b))),
      { numRuns: 20_000 },
    );
  });
});
