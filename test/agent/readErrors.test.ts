/**
 * A disk that fails in the middle of a file (a bad sector: EIO after the first megabytes
 * were read and sent) costs that file, not the job: the pusher abandons it (protocol
 * version 2), the receiver drops what it staged and keeps its previous copy, and the job
 * is partial with the file and the reason reported, as rsync's exit 23 and restic's 3.
 *
 * The failing disk is real: an ext4 image on a loop device whose backing file is cut
 * short under the file's later blocks, so the kernel answers EIO there. It needs root and
 * loop devices (`losetup`, `mkfs.ext4`); elsewhere the suite says why it is skipped.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
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
import { sha256Hex } from "./testSupport.ts";

const SITE = "eio-site";
const SOURCE = "eio-source";
const MiB = 1024 * 1024;

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root to attach a loop device (run as root to test read errors)";
  for (const tool of ["losetup", "mkfs.ext4", "filefrag"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `needs ${tool}`;
    }
  }
  if (!existsSync("/dev/loop-control")) return "needs loop devices (/dev/loop-control)";
  return undefined;
}

describe("a read error in the middle of a large file", { skip: unavailable() }, () => {
  let work: string;
  let image: string;
  let mount: string;
  let device = "";
  let receiver: ReceiverProcess;
  let certs: string;
  const source = () => join(mount, "src");
  const push = () =>
    runOffsite(["push", source(), "--to", `127.0.0.1:${receiver.port}`, "--certs", certs, "--json"]);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-eio-"));
    image = join(work, "disk.img");
    mount = join(work, "mnt");
    mkdirSync(mount);
    writeFileSync(image, "");
    truncateSync(image, 64 * MiB);
    execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", image]);
    device = execFileSync("losetup", ["-f", "--show", image], { encoding: "utf8" }).trim();
    execFileSync("mount", [device, mount]);
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    certs = made.client;
    receiver = await startReceiverProcess(join(work, "root"), made.receiver);
  });

  after(async () => {
    await receiver?.stop();
    if (device) {
      execFileSync("umount", ["-l", mount], { stdio: "ignore" });
      execFileSync("losetup", ["-d", device], { stdio: "ignore" });
    }
    rmSync(work, { recursive: true, force: true });
  });

  it("abandons that file, keeps the receiver's previous copy of it, and completes the rest: partial", async () => {
    mkdirSync(source());
    writeFileSync(join(source(), "notes.txt"), "first\n");
    const first = randomBytes(8 * MiB);
    writeFileSync(join(source(), "big.bin"), first);
    execFileSync("sync");
    const pushed = await push();
    assert.equal(pushed.code, 0, pushed.stderr);

    // A new version of the file, and a disk that fails 2 MiB into it.
    const second = randomBytes(8 * MiB);
    writeFileSync(join(source(), "big.bin"), second);
    writeFileSync(join(source(), "notes.txt"), "second\n");
    execFileSync("sync");
    const extents = execFileSync("filefrag", ["-v", "-b4096", join(source(), "big.bin")], {
      encoding: "utf8",
    });
    const firstExtent = /^\s*0:\s+0\.\.\s*(\d+):\s+(\d+)\.\./m.exec(extents);
    assert.ok(
      firstExtent && Number(firstExtent[1]) >= 1023,
      `big.bin starts with a 4 MiB extent:\n${extents}`,
    );
    truncateSync(image, (Number(firstExtent[2]) + 512) * 4096); // 2 MiB into the file
    // Drop the file's cached pages, so reading it goes to the (now short) disk.
    execFileSync("dd", [`if=${join(source(), "big.bin")}`, "iflag=nocache", "count=0"], { stdio: "ignore" });
    assert.throws(() => readFileSync(join(source(), "big.bin")), /EIO/, "the disk fails under the file");

    const partial = await push();
    assert.equal(partial.code, 3, partial.stderr);
    const report = reportOf<{
      outcome: string;
      files: { sent: number };
      bytes: { wire: number };
      problems: { path: string; reason: string }[];
    }>(partial);
    assert.equal(report.outcome, "partial");
    assert.deepEqual(
      report.problems.map((p) => p.path),
      ["big.bin"],
    );
    assert.match(report.problems[0]!.reason, /EIO|input\/output error/i);
    assert.ok(report.bytes.wire > MiB, `part of the file went before the error (${report.bytes.wire} bytes)`);
    assert.equal(report.files.sent, 1, "notes.txt");

    const tree = join(work, "root", SITE, SOURCE, "current", "tree");
    assert.equal(readFileSync(join(tree, "notes.txt"), "utf8"), "second\n");
    assert.equal(sha256Hex(readFileSync(join(tree, "big.bin"))), sha256Hex(first), "the previous copy stays");
    assert.ok(!existsSync(join(work, "root", SITE, SOURCE, "staging", "partial")), "nothing is left staged");
  });
});
