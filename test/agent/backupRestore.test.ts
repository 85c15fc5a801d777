/**
 * The agent end to end, as separate processes over real TLS on loopback: a receiver made
 * with `offsite certs`, then full and incremental pushes, deletes and renames, filters and
 * the content firewall, compare, restore of an older version, and retention.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
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
import { treeSnapshot } from "./testSupport.ts";

interface PushReport {
  version: string;
  files: { total: number; unchanged: number; sent: number; linked: number; deleted: number };
  bytes: { content: number; wire: number };
  filtered: { path: string; reason: string }[];
  pruned: string[];
}
interface CompareReport {
  match: boolean;
  added: string[];
  changed: string[];
  missing: string[];
  extra: string[];
}

const SITE = "0b8a2f4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
const SOURCE = "7d3c9e21-5b6a-4c8d-9e0f-1a2b3c4d5e6f";

describe("offsite push / compare / restore against a receiver process", () => {
  let work: string;
  let source: string;
  let root: string;
  let receiver: ReceiverProcess;
  let clientCerts: string;
  let to: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-agent-"));
    source = join(work, "source");
    root = join(work, "root");
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    clientCerts = made.client;
    receiver = await startReceiverProcess(root, made.receiver, ["--keep-last", "50"]);
    to = `127.0.0.1:${receiver.port}`;

    mkdirSync(join(source, "docs", "deep"), { recursive: true });
    writeFileSync(join(source, "docs", "readme.txt"), "hello offsite\n");
    writeFileSync(join(source, "docs", "deep", "notes.md"), "# notes\n".repeat(100));
    writeFileSync(join(source, "large.bin"), randomBytes(3 * 1024 * 1024));
    writeFileSync(join(source, "empty"), "");
    for (let i = 0; i < 50; i++)
      writeFileSync(join(source, "docs", `file-${i}.txt`), `content ${i}\n`.repeat(i + 1));
    symlinkSync("docs/readme.txt", join(source, "readme-link"));
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const push = async (...extra: string[]) => {
    const result = await runOffsite(["push", source, "--to", to, "--certs", clientCerts, "--json", ...extra]);
    assert.equal(result.code, 0, result.stderr);
    return reportOf<PushReport>(result);
  };
  const compare = async (...extra: string[]) => {
    const result = await runOffsite([
      "compare",
      source,
      "--to",
      to,
      "--certs",
      clientCerts,
      "--json",
      ...extra,
    ]);
    return { code: result.code, report: reportOf<CompareReport>(result) };
  };
  const restore = async (destination: string, ...extra: string[]) => {
    const result = await runOffsite([
      "restore",
      "--from",
      to,
      "--certs",
      clientCerts,
      "--json",
      ...extra,
      destination,
    ]);
    assert.equal(result.code, 0, result.stderr);
    return reportOf<{ version: string; files: number }>(result);
  };
  const sourceDir = () => join(root, SITE, SOURCE);

  let firstVersion: string;
  let firstSnapshot: string;

  it("backs up a whole tree, then sends nothing when nothing changed", async () => {
    const first = await push();
    assert.equal(first.files.total, 54);
    assert.equal(first.files.sent, 54);
    assert.ok(first.bytes.content >= 3 * 1024 * 1024);
    firstVersion = first.version;
    firstSnapshot = join(work, "snapshot-1");
    cpSync(source, firstSnapshot, { recursive: true, verbatimSymlinks: true });

    const again = await push();
    assert.equal(again.files.unchanged, 54);
    assert.equal(again.files.sent, 0);
    assert.equal(again.bytes.content, 0);
    assert.notEqual(again.version, first.version);
    // The second version is a complete tree sharing every file with the first.
    const inode = (version: string) =>
      statSync(join(sourceDir(), "versions", version, "tree", "large.bin")).ino;
    assert.equal(inode(again.version), inode(first.version));
    assert.equal((await compare()).code, 0);
  });

  it("carries edits, additions, deletions and renames, sending only changed chunks", async () => {
    const large = readFileSync(join(source, "large.bin"));
    large.fill(7, 1_000_000, 1_000_100); // a 100-byte edit inside a 3 MiB file
    writeFileSync(join(source, "large.bin"), large);
    writeFileSync(join(source, "docs", "readme.txt"), "hello offsite, edited\n");
    writeFileSync(join(source, "added.txt"), "new\n");
    unlinkSync(join(source, "docs", "file-3.txt"));
    renameSync(join(source, "docs", "deep"), join(source, "docs", "moved"));
    rmSync(join(source, "empty"));
    mkdirSync(join(source, "empty"));

    const mismatch = await compare();
    assert.equal(mismatch.code, 1);
    assert.deepEqual(mismatch.report.added.sort(), ["added.txt", "docs/moved", "docs/moved/notes.md"].sort());
    // "empty" was a file and is a directory now: a type change.
    assert.deepEqual(mismatch.report.changed.sort(), ["docs/readme.txt", "empty", "large.bin"]);
    assert.deepEqual(mismatch.report.missing.sort(), ["docs/deep", "docs/deep/notes.md", "docs/file-3.txt"]);

    const report = await push();
    assert.equal(report.files.linked, 1, "the renamed notes.md travels as a link, not as data");
    assert.equal(
      report.files.deleted,
      2,
      "file-3.txt and docs/deep/notes.md (the file empty became a directory)",
    );
    assert.ok(
      report.bytes.content < 200_000,
      `${report.bytes.content} content bytes for a 100-byte edit and two small files`,
    );
    const match = await compare();
    assert.equal(match.code, 0, JSON.stringify(match.report));
    assert.equal(match.report.match, true);
  });

  it("restores the newest version and an older one byte for byte", async () => {
    const newest = join(work, "restore-newest");
    await restore(newest);
    assert.deepEqual(treeSnapshot(newest), treeSnapshot(source));
    const older = join(work, "restore-older");
    const report = await restore(older, "--version", firstVersion);
    assert.equal(report.version, firstVersion);
    assert.deepEqual(treeSnapshot(older), treeSnapshot(firstSnapshot));
    assert.equal(readFileSync(join(older, "docs", "readme.txt"), "utf8"), "hello offsite\n");
  });

  it("applies the filters and the content firewall on the agent and reports every file kept back", async () => {
    writeFileSync(join(source, "scratch.tmp"), "temporary");
    writeFileSync(join(source, "huge.dat"), Buffer.alloc(5 * 1024 * 1024, 1));
    writeFileSync(
      join(source, "photo.jpg"),
      Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), randomBytes(100)]),
    );
    writeFileSync(join(source, "setup.txt"), "#!/bin/sh\nrm -rf /\n");
    writeFileSync(join(source, "tool.exe"), Buffer.concat([Buffer.from("MZ"), randomBytes(100)]));
    writeFileSync(join(source, "macro.txt"), "harmless text, stopped by pattern");
    writeFileSync(join(source, "upload.php"), "<?php echo 1; ?>"); // a script by its extension
    mkdirSync(join(source, "tools"), { recursive: true });
    writeFileSync(join(source, "tools", "safe.sh"), "#!/bin/sh\necho allowed\n"); // exempt by --firewall-allow
    const report = await push(
      "--exclude",
      "**/*.tmp",
      "--max-file-size",
      "4Mi",
      "--firewall",
      "--firewall-block",
      "**/macro.*",
      "--firewall-allow",
      "tools/**",
    );
    const filtered = Object.fromEntries(report.filtered.map((f) => [f.path, f.reason]));
    assert.deepEqual(filtered, {
      "scratch.tmp": "excluded",
      "huge.dat": "too-large",
      "photo.jpg": "firewall-executable",
      "setup.txt": "firewall-script",
      "tool.exe": "firewall-executable",
      "macro.txt": "firewall-pattern",
      "upload.php": "firewall-script",
    });
    assert.equal(
      readFileSync(join(sourceDir(), "current", "tree", "tools", "safe.sh"), "utf8"),
      "#!/bin/sh\necho allowed\n",
    );
    const stored = join(sourceDir(), "current", "tree");
    for (const path of Object.keys(filtered)) assert.equal(existsSync(join(stored, path)), false, path);
    const job = JSON.parse(readFileSync(join(sourceDir(), "current", "job.json"), "utf8")) as {
      filtered: Record<string, number>;
    };
    assert.deepEqual(job.filtered, {
      excluded: 1,
      "too-large": 1,
      "firewall-executable": 2,
      "firewall-script": 2,
      "firewall-pattern": 1,
    });
    for (const path of Object.keys(filtered)) rmSync(join(source, path));
    rmSync(join(source, "tools"), { recursive: true });
  });

  it("prunes old versions by retention and keeps the data the survivors share", async () => {
    await receiver.stop();
    receiver = await startReceiverProcess(root, join(work, "certs", "receiver"), [
      "--keep-last",
      "2",
      "--keep-daily",
      "0",
      "--keep-weekly",
      "0",
      "--keep-monthly",
      "0",
    ]);
    to = `127.0.0.1:${receiver.port}`;
    const before = readdirSync(join(sourceDir(), "versions"));
    assert.ok(before.length >= 4);
    writeFileSync(join(source, "added.txt"), "changed again\n");
    const report = await push();
    assert.equal(report.pruned.length, before.length + 1 - 2);
    const left = readdirSync(join(sourceDir(), "versions")).sort();
    assert.equal(left.length, 2);
    assert.ok(!left.includes(firstVersion));
    // large.bin was written by an early (now pruned) job; the survivors still hold it.
    const restored = join(work, "restore-after-prune");
    await restore(restored);
    assert.deepEqual(treeSnapshot(restored), treeSnapshot(source));
  });

  it("refuses a compare or restore of a version that does not exist, with a clear error", async () => {
    const result = await runOffsite([
      "restore",
      "--from",
      to,
      "--certs",
      clientCerts,
      "--version",
      "20000101T000000Z",
      join(work, "nowhere"),
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /has no version 20000101T000000Z/);
    const compared = await runOffsite([
      "compare",
      source,
      "--to",
      to,
      "--certs",
      clientCerts,
      "--version",
      "20000101T000000Z",
    ]);
    assert.equal(compared.code, 2);
  });
});

describe("offsite with a local directory (the embedded default)", () => {
  it("backs up, compares and restores with no receiver, certificates or Kubernetes", async () => {
    const work = mkdtempSync(join(tmpdir(), "offsite-local-"));
    try {
      const source = join(work, "data");
      mkdirSync(join(source, "a"), { recursive: true });
      writeFileSync(join(source, "a", "one.txt"), "one");
      writeFileSync(join(source, "two.bin"), randomBytes(200_000));
      const pushed = await runOffsite(["push", "./data", "--to", "./backups", "--json"], work);
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.equal(reportOf<PushReport>(pushed).files.sent, 2);
      const compared = await runOffsite(["compare", "./data", "--to", "./backups"], work);
      assert.equal(compared.code, 0, compared.stderr);
      const restored = await runOffsite(["restore", "--from", "./backups", "./restored"], work);
      assert.equal(restored.code, 0, restored.stderr);
      assert.deepEqual(treeSnapshot(join(work, "restored")), treeSnapshot(source));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("offsite through a tunnel (kubectl port-forward, ssh -L)", () => {
  it("--tls-server-name verifies the receiver's certificate by its name, not the tunnel's address", async () => {
    const work = mkdtempSync(join(tmpdir(), "offsite-tunnel-"));
    const made = await runOffsite([
      "certs",
      "--out",
      join(work, "certs"),
      "--host",
      "vault.backup.example",
      "--site",
      SITE,
      "--source",
      SOURCE,
      "--json",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const receiver = await startReceiverProcess(join(work, "root"), join(work, "certs", "receiver"));
    try {
      const source = join(work, "source");
      mkdirSync(source);
      writeFileSync(join(source, "a.txt"), "through the tunnel\n");
      const push = (...extra: string[]) =>
        runOffsite([
          "push",
          source,
          "--to",
          `127.0.0.1:${receiver.port}`,
          "--certs",
          join(work, "certs", `source-${SOURCE}`),
          "--json",
          ...extra,
        ]);
      // The certificate names vault.backup.example only: 127.0.0.1 is refused...
      const refused = await push();
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /127\.0\.0\.1|IP/);
      const wrongName = await push("--tls-server-name", "other.backup.example");
      assert.equal(wrongName.code, 1);
      assert.match(wrongName.stderr, /other\.backup\.example/);
      // ...and accepted by the name it was issued for.
      const accepted = await push("--tls-server-name", "vault.backup.example");
      assert.equal(accepted.code, 0, accepted.stderr);
      assert.equal(reportOf<{ outcome: string }>(accepted).outcome, "succeeded");
      const local = await runOffsite(["push", source, "--to", join(work, "local"), "--tls-server-name", "x"]);
      assert.equal(local.code, 2);
      assert.match(local.stderr, /--tls-server-name is for a receiver's HOST:PORT/);
    } finally {
      await receiver.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
