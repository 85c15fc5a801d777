/**
 * A fuzz of push streams against a receiver: random sequences of every frame a pusher
 * sends (Directory, File and BinaryFile, Symlink, Delete, Link, HardLink, Begin with Data or
 * HashedData, Zeros, Copy and Abandon, End, Commit), over names drawn from a pool of byte names (escaped Latin-1, 0xff) and
 * hostile ones (`..`, absolute, a surrogate that stands for no byte, escaped UTF-8), with
 * right and wrong hashes. After every session, whatever the receiver answered: nothing
 * outside its root changed, its store holds no symlink, and the current version's
 * manifest and tree agree entry for entry, by their bytes. At the end a real push and
 * restore still work. OFFSITE_FUZZ_DEBUG=1 prints why each tidy round was refused.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  readlinkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { byteNameProblem, fsPath, nameFromBytes } from "../../agent/protocol/byteNames.ts";
import { encodeFrame, FrameType } from "../../agent/protocol/frames.ts";
import {
  binaryFilePayload,
  encodeCopy,
  encodeFile,
  encodeJson,
  encodeZeros,
  PROTOCOL_VERSIONS,
} from "../../agent/protocol/messages.ts";
import { comparePaths, parentsOf } from "../../agent/protocol/paths.ts";
import { readManifest } from "../../agent/receiver/manifestFile.ts";
import { rawSession, reportOf, runOffsite } from "./agentProcesses.ts";
import { startHookedReceiver, type HookedReceiver } from "./hookedReceiver.ts";
import { prng, sha256Hex } from "./testSupport.ts";

const SITE = "fuzz-site";
const SOURCE = "fuzz-source";
const ROUNDS = 240;

/** Every entry under `dir` by name (bytes in the agent's form), never through a link. */
function walk(dir: string, prefix = ""): { path: string; type: "dir" | "file" | "symlink" | "other" }[] {
  const out: { path: string; type: "dir" | "file" | "symlink" | "other" }[] = [];
  const at = prefix ? join(dir, prefix) : dir;
  let names: Buffer[];
  try {
    names = readdirSync(fsPath(at), { encoding: "buffer" });
  } catch (error) {
    // Pruned versions are deleted in the background (trash/): a directory may go meanwhile.
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && prefix) return out;
    throw error;
  }
  for (const raw of names) {
    const name = nameFromBytes(raw);
    const path = prefix ? `${prefix}/${name}` : name;
    const stat = lstatSync(fsPath(join(dir, path)), { throwIfNoEntry: false });
    if (!stat) continue;
    const type = stat.isDirectory()
      ? "dir"
      : stat.isFile()
        ? "file"
        : stat.isSymbolicLink()
          ? "symlink"
          : "other";
    out.push({ path, type });
    if (type === "dir") out.push(...walk(dir, path));
  }
  return out;
}

function fingerprint(dir: string): string {
  const hash = createHash("sha256");
  for (const { path, type } of walk(dir).sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const stat = lstatSync(fsPath(join(dir, path)), { throwIfNoEntry: false });
    if (!stat) continue;
    hash.update(`${path} ${type} ${stat.mode} ${stat.mtimeMs}\n`);
    if (type === "file") hash.update(readFileSync(fsPath(join(dir, path))));
  }
  return hash.digest("hex");
}

describe("a receiver fuzzed with random push streams", () => {
  let work: string;
  let hooked: HookedReceiver;
  let outsideBefore: string;
  const outside = () => join(work, "outside");
  const root = () => join(work, "root");

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-fuzz-"));
    mkdirSync(join(work, "outside", "y"), { recursive: true });
    writeFileSync(join(work, "outside", "secret.txt"), "outside the root");
    hooked = await startHookedReceiver(work, SITE, SOURCE);
    outsideBefore = fingerprint(outside());
  });

  after(async () => {
    await hooked?.receiver.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** One session: Hello, the frames, Commit; resolves when the receiver closes it. */
  const session = async (frames: Buffer[]) => {
    const hello = {
      versions: [...PROTOCOL_VERSIONS],
      role: "push" as const,
      site: SITE,
      source: SOURCE,
      client: "fuzz",
    };
    const answers = await rawSession(hooked.receiver.port, hooked.clientDir, [
      encodeJson(FrameType.Hello, hello),
      ...frames,
    ]);
    const error = answers.find((m) => m.type === FrameType.Error);
    return error ? `${error.code}: ${error.message}` : undefined;
  };

  /** The current version's manifest and tree agree, and the store holds no link. */
  const storeIsConsistent = (round: number) => {
    // The one link of a store is its own `current` (layout.ts).
    for (const { path, type } of walk(root()))
      if (path !== `${SITE}/${SOURCE}/current`)
        assert.notEqual(type, "symlink", `round ${round}: a symlink in the store at ${path}`);
    const current = join(root(), SITE, SOURCE, "current");
    let manifest;
    try {
      manifest = readManifest(join(current, "manifest.jsonl"));
    } catch {
      return; // no version yet
    }
    const onDisk = new Map(walk(join(current, "tree")).map((e) => [e.path, e.type]));
    const listed = manifest.filter((e) => e.type !== "symlink");
    for (const entry of listed)
      assert.equal(
        onDisk.get(entry.path),
        entry.type,
        `round ${round}: ${JSON.stringify(entry.path)} on disk`,
      );
    assert.equal(onDisk.size, listed.length, `round ${round}: the tree holds only the manifest's entries`);
  };

  it("never writes outside its root, never stores a link, never commits a tree its manifest does not describe", async () => {
    const random = prng(2026);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const names = ["a", "b", "a/b", "a/b/c", "a/\udce9", "\udcff", "\udcff/x", "q", "q/y"];
    const hostile = ["../outside/x", "/tmp/x", "a/../b", "\ud800", "caf\udcc3\udca9", "a//b", ""];
    const targets = ["../outside", join(work, "outside"), "\udce9", "a/b", "\udfff"];
    // Half the rounds are tidy (no hostile names, parents sent first), so many commit.
    let tidy = false;
    const anyName = () => (!tidy && random() < 0.12 ? pick(hostile) : pick(names));
    let commits = 0;
    let committed = 0;
    const currentVersion = () => {
      try {
        return readlinkSync(join(root(), SITE, SOURCE, "current"));
      } catch {
        return undefined;
      }
    };
    for (let round = 0; round < ROUNDS; round++) {
      const frames: Buffer[] = [];
      tidy = random() < 0.5;
      const filesThisRound: string[] = [];
      for (let i = 0, n = 1 + Math.floor(random() * 10); i < n; i++) {
        const path = anyName();
        // Tidy rounds send only what a correct pusher may: no Delete or Link of unknowns,
        // no bad hash, hard links to an earlier file of the round.
        const kind = tidy ? pick([0.1, 0.3, 0.5, 0.75, 0.9]) : random();
        const earlier = filesThisRound.filter((f) => comparePaths(f, path) < 0);
        if (tidy && kind === 0.75 && earlier.length === 0) continue;
        if (tidy && kind >= 0.25)
          for (const parent of parentsOf(path))
            frames.push(encodeJson(FrameType.Directory, { path: parent, mtime: 0, mode: 0o755 }));
        if (kind < 0.25) frames.push(encodeJson(FrameType.Directory, { path, mtime: 0, mode: 0o755 }));
        else if (kind < 0.45) {
          const bytes = Buffer.from(`round ${round} ${i}`);
          const sha256 = tidy || random() < 0.9 ? sha256Hex(bytes) : "0".repeat(64);
          const header = { path, size: bytes.length, mtime: 0, mode: 0o644, sha256 };
          // Version 3 sends small files as BinaryFile: half of them go that way (those whose
          // name is bytes at all: a lone U+D800 stands for none, and goes in JSON).
          frames.push(
            random() < 0.5 || byteNameProblem(path) !== undefined
              ? encodeFile(header, bytes)
              : encodeFrame(FrameType.BinaryFile, Buffer.concat(binaryFilePayload(header, bytes))),
          );
          filesThisRound.push(path);
        } else if (kind < 0.55)
          frames.push(
            encodeJson(FrameType.Symlink, {
              path,
              mtime: 0,
              target: tidy ? pick(targets.slice(0, 4)) : pick(targets),
            }),
          );
        else if (kind < 0.65) frames.push(encodeJson(FrameType.Delete, { path }));
        else if (kind < 0.72) {
          const bytes = Buffer.from(`round ${round} ${i}`);
          frames.push(
            encodeJson(FrameType.Link, {
              path,
              from: anyName(),
              mtime: 0,
              mode: 0o644,
              sha256: sha256Hex(bytes),
            }),
          );
        } else if (kind < 0.8)
          frames.push(encodeJson(FrameType.HardLink, { path, to: tidy ? pick(earlier) : anyName() }));
        else {
          const data = Buffer.from(`large ${round}`);
          const zeros = Buffer.alloc(4096);
          const whole = Buffer.concat([data, zeros]);
          frames.push(encodeJson(FrameType.Begin, { path, mtime: 0, mode: 0o644 }));
          // Version 3's HashedData carries the chunk's hash, which untidy rounds get wrong: End
          // still checks the whole file.
          const chunkHash = Buffer.from(tidy || random() < 0.5 ? sha256Hex(data) : "3".repeat(64), "hex");
          frames.push(
            random() < 0.5
              ? encodeFrame(FrameType.Data, data)
              : encodeFrame(FrameType.HashedData, Buffer.concat([chunkHash, data])),
            encodeZeros(zeros.length),
          );
          if (!tidy && random() < 0.2) frames.push(encodeCopy(0, 10, "1".repeat(64)));
          if (!tidy && random() < 0.15) frames.push(encodeJson(FrameType.Abandon, { reason: "fuzz" }));
          const sha256 = tidy || random() < 0.85 ? sha256Hex(whole) : "2".repeat(64);
          frames.push(encodeJson(FrameType.End, { size: whole.length, sha256 }));
          filesThisRound.push(path);
        }
      }
      if (random() < 0.8) frames.push(encodeJson(FrameType.Commit, { files: 0, bytes: 0, filtered: {} }));
      const versionsBefore = commits;
      const currentBefore = currentVersion();
      const refused = await session(frames);
      if (tidy && refused && process.env.OFFSITE_FUZZ_DEBUG)
        process.stderr.write(`tidy round ${round}: ${refused}\n`);
      if (currentVersion() !== currentBefore) committed++;
      const versions = join(root(), SITE, SOURCE, "versions");
      commits = existsSync(versions) ? readdirSync(versions).length : 0;
      assert.equal(fingerprint(outside()), outsideBefore, `round ${round} changed the outside`);
      storeIsConsistent(round);
      assert.ok(commits >= Math.min(versionsBefore, 7), "retention keeps versions");
    }
    const entries = readManifest(join(root(), SITE, SOURCE, "current", "manifest.jsonl"));
    process.stderr.write(
      `[receiverFuzz] ${ROUNDS} sessions, ${committed} committed; the last version: ${entries.length} entries, ` +
        `${entries.filter((e) => /[\udc80-\udcff]/u.test(e.path)).length} with byte names, ` +
        `${entries.filter((e) => e.type === "file" && e.hardLink !== undefined).length} hard links\n`,
    );
    assert.ok(committed >= 5, `some random streams commit a version (${committed})`);

    // The receiver still serves a real pusher, and what it stores restores.
    const source = join(work, "source");
    mkdirSync(join(source, "d"), { recursive: true });
    writeFileSync(join(source, "d", "after-the-fuzz.txt"), "still fine\n");
    const to = `127.0.0.1:${hooked.receiver.port}`;
    const pushed = await runOffsite(["push", source, "--to", to, "--certs", hooked.clientDir, "--json"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal(reportOf<{ outcome: string }>(pushed).outcome, "succeeded");
    const restored = join(work, "restored");
    const back = await runOffsite(["restore", "--from", to, "--certs", hooked.clientDir, "--json", restored]);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(readFileSync(join(restored, "d", "after-the-fuzz.txt"), "utf8"), "still fine\n");
    storeIsConsistent(ROUNDS);
  });
});
