/**
 * Live data changes while it is backed up: a file the scan saw can be gone when its turn
 * comes. The job goes on (as rsync's "file has vanished" does), reports the file, and the
 * new version does not carry the receiver's older copy of it; compare reports it missing. The pusher and a receiver
 * run in this process over real TLS on loopback; the receiver's session event, which
 * fires after the pusher's scan and before it reads any file, deletes the files, so the
 * race is exact every time.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { compareJob } from "../../agent/compare/compareJob.ts";
import { pushJob } from "../../agent/push/pushJob.ts";
import { NO_FILTERS } from "../../agent/source/filters.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";
import { startHookedReceiver, type HookedReceiver } from "./hookedReceiver.ts";

const SITE = "5a5a5a5a-1b1b-4c2c-8d3d-4e4e4e4e4e4e";
const SOURCE = "6f6f6f6f-7a7a-4b8b-9c9c-0d0d0d0d0d0d";

describe("files that vanish while a push runs", () => {
  let work: string;
  let hooked: HookedReceiver;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-vanish-"));
    hooked = await startHookedReceiver(work, SITE, SOURCE);
  });

  after(async () => {
    await hooked?.receiver.close();
    rmSync(work, { recursive: true, force: true });
  });

  const endpoint = () => ({
    host: "127.0.0.1",
    port: hooked.receiver.port,
    credentials: loadCredentials(hooked.clientDir),
  });
  const push = (source: string) =>
    pushJob({
      source,
      endpoint: endpoint(),
      site: SITE,
      sourceId: SOURCE,
      filters: NO_FILTERS,
    });

  it("reports a small and a large file that vanished, and leaves them out of the new version", async () => {
    const source = join(work, "source");
    mkdirSync(join(source, "docs"), { recursive: true });
    writeFileSync(join(source, "docs", "stays.txt"), "stays");
    writeFileSync(join(source, "docs", "small.txt"), "version one");
    writeFileSync(join(source, "large.bin"), Buffer.alloc(300_000, 1));
    const first = await push(source);
    assert.deepEqual(first.vanished, []);

    // Changed, so the next push must read them; then deleted once that push has scanned.
    writeFileSync(join(source, "docs", "small.txt"), "version two, longer");
    writeFileSync(join(source, "large.bin"), Buffer.alloc(400_000, 2));
    writeFileSync(join(source, "new.txt"), "never backed up");
    hooked.onSession = () => {
      for (const path of ["docs/small.txt", "large.bin", "new.txt"]) rmSync(join(source, path));
    };
    const second = await push(source).finally(() => (hooked.onSession = undefined));

    assert.deepEqual(second.vanished.sort(), ["docs/small.txt", "large.bin", "new.txt"]);
    const tree = join(work, "root", SITE, SOURCE, "versions", second.version, "tree");
    assert.deepEqual(readdirSync(tree, { recursive: true, encoding: "utf8" }).sort(), [
      "docs",
      "docs/stays.txt",
    ]);
  });

  it("compare reports a file that vanished before it was hashed as missing from the source", async () => {
    const source = join(work, "source");
    hooked.onSession = () => rmSync(join(source, "docs", "stays.txt"));
    const report = await compareJob({
      source,
      endpoint: endpoint(),
      site: SITE,
      sourceId: SOURCE,
      filters: NO_FILTERS,
      checksum: true,
    }).finally(() => (hooked.onSession = undefined));
    assert.equal(report.match, false);
    assert.deepEqual(report.missing, ["docs/stays.txt"]);
    assert.deepEqual(report.changed, []);
  });
});
