/**
 * Hard links, as rsync -H and restic users expect: files hard-linked together in a source
 * (a small file with three names, a large one with two, across directories) are stored
 * and restored as one inode each, and a second push sends nothing. A name that stops
 * being a link is a file of its own again. Real processes over TLS.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
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
  runOffsiteAs,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";

const SITE = "4b4b4b4b-0000-4000-8000-000000000002";
const SOURCE = "links-source";

interface PushReport {
  outcome: string;
  files: { total: number; sent: number; linked: number; unchanged: number };
}

describe("hard links", () => {
  let work: string;
  let source: string;
  let receiver: ReceiverProcess;
  let certs: string;
  const remote = () => ["--certs", certs];
  const push = async () => {
    const pushed = await runOffsite([
      "push",
      source,
      "--to",
      `127.0.0.1:${receiver.port}`,
      ...remote(),
      "--json",
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);
    return reportOf<PushReport>(pushed);
  };
  const restore = async (name: string) => {
    const into = join(work, name);
    const back = await runOffsite([
      "restore",
      "--from",
      `127.0.0.1:${receiver.port}`,
      ...remote(),
      "--json",
      into,
    ]);
    assert.equal(back.code, 0, back.stderr);
    return into;
  };
  const inode = (path: string) => statSync(path).ino;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-links-"));
    source = join(work, "source");
    mkdirSync(join(source, "a"), { recursive: true });
    mkdirSync(join(source, "b"));
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    certs = made.client;
    receiver = await startReceiverProcess(join(work, "root"), made.receiver);
    writeFileSync(join(source, "a", "config.txt"), "shared settings\n");
    linkSync(join(source, "a", "config.txt"), join(source, "b", "config.txt"));
    linkSync(join(source, "a", "config.txt"), join(source, "z-config.txt"));
    writeFileSync(join(source, "a", "big.bin"), randomBytes(300 * 1024));
    linkSync(join(source, "a", "big.bin"), join(source, "b", "big-again.bin"));
    writeFileSync(join(source, "alone.txt"), "one name\n");
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("stores and restores hard-linked files as one inode, sending their content once", async () => {
    const report = await push();
    assert.equal(report.outcome, "succeeded");
    assert.equal(report.files.total, 6);
    assert.equal(report.files.sent, 3, "config.txt, big.bin and alone.txt travel");
    assert.equal(report.files.linked, 3, "the later names travel as HardLink");

    const tree = join(work, "root", SITE, SOURCE, "current", "tree");
    assert.equal(
      inode(join(tree, "b", "config.txt")),
      inode(join(tree, "a", "config.txt")),
      "linked in the store",
    );

    const restored = await restore("restored");
    const config = inode(join(restored, "a", "config.txt"));
    assert.equal(inode(join(restored, "b", "config.txt")), config);
    assert.equal(inode(join(restored, "z-config.txt")), config);
    assert.equal(statSync(join(restored, "a", "config.txt")).nlink, 3);
    assert.equal(inode(join(restored, "b", "big-again.bin")), inode(join(restored, "a", "big.bin")));
    assert.ok(
      readFileSync(join(restored, "b", "big-again.bin")).equals(readFileSync(join(source, "a", "big.bin"))),
    );
    assert.equal(statSync(join(restored, "alone.txt")).nlink, 1);

    const again = await push();
    assert.equal(again.files.unchanged, 6, "nothing changed, nothing travels");
    // A peer of version 1 gets the entries without the field its schema would refuse.
    const v1 = await entriesSeenBy(receiver.port, certs, SITE, SOURCE, [1]);
    const v2 = await entriesSeenBy(receiver.port, certs, SITE, SOURCE, [2, 1]);
    assert.equal(v2.entries.filter((e) => e.type === "file" && e.hardLink !== undefined).length, 3);
    assert.equal(v1.entries.filter((e) => "hardLink" in e).length, 0);
    assert.equal(v1.entries.length, v2.entries.length);
    const compared = await runOffsite([
      "compare",
      source,
      "--to",
      `127.0.0.1:${receiver.port}`,
      ...remote(),
      "--json",
    ]);
    assert.equal(compared.code, 0, compared.stdout);
  });

  it("a name that stops being a link is a file of its own again; an edit reaches every name", async () => {
    unlinkSync(join(source, "z-config.txt"));
    writeFileSync(join(source, "z-config.txt"), "shared settings\n"); // same bytes, own inode
    writeFileSync(join(source, "a", "config.txt"), "changed for every name\n"); // through the link
    const report = await push();
    assert.equal(report.outcome, "succeeded");
    const restored = await restore("restored-2");
    assert.equal(readFileSync(join(restored, "b", "config.txt"), "utf8"), "changed for every name\n");
    assert.equal(inode(join(restored, "b", "config.txt")), inode(join(restored, "a", "config.txt")));
    assert.notEqual(inode(join(restored, "z-config.txt")), inode(join(restored, "a", "config.txt")));
    assert.equal(readFileSync(join(restored, "z-config.txt"), "utf8"), "shared settings\n");
  });
});

describe(
  "a hard link the pusher cannot see",
  { skip: process.getuid?.() !== 0 && "needs root to push as nobody" },
  () => {
    it("keeps it as a file of its own when its first name changes meanwhile: the job is partial, not stuck", async () => {
      const NOBODY = 65534;
      const work = mkdtempSync(join(tmpdir(), "offsite-links-hidden-"));
      chmodSync(work, 0o755);
      const source = join(work, "source");
      mkdirSync(join(source, "private"), { recursive: true });
      writeFileSync(join(source, "a.txt"), "the first content\n");
      linkSync(join(source, "a.txt"), join(source, "private", "b.txt"));
      const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
      chmodSync(join(work, "certs"), 0o755);
      for (const name of ["", ...readdirSync(made.client)])
        chownSync(join(made.client, name), NOBODY, NOBODY);
      const receiver = await startReceiverProcess(join(work, "root"), made.receiver);
      const pushAsNobody = () =>
        runOffsiteAs(NOBODY, [
          "push",
          source,
          "--to",
          `127.0.0.1:${receiver.port}`,
          "--certs",
          made.client,
          "--json",
        ]);
      try {
        const first = await pushAsNobody();
        assert.equal(first.code, 0, first.stderr);
        // The second name goes out of sight, and the first is replaced by another file.
        chmodSync(join(source, "private"), 0o700);
        rmSync(join(source, "a.txt"));
        writeFileSync(join(source, "a.txt"), "another file now\n");
        const second = await pushAsNobody();
        assert.equal(second.code, 3, second.stderr);
        assert.equal(reportOf<{ outcome: string }>(second).outcome, "partial");
        const current = join(work, "root", SITE, SOURCE, "current");
        const entries = readFileSync(join(current, "manifest.jsonl"), "utf8")
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as { path: string; hardLink?: string });
        const hidden = entries.find((e) => e.path === "private/b.txt");
        assert.ok(hidden, "the hidden name is kept");
        assert.equal(hidden.hardLink, undefined, "it is a file of its own now");
        assert.equal(readFileSync(join(current, "tree", "private", "b.txt"), "utf8"), "the first content\n");
        assert.equal(readFileSync(join(current, "tree", "a.txt"), "utf8"), "another file now\n");
      } finally {
        await receiver.stop();
        rmSync(work, { recursive: true, force: true });
      }
    });
  },
);
