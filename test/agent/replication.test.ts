/**
 * `offsite replicate` and `offsite standby` as a user runs them, as real processes: a local
 * directory as the standby, and a standby over TLS with certificates from `offsite certs`.
 * After 1,000 mixed changes the trees are identical (bytes, modes, mtimes); renames travel
 * as renames (the bytes sent show it); the content firewall keeps executables and scripts
 * on the primary and reports them.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeStandaloneCerts } from "./agentProcesses.ts";
import {
  mixedChanges,
  startProcess,
  treeDifferences,
  waitForIdentical,
  type OffsiteProcess,
} from "./replicationSupport.ts";
import { inertRandomBytes } from "./testSupport.ts";

const SITE = "replica-site";
const PAIR = "replica-pair";

describe("offsite replicate to a local directory", () => {
  let work = "";
  let replicate: OffsiteProcess | undefined;
  const primary = () => join(work, "primary");
  const standby = () => join(work, "standby");

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-replicate-"));
    mkdirSync(join(primary(), "docs"), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(primary(), "docs", `page${i}.html`), `<p>page ${i}</p>`);
    writeFileSync(join(primary(), "big.bin"), inertRandomBytes(2 * 1024 * 1024));
    replicate = startProcess(["replicate", primary(), "--to", standby()]);
    await replicate.waitFor((e) => e.event === "synced");
  });

  after(async () => {
    await replicate?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("makes the standby identical at once (the initial sync)", async () => {
    await waitForIdentical(primary(), standby(), 10_000);
  });

  it("after 1,000 mixed changes the trees are identical: bytes, modes, mtimes", async () => {
    const counts = await mixedChanges(primary(), 1000, 7, 20);
    assert.ok(counts.renamed > 50 && counts.deleted > 50 && counts.edited > 100, JSON.stringify(counts));
    assert.ok(counts.dirsRenamed >= 1 && counts.chmodded > 20, JSON.stringify(counts));
    await waitForIdentical(primary(), standby(), 30_000);
  });

  it("a rename travels as a rename: a 4 MiB directory moved costs a few hundred bytes", async () => {
    mkdirSync(join(primary(), "album"));
    for (let i = 0; i < 16; i++)
      writeFileSync(join(primary(), "album", `photo${i}.jpg`), inertRandomBytes(256 * 1024));
    writeFileSync(join(primary(), "video.bin"), inertRandomBytes(2 * 1024 * 1024));
    await waitForIdentical(primary(), standby(), 20_000);
    // The standby shows a file before the primary hears it is durable: wait for that too.
    await settled(replicate!);
    const before = lastBytesSent(replicate!);
    const seen = replicate!.events.length;
    renameSync(join(primary(), "album"), join(primary(), "album-2026"));
    renameSync(join(primary(), "video.bin"), join(primary(), "video-renamed.bin"));
    await waitForIdentical(primary(), standby(), 20_000);
    await replicate!.waitFor((e) => e.event === "applied" && replicate!.events.indexOf(e) >= seen);
    const sent = lastBytesSent(replicate!) - before;
    process.stderr.write(`[replication] renaming a 4 MiB directory and a 2 MiB file sent ${sent} bytes\n`);
    assert.ok(sent < 4096, `renaming 6 MiB of files sent ${sent} bytes`);
  });

  it("keeps executables and scripts on the primary, by content, and reports each", async () => {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), randomBytes(2000)]);
    writeFileSync(join(primary(), "docs", "logo.png"), elf);
    writeFileSync(join(primary(), "docs", "photo.jpg"), "#!/bin/sh\nrm -rf /\n");
    writeFileSync(join(primary(), "docs", "upload.php"), "<?php system($_GET['c']); ?>");
    writeFileSync(join(primary(), "docs", "shell.gif"), "GIF89a\x01\x00<?php eval($_POST['x']); ?>");
    writeFileSync(join(primary(), "docs", "fine.txt"), "plain text");
    await replicate!.waitFor((e) => e.event === "applied" && existsSync(join(standby(), "docs", "fine.txt")));
    for (const name of ["logo.png", "photo.jpg", "upload.php", "shell.gif"]) {
      assert.ok(!existsSync(join(standby(), "docs", name)), `${name} reached the standby`);
      assert.ok(existsSync(join(primary(), "docs", name)), `${name} must stay on the primary`);
      await replicate!.waitFor((e) => e.event === "blocked" && e.path === `docs/${name}`, 5000);
    }
    const differences = treeDifferences(primary(), standby());
    assert.deepEqual(differences.map((line) => line.split(":")[0]).sort(), [
      "docs/logo.png",
      "docs/photo.jpg",
      "docs/shell.gif",
      "docs/upload.php",
    ]);
  });
});

describe("offsite replicate to offsite standby over TLS", () => {
  let work = "";
  let standbyProcess: OffsiteProcess | undefined;
  let replicate: OffsiteProcess | undefined;
  let port = 0;
  let certs: { receiver: string; client: string };
  const primary = () => join(work, "primary");
  const standby = () => join(work, "standby");

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-standby-"));
    mkdirSync(primary());
    writeFileSync(join(primary(), "index.html"), "<h1>hello</h1>");
    certs = await makeStandaloneCerts(join(work, "certs"), SITE, PAIR);
    standbyProcess = startProcess([
      "standby",
      "--root",
      standby(),
      "--certs",
      certs.receiver,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
    ]);
    port = (await standbyProcess.waitFor((e) => e.event === "listening")).port as number;
    replicate = startProcess(["replicate", primary(), "--to", `127.0.0.1:${port}`, "--certs", certs.client]);
    await replicate.waitFor((e) => e.event === "synced");
  });

  after(async () => {
    await replicate?.stop();
    await standbyProcess?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("keeps the standby identical through 1,000 mixed changes", async () => {
    await mixedChanges(primary(), 1000, 11, 25);
    await waitForIdentical(primary(), standby(), 30_000);
  });

  it("refuses a primary of another pair, and writes nothing of it", async () => {
    const other = await makeStandaloneCerts(join(work, "certs"), SITE, "another-pair");
    const intruder = startProcess([
      "replicate",
      join(work, "elsewhere"),
      "--to",
      `127.0.0.1:${port}`,
      "--certs",
      other.client,
    ]);
    mkdirSync(join(work, "elsewhere"), { recursive: true });
    const refused = await intruder.waitFor((e) => e.event === "disconnected" || e.event === "error", 20_000);
    await intruder.stop();
    assert.match(JSON.stringify(refused), /belongs to pair/);
    assert.ok(!existsSync(join(standby(), "elsewhere")));
  });
});

/** Until the primary has nothing pending and no batch for 300 ms. */
async function settled(process: OffsiteProcess): Promise<void> {
  for (let quiet = 0, seen = -1; quiet < 3;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const applied = process.events.filter((e) => e.event === "applied");
    const pending = (applied.at(-1)?.pending as number | undefined) ?? 0;
    quiet = applied.length === seen && pending === 0 ? quiet + 1 : 0;
    seen = applied.length;
  }
}

function lastBytesSent(process: OffsiteProcess): number {
  const applied = process.events.filter((e) => e.event === "applied");
  return (applied.at(-1)?.bytesSent as number | undefined) ?? 0;
}
