import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { compareVersionIds, isVersionId, nextVersionId } from "./versions.ts";

const at = (iso: string) => new Date(iso);

describe("version ids", () => {
  it("order by commit second, then by sequence, also past nine in one second", () => {
    const ids = ["20261202T151315Z", "20261202T151314Z-10", "20261202T151314Z", "20261202T151314Z-2"];
    assert.deepEqual(ids.sort(compareVersionIds), [
      "20261202T151314Z",
      "20261202T151314Z-2",
      "20261202T151314Z-10",
      "20261202T151315Z",
    ]);
  });

  it("have one spelling: a sequence from 2, without leading zeros", () => {
    for (const id of ["20261202T151314Z", "20261202T151314Z-2", "20261202T151314Z-10"])
      assert.ok(isVersionId(id), id);
    for (const id of ["20261202T151314Z-0", "20261202T151314Z-1", "20261202T151314Z-02", "20261202T151314Z-"])
      assert.ok(!isVersionId(id), id);
  });

  it("take the commit's second when it is after the newest", () => {
    assert.equal(nextVersionId(at("2026-12-02T15:13:15.900Z"), ["20261202T151314Z-3"]), "20261202T151315Z");
    assert.equal(nextVersionId(at("2026-12-02T15:13:15.900Z"), []), "20261202T151315Z");
  });

  it("come after the newest, not only after what is still there, when pruning freed an older name", () => {
    // Retention pruned 20261202T151314Z; the fourth commit of that second is still the newest.
    const kept = ["20261202T151314Z-2", "20261202T151314Z-3"];
    assert.equal(nextVersionId(at("2026-12-02T15:13:14.800Z"), kept), "20261202T151314Z-4");
  });

  it("stay after the newest when the clock was set back", () => {
    assert.equal(nextVersionId(at("2026-12-01T00:00:00Z"), ["20261202T151314Z"]), "20261202T151314Z-2");
  });

  it("ignore names that are no version id", () => {
    assert.equal(
      nextVersionId(at("2026-12-02T15:13:14Z"), ["staging", "99999999T999999Z.tmp"]),
      "20261202T151314Z",
    );
  });

  it("are always valid and always after every existing id (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 30 }),
        fc.integer({ min: 0, max: 5_000 }),
        (offsets, now) => {
          const base = Date.UTC(2026, 11, 2);
          const existing: string[] = [];
          for (const offset of offsets) existing.push(nextVersionId(new Date(base + offset), existing));
          // Any subset survives pruning; the next id is after all of them.
          const kept = existing.filter((_, i) => i % 3 !== 0);
          const next = nextVersionId(new Date(base + now), kept);
          assert.ok(isVersionId(next), next);
          for (const id of kept) assert.ok(compareVersionIds(next, id) > 0, `${next} after ${id}`);
        },
      ),
    );
  });
});
