import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { versionsToKeep } from "./retention.ts";

const none = { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 };

describe("versionsToKeep", () => {
  // One version a day at 03:00 for 120 days, from 2026-01-01.
  const ids = Array.from({ length: 120 }, (_, day) => {
    const date = new Date(Date.UTC(2026, 0, 1 + day, 3));
    return date.toISOString().replace(/[-:]/g, "").slice(0, 15) + "Z";
  });
  const newest = ids.at(-1)!;

  it("keeps the newest N, and always the current version", () => {
    assert.deepEqual([...versionsToKeep(ids, { ...none, keepLast: 3 }, ids[0]!)].sort(), [
      ids[0],
      ...ids.slice(-3),
    ]);
  });

  it("keeps the newest version of each of the last N months that have one", () => {
    const kept = [...versionsToKeep(ids, { ...none, keepMonthly: 3 }, newest)].sort();
    // 120 days from Jan 1st end on April 30th: April, March and February's last versions.
    assert.deepEqual(kept, ["20260228T030000Z", "20260331T030000Z", "20260430T030000Z"]);
  });

  it("combines daily, weekly and monthly without double counting", () => {
    const kept = versionsToKeep(ids, { keepLast: 2, keepDaily: 3, keepWeekly: 2, keepMonthly: 4 }, newest);
    // last 2 ⊂ daily 3; weekly: this week's newest (= newest) and the Sunday before; monthly adds Jan–Mar.
    assert.deepEqual([...kept].sort(), [
      "20260131T030000Z",
      "20260228T030000Z",
      "20260331T030000Z",
      "20260426T030000Z",
      "20260428T030000Z",
      "20260429T030000Z",
      "20260430T030000Z",
    ]);
  });
});
