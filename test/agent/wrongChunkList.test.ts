/**
 * HashedData (version 3) puts the pusher's chunk hashes into the receiver's chunk list
 * unchecked (the whole file is checked at End). A pusher that sent wrong ones (a bug)
 * leaves a list whose Copy frames the receiver then refuses as copy-mismatch, and every
 * later push of that file would fail the same way. The pusher instead runs the job again
 * with that file sent without Copy frames, which writes a right list. Real processes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { chunksOf } from "../../agent/chunking/fileChunks.ts";
import { encodeFrame, FrameType } from "../../agent/protocol/frames.ts";
import { encodeJson } from "../../agent/protocol/messages.ts";
import { pushHello, rawSession, reportOf, runOffsite, standaloneReceiverSuite } from "./agentProcesses.ts";
import { inertRandomBytes, sha256Hex } from "./testSupport.ts";

const SITE = "chunks-site";
const SOURCE = "chunks-source";

describe("a receiver's chunk list made wrong by a pusher's HashedData", () => {
  const suite = standaloneReceiverSuite("chunk-list", SITE, SOURCE);

  it("costs the file's next push a resend without Copy frames, and then is right", async () => {
    const { work, certs, receiver } = suite;
    const tree = join(work, "tree");
    mkdirSync(tree);
    const file = join(tree, "big.bin");
    writeFileSync(file, inertRandomBytes(400 * 1024));
    const content = readFileSync(file);
    // A buggy pusher: the right bytes and whole-file hash, the first two chunk hashes swapped.
    const chunks = [...chunksOf(file)].map(({ bytes }) => Buffer.from(bytes));
    const hashes = chunks.map((bytes) => createHash("sha256").update(bytes).digest());
    [hashes[0], hashes[1]] = [hashes[1]!, hashes[0]!];
    const frames = [
      pushHello(SITE, SOURCE),
      encodeJson(FrameType.Begin, { path: "big.bin", mtime: 1_000, mode: 0o644 }),
      ...chunks.map((bytes, i) => encodeFrame(FrameType.HashedData, Buffer.concat([hashes[i]!, bytes]))),
      encodeJson(FrameType.End, { size: content.length, sha256: sha256Hex(content) }),
      encodeJson(FrameType.Commit, { files: 1, bytes: content.length, filtered: {} }),
    ];
    const answers = await rawSession(receiver.port, certs.client, frames, 10_000, 3_000);
    assert.ok(
      answers.some((m) => m.type === FrameType.Committed),
      "the buggy push committed",
    );

    const push = async () => {
      const pushed = await runOffsite([
        "push",
        tree,
        "--to",
        `127.0.0.1:${receiver.port}`,
        "--certs",
        certs.client,
        "--json",
      ]);
      assert.equal(pushed.code, 0, pushed.stderr);
      return reportOf<{ resentWhole: string[]; bytes: { content: number } }>(pushed);
    };
    // Only the mtime changed: the pusher copies every chunk, and the swapped ones do not match.
    utimesSync(file, 2, 2);
    const first = await push();
    assert.deepEqual(first.resentWhole, ["big.bin"]);
    assert.ok(first.bytes.content >= content.length, "sent whole");
    const compared = await runOffsite([
      "compare",
      tree,
      "--to",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      certs.client,
      "--json",
    ]);
    assert.equal(compared.code, 0, compared.stdout);
    // The list is right now: the next touch copies everything.
    utimesSync(file, 3, 3);
    const second = await push();
    assert.deepEqual(second.resentWhole, []);
    assert.equal(second.bytes.content, 0);
  });
});
