/**
 * Names are bytes: a tree whose names are not UTF-8 (Latin-1 uploads, `\xff\xfe`, a
 * newline, an ESC, a symlink target in Latin-1) is pushed, compared equal and restored
 * with the very same bytes, through a receiver process over TLS, as an unlucky user would
 * meet it. Small and large files (the chunked path: Begin, ChunkList, Copy), a rename (a
 * Link from a byte-named file) and a second push that sends nothing.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  entriesSeenBy,
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";
import { startHookedReceiver } from "./hookedReceiver.ts";
import { hasEscapedBytes } from "../../agent/protocol/byteNames.ts";
import { treeSnapshot } from "./testSupport.ts";

const SITE = "0f0e0d0c-0b0a-4908-8706-050403020100";
const SOURCE = "bytes-source";

/** A path under `dir` made of raw bytes: `at(dir, "caf", [0xe9], ".txt")`. */
function at(dir: string, ...parts: (string | number[])[]): Buffer {
  return Buffer.concat([
    Buffer.from(`${dir}/`),
    ...parts.map((part) => (typeof part === "string" ? Buffer.from(part) : Buffer.from(part))),
  ]);
}

describe("names that are not UTF-8", () => {
  let work: string;
  let source: string;
  let receiver: ReceiverProcess;
  let certs: string;
  const to = () => `127.0.0.1:${receiver.port}`;
  const run = (args: string[]) => runOffsite([...args, "--json"]);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-bytes-"));
    source = join(work, "source");
    mkdirSync(source);
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    certs = made.client;
    receiver = await startReceiverProcess(join(work, "root"), made.receiver);

    writeFileSync(at(source, "caf", [0xe9], ".txt"), "Latin-1 name\n"); // café in Latin-1
    writeFileSync(at(source, "caf\u00e9.txt"), "UTF-8 twin\n"); // café in UTF-8, a different file
    mkdirSync(at(source, [0xff, 0xfe]));
    writeFileSync(at(source, [0xff, 0xfe], "/inside.bin"), randomBytes(5000));
    writeFileSync(at(source, [0xff, 0xfe], "/big-", [0x80, 0x81], ".bin"), randomBytes(600 * 1024));
    writeFileSync(at(source, "line\nbreak.txt"), "a newline in a name\n");
    writeFileSync(at(source, "\u001b[31mred"), "an ESC in a name\n");
    symlinkSync(at("..", "caf", [0xe9], ".txt").subarray(3), at(source, "link-to-latin1"));
    symlinkSync("caf\u00e9.txt", at(source, "link-", [0xe8]));
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("pushes every entry, compares equal, and restores the same bytes", async () => {
    const pushed = await run(["push", source, "--to", to(), "--certs", certs]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const report = reportOf<{ outcome: string; files: { sent: number }; problems: unknown[] }>(pushed);
    assert.equal(report.outcome, "succeeded");
    assert.deepEqual(report.problems, []);
    assert.equal(report.files.sent, 6);

    // The receiver stores the names as their bytes, not as U+FFFD (the snapshot reads
    // names as bytes: "\udce9" is the byte 0xe9 on disk).
    const stored = treeSnapshot(join(work, "root", SITE, SOURCE, "current", "tree"));
    assert.ok("caf\udce9.txt" in stored, Object.keys(stored).join(" "));
    assert.ok("\udcff\udcfe/" in stored);

    const compared = await run(["compare", source, "--to", to(), "--certs", certs]);
    assert.equal(compared.code, 0, compared.stdout + compared.stderr);

    const restored = join(work, "restored");
    const back = await run(["restore", "--from", to(), "--certs", certs, restored]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(treeSnapshot(restored), treeSnapshot(source));
    execFileSync("diff", ["-r", "--no-dereference", source, restored]);

    const again = reportOf<{ files: { sent: number; unchanged: number } }>(
      await run(["push", source, "--to", to(), "--certs", certs]),
    );
    assert.equal(again.files.sent, 0, "nothing changed, nothing travels");
    assert.equal(again.files.unchanged, 6);

    // A peer of version 1 is not shown names it could neither scan nor match (it would
    // delete them), and the receiver carries them over.
    const seen = (versions: number[]) => entriesSeenBy(receiver.port, certs, SITE, SOURCE, versions);
    const v2 = await seen([2, 1]);
    const v1 = await seen([1]);
    assert.equal(v2.version, 2);
    assert.equal(v1.version, 1);
    assert.ok(v2.entries.some((e) => hasEscapedBytes(e.path)));
    assert.deepEqual(
      v1.entries.filter(
        (e) => hasEscapedBytes(e.path) || (e.type === "symlink" && hasEscapedBytes(e.target)),
      ),
      [],
    );
    assert.ok(
      v1.entries.some((e) => e.path === "caf\u00e9.txt"),
      "UTF-8 names are shown",
    );
  });

  it("carries a rename and an edit of byte-named files (Link and Copy against the base)", async () => {
    renameSync(at(source, "caf", [0xe9], ".txt"), at(source, "renamed-", [0xe9]));
    const big = at(source, [0xff, 0xfe], "/big-", [0x80, 0x81], ".bin");
    const bytes = readFileSync(big);
    bytes.write("edited", 300 * 1024);
    writeFileSync(big, bytes);
    const pushed = await run(["push", source, "--to", to(), "--certs", certs]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const report = reportOf<{ files: { linked: number; sent: number }; bytes: { wire: number } }>(pushed);
    assert.equal(report.files.linked, 1, "the rename travels as a Link");
    assert.equal(report.files.sent, 1);
    assert.ok(report.bytes.wire < 200 * 1024, `only the changed chunks travel (${report.bytes.wire} bytes)`);

    const restored = join(work, "restored-2");
    const back = await run(["restore", "--from", to(), "--certs", certs, restored]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(treeSnapshot(restored), treeSnapshot(source));
  });
});

describe("names that are not UTF-8, to a receiver of protocol version 1", () => {
  it("backs up everything else and reports those entries: a partial job, never a name stored wrong", async () => {
    const work = mkdtempSync(join(tmpdir(), "offsite-bytes-v1-"));
    const hooked = await startHookedReceiver(work, SITE, SOURCE, "root", [1]);
    try {
      const source = join(work, "source");
      mkdirSync(source);
      writeFileSync(join(source, "plain.txt"), "fine\n");
      mkdirSync(at(source, "dir-", [0xe9]));
      writeFileSync(at(source, "dir-", [0xe9], "/inside.txt"), "covered by its directory\n");
      symlinkSync(at("x", [0xff]).subarray(0), at(source, "link"));
      const pushed = await runOffsite([
        "push",
        source,
        "--to",
        `127.0.0.1:${hooked.receiver.port}`,
        "--certs",
        hooked.clientDir,
        "--json",
      ]);
      assert.equal(pushed.code, 3, pushed.stderr);
      const report = reportOf<{
        outcome: string;
        files: { sent: number };
        problems: { path: string; reason: string }[];
      }>(pushed);
      assert.equal(report.outcome, "partial");
      assert.equal(report.files.sent, 1);
      assert.deepEqual(
        report.problems.map((p) => p.path),
        ["dir-\udce9", "link"],
        "the directory once (its contents are under it), and the link whose target is not UTF-8",
      );
      for (const problem of report.problems) assert.match(problem.reason, /protocol version 1/);
      const stored = readdirSync(join(work, "root", SITE, SOURCE, "current", "tree"));
      assert.deepEqual(stored, ["plain.txt"]);
    } finally {
      await hooked.receiver.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
