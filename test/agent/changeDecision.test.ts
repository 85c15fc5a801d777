/**
 * push and compare decide "what changed" by one rule (agent/source/whatChanged.ts), so
 * they agree, as real processes over TLS: after a chmod, a touch or a change of type,
 * `offsite compare` reports a difference exactly at the paths where the next `offsite
 * push` records a change in the new version's manifest, and after that push compare
 * matches. Without --checksum both trust size and mtime; with it both let the hash decide.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";

interface PushReport {
  version: string;
  files: { total: number; unchanged: number; sent: number; linked: number; deleted: number };
  bytes: { content: number };
}
interface CompareReport {
  match: boolean;
  added: string[];
  changed: string[];
  metadata: { path: string; aspects: string[] }[];
  missing: string[];
  extra: string[];
}

const SITE = "3e1f0c2a-9b8d-4c7e-a6f5-1d2c3b4a5e6f";
const SOURCE = "c4d5e6f7-0a1b-4c2d-8e3f-9a0b1c2d3e4f";
/** A fixed past time, in seconds, for touches that must not depend on the clock. */
const PAST = 1_700_000_000;

describe("push and compare agree on what changed", () => {
  let work: string;
  let source: string;
  let root: string;
  let receiver: ReceiverProcess;
  let clientCerts: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-change-"));
    source = join(work, "source");
    root = join(work, "root");
    const made = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    clientCerts = made.client;
    receiver = await startReceiverProcess(root, made.receiver);

    mkdirSync(join(source, "sub"), { recursive: true });
    writeFileSync(join(source, "small.txt"), "small and unchanging\n");
    writeFileSync(join(source, "big.bin"), randomBytes(300_000));
    writeFileSync(join(source, "sub", "inner.txt"), "inside\n");
    symlinkSync("small.txt", join(source, "link"));
    // Paths that will change type, and nothing else.
    writeFileSync(join(source, "to-symlink"), "a file that becomes a symlink\n");
    writeFileSync(join(source, "to-dir"), "a file that becomes a directory\n");
    mkdirSync(join(source, "to-file"));
    symlinkSync("small.txt", join(source, "symlink-to-file"));
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const client = (role: string, ...extra: string[]) =>
    runOffsite([
      role,
      source,
      "--to",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      clientCerts,
      "--json",
      ...extra,
    ]);
  const push = async (...extra: string[]) => {
    const result = await client("push", ...extra);
    assert.equal(result.code, 0, result.stderr);
    return reportOf<PushReport>(result);
  };
  const compare = async (...extra: string[]) => {
    const result = await client("compare", ...extra);
    assert.ok(result.code === 0 || result.code === 1, result.stderr);
    return { code: result.code, report: reportOf<CompareReport>(result) };
  };
  const sourceDir = () => join(root, SITE, SOURCE);
  /** The current version's manifest entries by path. */
  const currentManifest = (): Map<string, object> =>
    new Map(
      readFileSync(join(sourceDir(), "current", "manifest.jsonl"), "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { path: string })
        .map((entry) => [entry.path, entry]),
    );
  /**
   * Paths whose manifest entry differs between two versions (added, removed or changed),
   * as values: the order of the keys in an entry's line is no change.
   */
  const manifestChanges = (before: Map<string, object>, after: Map<string, object>) =>
    [...new Set([...before.keys(), ...after.keys()])]
      .filter((path) => !isDeepStrictEqual(before.get(path), after.get(path)))
      .sort();
  const differingPaths = (report: CompareReport) =>
    [
      ...report.added,
      ...report.changed,
      ...report.metadata.map((m) => m.path),
      ...report.missing,
      ...report.extra,
    ].sort();

  /**
   * Compares, pushes, and checks that the push recorded a change at exactly the paths the
   * compare reported (none when it matched), then that a compare matches afterwards.
   */
  const compareThenPush = async (checksum: boolean) => {
    const flags = checksum ? ["--checksum"] : [];
    const compared = await compare(...flags);
    const before = currentManifest();
    const pushed = await push(...flags);
    const recorded = manifestChanges(before, currentManifest());
    assert.deepEqual(differingPaths(compared.report), recorded, JSON.stringify(compared.report));
    assert.equal(compared.code, recorded.length === 0 ? 0 : 1);
    assert.equal(compared.report.match, recorded.length === 0);
    const again = await compare(...flags);
    assert.equal(again.code, 0, JSON.stringify(again.report));
    return { compared: compared.report, pushed };
  };

  it("after the first push, neither sees a change, with or without --checksum", async () => {
    await push();
    for (const checksum of [false, true]) {
      const { compared, pushed } = await compareThenPush(checksum);
      assert.equal(compared.match, true);
      assert.equal(pushed.files.unchanged, pushed.files.total);
    }
  });

  it("chmod only: both see a metadata change of the files and the directory, and no byte travels", async () => {
    chmodSync(join(source, "small.txt"), 0o600);
    chmodSync(join(source, "big.bin"), 0o600);
    chmodSync(join(source, "sub"), 0o700);
    const { compared, pushed } = await compareThenPush(false);
    assert.deepEqual(compared.changed, []);
    assert.deepEqual(compared.metadata, [
      { path: "big.bin", aspects: ["mode"] },
      { path: "small.txt", aspects: ["mode"] },
      { path: "sub", aspects: ["mode"] },
    ]);
    assert.equal(pushed.files.linked, 2, "a chmod travels as a Link to the file's own bytes");
    assert.equal(pushed.bytes.content, 0);
  });

  it("mtime only: both see a metadata change of files, a directory and a symlink", async () => {
    utimesSync(join(source, "small.txt"), PAST, PAST);
    utimesSync(join(source, "big.bin"), PAST, PAST);
    utimesSync(join(source, "sub"), PAST, PAST);
    lutimesSync(join(source, "link"), PAST, PAST);
    const { compared, pushed } = await compareThenPush(false);
    assert.deepEqual(compared.changed, []);
    assert.deepEqual(compared.metadata, [
      { path: "big.bin", aspects: ["mtime"] },
      { path: "link", aspects: ["mtime"] },
      { path: "small.txt", aspects: ["mtime"] },
      { path: "sub", aspects: ["mtime"] },
    ]);
    assert.equal(pushed.bytes.content, 0, "the content is the same: no data travels");
  });

  it("type only: file → symlink, file → directory, directory → file, symlink → file", async () => {
    rmSync(join(source, "to-symlink"));
    symlinkSync("small.txt", join(source, "to-symlink"));
    rmSync(join(source, "to-dir"));
    mkdirSync(join(source, "to-dir"));
    rmSync(join(source, "to-file"), { recursive: true });
    writeFileSync(join(source, "to-file"), "a directory that became a file\n");
    rmSync(join(source, "symlink-to-file"));
    writeFileSync(join(source, "symlink-to-file"), "a symlink that became a file\n");
    const { compared } = await compareThenPush(false);
    assert.deepEqual(compared.changed, ["symlink-to-file", "to-dir", "to-file", "to-symlink"]);
    assert.deepEqual(compared.added, []);
    assert.deepEqual(compared.metadata, []);
  });

  it("the same size and mtime hide an edit from both without --checksum; with it, both see it", async () => {
    const edit = (path: string, at: number) => {
      const file = join(source, path);
      const { mtime } = statSync(file);
      const bytes = readFileSync(file);
      bytes[at] = bytes[at]! ^ 0xff;
      writeFileSync(file, bytes);
      utimesSync(file, mtime, mtime);
    };
    edit("small.txt", 0);
    edit("big.bin", 150_000);
    const quick = await compareThenPush(false);
    assert.equal(quick.compared.match, true, "size and mtime are trusted without --checksum");
    const hashed = await compareThenPush(true);
    assert.deepEqual(hashed.compared.changed, ["big.bin", "small.txt"]);
    assert.equal(hashed.pushed.files.sent, 2);
    assert.ok(hashed.pushed.bytes.content < 100_000, "the large file sends only its changed chunk");
  });
});
