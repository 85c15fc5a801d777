/**
 * Sparse files, as rsync -S and restic users expect: a 1 GiB file holding 1 MiB of data
 * sends and stores about 1 MiB (its holes travel as Zeros frames and stay holes in the
 * store), and restores with its holes (what `du` counts stays small), byte for byte. An
 * edit sends only its chunks and the new version stays sparse. Real processes over TLS.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";

const SITE = "5a5a5a5a-0000-4000-8000-000000000001";
const SOURCE = "sparse-source";
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Bytes the file occupies on disk (what `du` shows), not its length. */
const allocated = (path: string) => statSync(path).blocks * 512;

/** A file of `size` bytes that is a hole but for `data` written at each offset. */
function sparseFile(path: string, size: number, data: [number, Buffer][]): void {
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    for (const [offset, bytes] of data) writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

interface PushReport {
  outcome: string;
  files: { sent: number; unchanged: number };
  bytes: { content: number; wire: number };
}

describe("sparse files", () => {
  let work: string;
  let source: string;
  let root: string;
  let receiver: ReceiverProcess;
  let certs: string;
  const run = (args: string[]) =>
    runOffsite([...args, "--to", `127.0.0.1:${receiver.port}`, "--certs", certs]);
  const stored = (name: string) => join(root, SITE, SOURCE, "current", "tree", name);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-sparse-"));
    source = join(work, "source");
    root = join(work, "root");
    mkdirSync(source);
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    certs = made.client;
    receiver = await startReceiverProcess(root, made.receiver);
    // 1 GiB with 1 MiB of data in the middle; a disk image that ends in a hole.
    sparseFile(join(source, "big.img"), GiB, [[512 * MiB, randomBytes(MiB)]]);
    sparseFile(join(source, "tail-hole.img"), 8 * MiB, [[0, randomBytes(100_000)]]);
    assert.ok(
      allocated(join(source, "big.img")) < 2 * MiB,
      "the source file is sparse (this file system has holes)",
    );
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("sends and stores about the data, not the holes, and restores the holes", async () => {
    const pushed = await run(["push", source, "--json"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const report = reportOf<PushReport>(pushed);
    assert.equal(report.outcome, "succeeded");
    assert.equal(report.files.sent, 2);
    assert.ok(report.bytes.wire < 3 * MiB, `${report.bytes.wire} bytes crossed the wire for 1.1 MiB of data`);
    assert.equal(statSync(stored("big.img")).size, GiB);
    assert.ok(
      allocated(stored("big.img")) < 3 * MiB,
      `the store holds ${allocated(stored("big.img"))} bytes`,
    );
    assert.equal(statSync(stored("tail-hole.img")).size, 8 * MiB);

    const restored = join(work, "restored");
    const back = await runOffsite([
      "restore",
      "--from",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      certs,
      "--json",
      restored,
    ]);
    assert.equal(back.code, 0, back.stderr);
    for (const name of ["big.img", "tail-hole.img"]) {
      execFileSync("cmp", [join(source, name), join(restored, name)]); // throws on any difference
      assert.equal(statSync(join(restored, name)).size, statSync(join(source, name)).size);
    }
    assert.ok(allocated(join(restored, "big.img")) < 3 * MiB, "restored with its holes");
    assert.ok(allocated(join(restored, "tail-hole.img")) < MiB, "a trailing hole is restored too");
  });

  it("an edit sends its chunks only, and the new version stays sparse", async () => {
    const fd = openSync(join(source, "big.img"), "r+");
    writeSync(fd, Buffer.from("edited in place"), 0, 15, 512 * MiB + 1000);
    writeSync(fd, randomBytes(4096), 0, 4096, 900 * MiB); // new data inside a hole
    closeSync(fd);
    const pushed = await run(["push", source, "--json"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const report = reportOf<PushReport>(pushed);
    assert.equal(report.files.sent, 1);
    assert.ok(report.bytes.wire < 1 * MiB, `${report.bytes.wire} bytes crossed the wire`);
    assert.ok(
      allocated(stored("big.img")) < 3 * MiB,
      `the new version holds ${allocated(stored("big.img"))} bytes`,
    );
    execFileSync("cmp", [join(source, "big.img"), stored("big.img")]);
  });
});
