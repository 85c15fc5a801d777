import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_PENDING, ReplicationJournal } from "./replicationJournal.ts";

const fresh = () => mkdtempSync(join(tmpdir(), "offsite-journal-"));

describe("the primary's replication journal", () => {
  it("keeps unacknowledged batches across a restart as suspects, and forgets acknowledged ones", () => {
    const dir = fresh();
    const journal = new ReplicationJournal(dir);
    const first = journal.record(["a.txt", "b.txt"], 1000);
    const second = journal.record(["c.txt"], 2000);
    journal.acknowledge(first);
    assert.equal(journal.pending, 1);
    journal.close();
    // A kill -9 here: the next agent finds what was in flight.
    const reopened = new ReplicationJournal(dir);
    assert.deepEqual([...reopened.suspects()], ["c.txt"]);
    assert.equal(reopened.lastSeq, second);
    assert.equal(reopened.oldestPending, 2000);
    assert.ok(reopened.record(["d"], 3000) > second, "seq keeps growing after a restart");
  });

  it("ignores a torn last line", () => {
    const dir = fresh();
    const journal = new ReplicationJournal(dir);
    journal.record(["kept"], 1);
    journal.close();
    appendFileSync(join(dir, "journal.jsonl"), '{"seq": 9, "t": 2, "paths": ["tor');
    assert.deepEqual([...new ReplicationJournal(dir).suspects()], ["kept"]);
  });

  it("past its bound stops listing paths, says it overflowed, and recovers once all is acknowledged", () => {
    const dir = fresh();
    const journal = new ReplicationJournal(dir);
    const paths = Array.from({ length: 1000 }, (_, i) => `f${i}`);
    let seq = 0;
    for (let i = 0; i <= MAX_PENDING / 1000; i++) seq = journal.record(paths, 1000 + i);
    assert.equal(journal.overflowed, true);
    assert.equal(journal.pending, 0);
    assert.equal(journal.oldestPending, 1000, "the lag still counts from the oldest change");
    journal.close();
    assert.equal(new ReplicationJournal(dir).overflowed, true, "the overflow survives a restart");
    const again = new ReplicationJournal(dir);
    again.acknowledge(seq);
    assert.equal(again.overflowed, false);
    assert.ok(statSync(join(dir, "journal.jsonl")).size < 5 * 1024 * 1024);
    assert.match(readFileSync(join(dir, "journal.jsonl"), "utf8"), /"acked"/);
  });

  it("goes on counting after a compaction left only the acknowledgement", () => {
    const dir = fresh();
    writeFileSync(join(dir, "journal.jsonl"), '{"acked":500}\n');
    const journal = new ReplicationJournal(dir);
    const seq = journal.record(["x"], 1);
    assert.ok(seq > 500, `seq ${seq}`);
    journal.acknowledge(seq);
    assert.equal(journal.pending, 0, "the acknowledgement of the new batch counts");
  });
});
