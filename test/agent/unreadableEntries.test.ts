/**
 * One entry the agent cannot read never fails the job (issue 12, finding 3). As a non-root
 * sidecar beside an application's files meets it: `offsite push` runs as nobody (65534)
 * against a tree where one directory and some files belong to root with mode 0700/0600.
 * The job backs up everything else, reports each unreadable entry with its path and
 * reason, exits 3 (partial), and the new version keeps the receiver's previous copy of
 * what it could not read (rsync keeps it too) — the files of a directory it could not
 * list, and a file it could not open — while deletions elsewhere still happen. compare
 * reports the same entries as problems, never as missing. Then, in this process, the
 * unlucky cases no permission bit makes: a file swapped for a symlink or a FIFO between
 * the scan and its read (ELOOP, EFTYPE), and a path deeper than the kernel's PATH_MAX
 * (ENAMETOOLONG).
 *
 * The receiver runs as root; the pushing child is spawned with Node's `uid`/`gid` options
 * (we are root), with `/` as its working directory. It must read the repository and
 * node_modules (world-readable under /work/main) and its client credentials, which this
 * test hands to nobody.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { compareJob } from "../../agent/compare/compareJob.ts";
import { pushJob } from "../../agent/push/pushJob.ts";
import { NO_FILTERS } from "../../agent/source/filters.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsiteAs,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";
import { startHookedReceiver, type HookedReceiver } from "./hookedReceiver.ts";

const SITE = "3c3c3c3c-4d4d-4e5e-8f6f-7a7a7a7a7a7a";
const SOURCE = "9b9b9b9b-0c0c-4d1d-8e2e-3f3f3f3f3f3f";
const NOBODY = 65534;
const PARTIAL = 3;

interface Problem {
  path: string;
  reason: string;
}
interface PushReport {
  outcome: string;
  version: string;
  files: { total: number; sent: number; deleted: number };
  problems: Problem[];
  vanished: string[];
}
interface CompareReport {
  match: boolean;
  added: string[];
  changed: string[];
  missing: string[];
  extra: string[];
  problems: Problem[];
}

/** Every path of a version's manifest, in its order. */
function manifestPaths(versionDir: string): string[] {
  return readFileSync(join(versionDir, "manifest.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((line) => (JSON.parse(line) as { path: string }).path);
}

const byPath = (a: Problem, b: Problem) => (a.path < b.path ? -1 : 1);

describe("offsite push as a user who cannot read some entries", { skip: process.getuid?.() !== 0 }, () => {
  let work: string;
  let source: string;
  let root: string;
  let receiver: ReceiverProcess;
  let clientCerts: string;
  let to: string;
  const sourceDir = () => join(root, SITE, SOURCE);

  before(async () => {
    // mkdtemp makes a 0700 directory: nobody must traverse it to reach the source.
    work = mkdtempSync(join(tmpdir(), "offsite-unreadable-"));
    chmodSync(work, 0o755);
    source = join(work, "source");
    root = join(work, "root");
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    clientCerts = made.client;
    chmodSync(join(work, "certs"), 0o755);
    for (const name of ["", ...readdirSync(clientCerts)]) chownSync(join(clientCerts, name), NOBODY, NOBODY);
    receiver = await startReceiverProcess(root, made.receiver);
    to = `127.0.0.1:${receiver.port}`;

    mkdirSync(join(source, "docs"), { recursive: true });
    mkdirSync(join(source, "private", "sub"), { recursive: true });
    writeFileSync(join(source, "docs", "a.txt"), "public a\n");
    writeFileSync(join(source, "docs", "b.txt"), "public b, deleted later\n");
    writeFileSync(join(source, "private", "secret.txt"), "secret one\n");
    writeFileSync(join(source, "private", "sub", "deep.txt"), "deep secret\n");
    writeFileSync(join(source, "locked.txt"), "locked, version one\n");
    writeFileSync(join(source, "locked.bin"), Buffer.alloc(200_000, 1));
    symlinkSync("docs/a.txt", join(source, "a-link"));
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const push = (uid?: number) =>
    runOffsiteAs(uid, ["push", source, "--to", to, "--certs", clientCerts, "--json"]);
  const compare = (uid?: number) =>
    runOffsiteAs(uid, ["compare", source, "--to", to, "--certs", clientCerts, "--json"]);

  let firstVersion: string;

  it("backs up the whole tree while it is readable (exit 0, succeeded)", async () => {
    const first = await push(NOBODY);
    assert.equal(first.code, 0, first.stderr);
    const report = reportOf<PushReport>(first);
    assert.equal(report.outcome, "succeeded");
    assert.deepEqual(report.problems, []);
    firstVersion = report.version;
  });

  it("backs up everything else, reports the directory and the files it cannot read, and exits 3", async () => {
    // Root's own, and closed to others: a directory nobody cannot list (with a file added
    // since, which it cannot see either), changed files it cannot open, one of them large,
    // and a new one it never could read.
    writeFileSync(join(source, "private", "added-since.txt"), "never seen\n");
    chmodSync(join(source, "private"), 0o700);
    writeFileSync(join(source, "locked.txt"), "locked, version two (unreadable)\n");
    chmodSync(join(source, "locked.txt"), 0o600);
    writeFileSync(join(source, "locked.bin"), Buffer.alloc(250_000, 2));
    chmodSync(join(source, "locked.bin"), 0o600);
    writeFileSync(join(source, "fresh-secret.txt"), "new and unreadable\n");
    chmodSync(join(source, "fresh-secret.txt"), 0o600);
    // What nobody can read still changes as usual.
    rmSync(join(source, "docs", "b.txt"));
    writeFileSync(join(source, "docs", "new.txt"), "new and public\n");

    const second = await push(NOBODY);
    assert.equal(second.code, PARTIAL, second.stderr);
    const report = reportOf<PushReport>(second);
    assert.equal(report.outcome, "partial");
    assert.deepEqual(report.problems.map((p) => p.path).sort(), [
      "fresh-secret.txt",
      "locked.bin",
      "locked.txt",
      "private",
    ]);
    for (const problem of report.problems) assert.match(problem.reason, /permission denied \(EACCES/);
    assert.match(report.problems.find((p) => p.path === "private")!.reason, /scandir/);
    assert.deepEqual(report.vanished, []);
    assert.equal(report.files.deleted, 1, "docs/b.txt is deleted; nothing the job could not read is");

    const version = join(sourceDir(), "versions", report.version);
    assert.deepEqual(manifestPaths(version), [
      "a-link",
      "docs",
      "docs/a.txt",
      "docs/new.txt",
      "locked.bin",
      "locked.txt",
      "private",
      "private/secret.txt",
      "private/sub",
      "private/sub/deep.txt",
    ]);
    // The previous copies, as the first version holds them.
    const tree = join(version, "tree");
    const before = join(sourceDir(), "versions", firstVersion, "tree");
    assert.equal(readFileSync(join(tree, "locked.txt"), "utf8"), "locked, version one\n");
    assert.deepEqual(readFileSync(join(tree, "locked.bin")), Buffer.alloc(200_000, 1));
    assert.equal(readFileSync(join(tree, "private", "sub", "deep.txt"), "utf8"), "deep secret\n");
    assert.equal(statSync(join(tree, "locked.txt")).ino, statSync(join(before, "locked.txt")).ino);
    assert.equal(existsSync(join(tree, "fresh-secret.txt")), false);
    assert.equal(existsSync(join(tree, "private", "added-since.txt")), false);

    const job = JSON.parse(readFileSync(join(version, "job.json"), "utf8")) as Record<string, unknown>;
    assert.equal(job.outcome, "partial");
    assert.equal(job.unreadable, 4);
    assert.deepEqual(job.filtered, {});
    const firstJob = JSON.parse(
      readFileSync(join(sourceDir(), "versions", firstVersion, "job.json"), "utf8"),
    ) as Record<string, unknown>;
    assert.equal(firstJob.outcome, "succeeded");
  });

  it("a partial push again exits 3, and push --help documents the exit status", async () => {
    const result = await runOffsiteAs(NOBODY, ["push", source, "--to", to, "--certs", clientCerts]);
    assert.equal(result.code, PARTIAL, result.stderr);
    const help = await runOffsiteAs(NOBODY, ["push", "--help"]);
    assert.match(help.stdout, /3 when the job completed but some\s+entries could not be read \(partial\)/);
  });

  it("compare reports a directory it cannot list as a problem, not its contents as missing", async () => {
    // The files it cannot open differ in size from the version, which tells without
    // reading them: changed (or added), as the next push would find if it could read them.
    const result = await compare(NOBODY);
    assert.equal(result.code, 1, result.stderr);
    const report = reportOf<CompareReport>(result);
    assert.equal(report.match, false);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.added, ["fresh-secret.txt"]);
    assert.deepEqual(report.changed.sort(), ["locked.bin", "locked.txt"]);
    assert.deepEqual(
      report.problems.map((p) => p.path),
      ["private"],
    );
  });

  it("a push that can read everything again is complete (exit 0) and takes the new content", async () => {
    const result = await push();
    assert.equal(result.code, 0, result.stderr);
    const report = reportOf<PushReport>(result);
    assert.equal(report.outcome, "succeeded");
    const tree = join(sourceDir(), "versions", report.version, "tree");
    assert.equal(readFileSync(join(tree, "locked.txt"), "utf8"), "locked, version two (unreadable)\n");
    assert.equal(readFileSync(join(tree, "private", "added-since.txt"), "utf8"), "never seen\n");
    assert.equal(readFileSync(join(tree, "fresh-secret.txt"), "utf8"), "new and unreadable\n");
    const compared = await compare();
    assert.equal(compared.code, 0, compared.stdout);
  });

  it("compare as nobody of what root backed up: no difference in what it can read, exit 3", async () => {
    const result = await compare(NOBODY);
    assert.equal(result.code, PARTIAL, result.stdout);
    const report = reportOf<CompareReport>(result);
    assert.equal(report.match, false);
    assert.deepEqual([...report.added, ...report.changed, ...report.missing, ...report.extra], []);
    assert.deepEqual(
      report.problems.map((p) => p.path),
      ["private"],
    );
    assert.match(report.problems[0]!.reason, /permission denied \(EACCES, scandir\)/);

    // --checksum must read every file: the ones it cannot open are problems, not changes.
    const checksum = await runOffsiteAs(NOBODY, [
      "compare",
      source,
      "--to",
      to,
      "--certs",
      clientCerts,
      "--checksum",
      "--json",
    ]);
    assert.equal(checksum.code, PARTIAL, checksum.stdout);
    const hashed = reportOf<CompareReport>(checksum);
    assert.deepEqual(hashed.changed, []);
    assert.deepEqual(hashed.problems.map((p) => p.path).sort(), [
      "fresh-secret.txt",
      "locked.bin",
      "locked.txt",
      "private",
    ]);

    // A real difference beside the problems is still a difference: exit 1.
    writeFileSync(join(source, "docs", "a.txt"), "public a, changed\n");
    const differs = await compare(NOBODY);
    assert.equal(differs.code, 1, differs.stdout);
    assert.deepEqual(reportOf<CompareReport>(differs).changed, ["docs/a.txt"]);
  });
});

describe("entries that become unreadable while a push runs", () => {
  let work: string;
  let hooked: HookedReceiver;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-unlucky-"));
    hooked = await startHookedReceiver(work, SITE, SOURCE, "r");
  });

  after(async () => {
    await hooked?.receiver.close();
    // rm(1) walks with relative paths, so it removes the tree deeper than PATH_MAX too.
    spawnSync("rm", ["-rf", work]);
  });

  const job = (source: string) => ({
    source,
    endpoint: {
      host: "127.0.0.1",
      port: hooked.receiver.port,
      credentials: loadCredentials(hooked.clientDir),
    },
    site: SITE,
    sourceId: SOURCE,
    filters: NO_FILTERS,
  });

  it("a file swapped for a symlink or a FIFO after the scan is reported and its previous copy kept", async () => {
    const source = join(work, "swap");
    mkdirSync(source);
    writeFileSync(join(source, "outside.txt"), "must not be read through a link\n");
    writeFileSync(join(source, "small.txt"), "small, one\n");
    writeFileSync(join(source, "large.bin"), Buffer.alloc(300_000, 1));
    writeFileSync(join(source, "fifo.txt"), "fifo, one\n");
    const first = await pushJob(job(source));
    assert.equal(first.outcome, "succeeded");

    writeFileSync(join(source, "small.txt"), "small, two, longer\n");
    writeFileSync(join(source, "large.bin"), Buffer.alloc(310_000, 2));
    writeFileSync(join(source, "fifo.txt"), "fifo, two, longer\n");
    hooked.onSession = () => {
      for (const name of ["small.txt", "large.bin"]) {
        rmSync(join(source, name));
        symlinkSync(join(source, "outside.txt"), join(source, name));
      }
      rmSync(join(source, "fifo.txt"));
      assert.equal(spawnSync("mkfifo", [join(source, "fifo.txt")]).status, 0);
    };
    const second = await pushJob(job(source)).finally(() => (hooked.onSession = undefined));
    assert.equal(second.outcome, "partial");
    const problems = second.problems.sort(byPath);
    assert.deepEqual(
      problems.map((p) => p.path),
      ["fifo.txt", "large.bin", "small.txt"],
    );
    assert.match(problems[0]!.reason, /EFTYPE/);
    assert.match(problems[1]!.reason, /symbolic link.*ELOOP/);
    assert.match(problems[2]!.reason, /symbolic link.*ELOOP/);
    const tree = join(work, "r", SITE, SOURCE, "versions", second.version, "tree");
    assert.equal(readFileSync(join(tree, "small.txt"), "utf8"), "small, one\n");
    assert.equal(readFileSync(join(tree, "fifo.txt"), "utf8"), "fifo, one\n");
    assert.deepEqual(readFileSync(join(tree, "large.bin")), Buffer.alloc(300_000, 1));
  });

  it("a directory deeper than PATH_MAX is reported (ENAMETOOLONG) and the rest backed up", async () => {
    // The source's own path is longer than the receiver's staging path, so what the source
    // can list the receiver can store.
    const source = join(work, "s".repeat(200), "deep");
    mkdirSync(source, { recursive: true });
    writeFileSync(join(source, "top.txt"), "top\n");
    // Made one level at a time with relative paths: no single call sees a path over 4 KiB.
    const name = "d".repeat(250);
    const made = spawnSync(
      process.execPath,
      [
        "-e",
        `const fs = require("node:fs");
         for (let i = 0; i < 20; i++) { fs.mkdirSync(${JSON.stringify(name)}); process.chdir(${JSON.stringify(name)}); }
         fs.writeFileSync("f", "x");`,
      ],
      { cwd: source, encoding: "utf8" },
    );
    assert.equal(made.status, 0, made.stderr);
    const report = await pushJob(job(source));
    assert.equal(report.outcome, "partial");
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
    const [problem] = report.problems;
    assert.match(problem!.reason, /ENAMETOOLONG/);
    assert.ok(problem!.path.startsWith(`${name}/${name}/`));
    const paths = manifestPaths(join(work, "r", SITE, SOURCE, "versions", report.version));
    assert.ok(paths.includes("top.txt"));
    // The kernel refuses to look at the entry (lstat), so its parent is the deepest in the version.
    assert.ok(paths.includes(problem!.path.slice(0, problem!.path.lastIndexOf("/"))));
    assert.ok(!paths.includes(problem!.path));
    const compared = await compareJob({ ...job(source) });
    assert.deepEqual(compared.missing, []);
    assert.deepEqual(
      compared.problems.map((p) => p.path),
      [problem!.path],
    );
  });
});
