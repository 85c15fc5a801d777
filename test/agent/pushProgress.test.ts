/**
 * Progress moves within a large file, not only from file to file: a BackupJob whose data
 * is one database dump shows bytes done, a rate and an ETA while it runs (the operator
 * writes the agent's progress lines into status.progress).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NO_FILTERS } from "../../contract/filters.ts";
import { openLocalStore } from "../../agent/cli/localStore.ts";
import { pushJob, type PushProgress } from "../../agent/push/pushJob.ts";

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;

describe("push progress", () => {
  let work = "";
  before(() => {
    work = mkdtempSync(join(tmpdir(), "offsite-progress-"));
    mkdirSync(join(work, "src"));
    const fd = openSync(join(work, "src", "dump.sql"), "w");
    for (let at = 0; at < SIZE; at += 8 * MiB) writeSync(fd, randomBytes(8 * MiB));
    closeSync(fd);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it("reports bytes done within a large file while it is sent", async () => {
    const store = await openLocalStore(join(work, "store"));
    try {
      const seen: PushProgress[] = [];
      const source = "progress-source";
      const report = await pushJob({
        source: join(work, "src"),
        endpoint: {
          host: "127.0.0.1",
          port: store.receiver.port,
          credentials: await store.clientCredentials(source),
        },
        site: store.site,
        sourceId: source,
        filters: NO_FILTERS,
        onProgress: (p) => seen.push(p),
      });
      assert.equal(report.outcome, "succeeded");
      const within = seen.filter((p) => p.filesDone === 0 && p.bytesDone > 0 && p.bytesDone < SIZE);
      assert.ok(within.length >= 1, JSON.stringify(seen));
      for (let i = 1; i < seen.length; i++)
        assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone, "never backwards");
      assert.ok(
        seen.every((p) => p.bytesDone <= p.bytesTotal && p.bytesTotal === SIZE),
        JSON.stringify(seen.at(-1)),
      );
    } finally {
      await store.close();
    }
  });
});
