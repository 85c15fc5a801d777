/**
 * The pusher's cache of the receiver's entries (PROTOCOL.md, "Receiver state cache"): an
 * incremental push diffs against the cache when the receiver's digest confirms it, and a
 * cache that is deleted, stale, truncated, edited to claim a file the receiver lacks, a
 * link, a FIFO or unwritable costs a full exchange of entries and never a wrong backup.
 * Real processes over TLS; every backup is checked with `offsite compare`.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FrameType, frameTypeName } from "../../agent/protocol/frames.ts";
import { encodeJson, type Message, type MessageOf } from "../../agent/protocol/messages.ts";
import {
  makeStandaloneCerts,
  rawSession,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";
import { RECEIVER_STATE_CACHE_MAX_BYTES } from "../../agent/push/receiverStateCache.ts";
import { mixedChanges } from "./replicationSupport.ts";
import { inertRandomBytes } from "./testSupport.ts";

const SITE = "cache-site";
const SOURCE = "cache-source";

interface PushReport {
  version: string;
  files: { total: number; sent: number; unchanged: number };
  receiverState: { from: string; cache: string; problem?: string };
}

describe("the receiver state cache", () => {
  let work: string;
  let source: string;
  let cacheDir: string;
  let certs: string;
  let receiver: ReceiverProcess;
  const to = () => `127.0.0.1:${receiver.port}`;

  const push = async (cache = cacheDir): Promise<PushReport> => {
    const pushed = await runOffsite([
      "push",
      source,
      "--to",
      to(),
      "--certs",
      certs,
      "--cache",
      cache,
      "--json",
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);
    return reportOf<PushReport>(pushed);
  };
  /** The receiver's current version holds exactly the source (compare exits 0 on a match). */
  const assertBackedUp = async () => {
    const compared = await runOffsite(["compare", source, "--to", to(), "--certs", certs, "--json"]);
    assert.equal(
      compared.code,
      0,
      `the backup differs from the source:\n${compared.stdout}\n${compared.stderr}`,
    );
  };
  const cacheFile = () => {
    const files = readdirSync(cacheDir).filter((name) => name.endsWith(".entries"));
    assert.equal(files.length, 1, `one cache file in ${cacheDir}: ${files.join(", ")}`);
    return join(cacheDir, files[0]!);
  };
  /** Entries withheld by the receiver so far (its `committed` events say so). */
  const withheld = () =>
    receiver.events.filter((e) => e.event === "committed" && e.entriesWithheld === true).length;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-cache-"));
    source = join(work, "source");
    cacheDir = join(work, "cache");
    mkdirSync(join(source, "docs"), { recursive: true });
    for (let i = 0; i < 40; i++) writeFileSync(join(source, "docs", `page-${i}.txt`), `page ${i}\n`);
    writeFileSync(join(source, "large.bin"), inertRandomBytes(400 * 1024));
    linkSync(join(source, "docs", "page-1.txt"), join(source, "page-1-again.txt"));
    symlinkSync("docs/page-2.txt", join(source, "latest"));
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    certs = made.client;
    receiver = await startReceiverProcess(join(work, "root"), made.receiver);
  });

  after(async () => {
    await receiver?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("is written by the first push and used by the next, which downloads no entries", async () => {
    const first = await push();
    assert.deepEqual(first.receiverState, { from: "receiver", cache: "saved" });
    assert.match(readFileSync(cacheFile(), "utf8").split("\n")[0]!, new RegExp(`"base":"${first.version}"`));
    writeFileSync(join(source, "docs", "page-3.txt"), "page 3, edited\n");
    const before = withheld();
    const second = await push();
    assert.deepEqual(second.receiverState, { from: "cache", cache: "saved" });
    assert.equal(second.files.sent, 1);
    assert.equal(withheld(), before + 1);
    await assertBackedUp();
  });

  it("is asked for only where the receiver withheld its entries, once (EntriesWanted)", async () => {
    const current = basename(readlinkSync(join(work, "root", SITE, SOURCE, "current")));
    const hello = (versions: number[], version?: string) =>
      encodeJson(FrameType.Hello, {
        versions,
        role: "push",
        site: SITE,
        source: SOURCE,
        ...(version ? { version } : {}),
        client: "test",
      });
    const wanted = encodeJson(FrameType.EntriesWanted, {});
    const refusal = (messages: Message[]) => {
      const error = messages.find((m) => m.type === FrameType.Error);
      return error ? `${error.code}: ${error.message}` : "";
    };
    const types = (messages: Message[]) => messages.map((m) => frameTypeName(m.type));
    // Withheld: asked once, the entries come; asked again, refused.
    const twice = await rawSession(receiver.port, certs, [hello([3], current), wanted, wanted]);
    const welcome = twice[0] as MessageOf<typeof FrameType.Welcome>;
    assert.match(welcome.digest ?? "", /^[0-9a-f]{64}$/);
    assert.deepEqual(types(twice).slice(1, 2), ["Entries"]);
    assert.match(refusal(twice), /^unexpected-frame: /);
    // Not withheld (no cached version named, or a version 2 session): refused at once.
    for (const opening of [hello([3]), hello([2], current)]) {
      const answers = await rawSession(receiver.port, certs, [opening, wanted]);
      assert.equal((answers[0] as MessageOf<typeof FrameType.Welcome>).digest, undefined);
      assert.match(refusal(answers), /^unexpected-frame: /);
    }
    // None of them committed anything.
    assert.equal(basename(readlinkSync(join(work, "root", SITE, SOURCE, "current"))), current);
  });

  it("is not needed: deleted, the next push downloads the entries and writes it again", async () => {
    rmSync(cacheFile());
    writeFileSync(join(source, "docs", "page-4.txt"), "page 4, edited\n");
    const report = await push();
    assert.deepEqual(report.receiverState, { from: "receiver", cache: "saved" });
    await assertBackedUp();
  });

  it("that is stale (another client pushed meanwhile) is not used", async () => {
    writeFileSync(join(source, "docs", "page-6.txt"), "page 6, pushed without the cache\n");
    assert.deepEqual((await push("none")).receiverState, { from: "receiver", cache: "off" });
    writeFileSync(join(source, "docs", "page-7.txt"), "page 7, edited\n");
    const report = await push();
    assert.deepEqual(report.receiverState, { from: "stale", cache: "saved" });
    assert.equal(report.files.sent, 1);
    await assertBackedUp();
  });

  it("that is truncated is not used", async () => {
    const file = cacheFile();
    const header = readFileSync(file, "utf8").indexOf("\n") + 1;
    truncateSync(file, header + Math.floor((statSync(file).size - header) / 2));
    writeFileSync(join(source, "docs", "page-8.txt"), "page 8, edited\n");
    const report = await push();
    assert.deepEqual(report.receiverState, { from: "mismatch", cache: "saved" });
    await assertBackedUp();
  });

  it("edited to claim a file the receiver lacks costs a full exchange, and the file is backed up", async () => {
    // A new file whose size, mtime and mode the cache claims the receiver has: trusted, the
    // push would find it unchanged and never send it.
    const claimed = join(source, "docs", "claimed.txt");
    writeFileSync(claimed, "the receiver has never seen this\n");
    const stat = statSync(claimed);
    const file = cacheFile();
    const line = JSON.stringify({
      type: "file",
      path: "docs/claimed.txt",
      size: stat.size,
      mtime: Math.floor(stat.mtimeMs),
      mode: stat.mode & 0o7777,
      sha256: "0".repeat(64),
    });
    writeFileSync(file, readFileSync(file, "utf8") + line + "\n");
    const report = await push();
    assert.equal(report.receiverState.from, "mismatch");
    assert.equal(report.files.sent, 1);
    await assertBackedUp();
  });

  it("naming an older version of the receiver is not used", async () => {
    const file = cacheFile();
    const [header, ...body] = readFileSync(file, "utf8").split("\n");
    const older = readdirSync(join(work, "root", SITE, SOURCE, "versions")).sort()[0]!;
    writeFileSync(file, [header!.replace(/"base":"[^"]+"/, `"base":"${older}"`), ...body].join("\n"));
    writeFileSync(join(source, "docs", "page-9.txt"), "page 9, edited\n");
    assert.equal((await push()).receiverState.from, "stale");
    await assertBackedUp();
  });

  it("that is a symlink or a FIFO is not read, and is replaced by a file", async () => {
    const file = cacheFile();
    const elsewhere = join(work, "planted.entries");
    copyFileSync(file, elsewhere);
    const plantedBytes = readFileSync(elsewhere);
    rmSync(file);
    symlinkSync(elsewhere, file);
    writeFileSync(join(source, "docs", "page-10.txt"), "page 10, edited\n");
    assert.deepEqual((await push()).receiverState, { from: "receiver", cache: "saved" });
    // Replaced by a file of its own; the file the link pointed to is untouched.
    assert.ok(lstatSync(file).isFile());
    assert.deepEqual(readFileSync(elsewhere), plantedBytes);
    rmSync(file);
    execFileSync("mkfifo", [file]);
    writeFileSync(join(source, "docs", "page-11.txt"), "page 11, edited\n");
    assert.deepEqual((await push()).receiverState, { from: "receiver", cache: "saved" });
    await assertBackedUp();
  });

  it("larger than any cache this agent writes is not read, and others past the directory's budget go", async () => {
    const file = cacheFile();
    // Sparse: hundreds of MiB by their size, nothing on the disk.
    truncateSync(file, RECEIVER_STATE_CACHE_MAX_BYTES + 1024 * 1024);
    const others = [0, 1].map((i) => join(cacheDir, `${String(i).repeat(64)}.entries`));
    for (const [i, other] of others.entries()) {
      writeFileSync(other, "");
      truncateSync(other, 300 * 1024 * 1024);
      utimesSync(other, 1_000 + i, 1_000 + i);
    }
    writeFileSync(join(source, "docs", "page-13.txt"), "page 13, edited\n");
    assert.deepEqual((await push()).receiverState, { from: "receiver", cache: "saved" });
    // 600 MiB of others and the new cache: the oldest went, the budget (512 MiB) holds.
    assert.ok(!existsSync(others[0]!), "the least recently written cache went");
    assert.ok(existsSync(others[1]!));
    rmSync(others[1]!);
    await assertBackedUp();
  });

  it("in a directory it cannot write leaves the job whole and says why", async () => {
    const blocked = join(work, "not-a-directory");
    writeFileSync(blocked, "a file where the cache directory should be\n");
    writeFileSync(join(source, "docs", "page-12.txt"), "page 12, edited\n");
    const report = await push(blocked);
    assert.equal(report.receiverState.cache, "off");
    assert.match(
      report.receiverState.problem ?? "",
      /cannot write the receiver state cache in .*not-a-directory/,
    );
    chmodSync(blocked, 0o644);
    await assertBackedUp();
  });

  // Last: the random changes rename and delete what the tests above edit.
  it("stays exact through creations, edits, renames, deletions, mode changes and new hard links", async () => {
    for (let round = 0; round < 5; round++) {
      await mixedChanges(source, 25, 700 + round);
      writeFileSync(join(source, "large.bin"), inertRandomBytes(300 * 1024 + round * 70_000));
      mkdirSync(join(source, "linked"), { recursive: true });
      writeFileSync(join(source, "linked", `original-${round}.txt`), `linked ${round}\n`);
      linkSync(join(source, "linked", `original-${round}.txt`), join(source, `linked-again-${round}.txt`));
      if (round === 2) rmSync(join(source, "latest"));
      if (round === 3) symlinkSync("large.bin", join(source, "latest"));
      const report = await push();
      // Only a prediction that hashes to the receiver's digest is saved: "dropped" here
      // would mean the pusher's idea of the new version went wrong. (The first round's
      // cache is stale: the test before pushed without writing it.)
      assert.deepEqual(
        report.receiverState,
        { from: round === 0 ? "stale" : "cache", cache: "saved" },
        `round ${round}`,
      );
      await assertBackedUp();
    }
  });
});
