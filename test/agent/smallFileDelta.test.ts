/**
 * The small-file delta (PROTOCOL.md, "Small-file delta", version 3), with real processes
 * over TLS: an incremental of small files with small edits sends about the edited bytes
 * (rsync's promise for every file), the backup is exact, and a receiver refuses every
 * patch that does not fit its base: one naming a file it lacks, blocks past the file's
 * end, a result that hashes to something else, and the frames in a version 2 session.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { encodePatch } from "../../agent/protocol/deltaFrames.ts";
import { FrameType } from "../../agent/protocol/frames.ts";
import { encodeJson, type Message, type MessageOf } from "../../agent/protocol/messages.ts";
import {
  makeStandaloneCerts,
  pushHello,
  rawSession,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";
import { inertRandomBytes, prng, sha256Hex, treeSnapshot } from "./testSupport.ts";

const SITE = "delta-site";
const SOURCE = "delta-source";

interface PushReport {
  files: { sent: number; patched: number };
  bytes: { content: number; wire: number };
}

describe("the small-file delta", () => {
  let work: string;
  let tree: string;
  let certs: { receiver: string; client: string };
  let receiver: ReceiverProcess;
  const to = () => `127.0.0.1:${receiver.port}`;
  const push = async () => {
    const pushed = await runOffsite(["push", tree, "--to", to(), "--certs", certs.client, "--json"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    return reportOf<PushReport>(pushed);
  };
  const refusal = (messages: Message[]) => {
    const error = messages.find((m) => m.type === FrameType.Error);
    return error ? `${error.code}: ${error.message}` : "";
  };
  const hello = (versions: number[]) => pushHello(SITE, SOURCE, versions);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-delta-"));
    tree = join(work, "tree");
    mkdirSync(join(tree, "pages"), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(tree, "pages", `p${i}.html`), inertRandomBytes(10_000));
    certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    receiver = await startReceiverProcess(join(work, "root"), certs.receiver);
    assert.equal((await push()).files.sent, 50);
  });

  after(async () => {
    await receiver?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("sends about the edited bytes of edited, grown and shortened small files, and stores them exactly", async () => {
    const random = prng(15);
    const file = (i: number) => join(tree, "pages", `p${i}.html`);
    let changed = 0;
    for (let i = 0; i < 20; i++) {
      const bytes = readFileSync(file(i));
      randomBytes(512).copy(bytes, Math.floor(random() * (bytes.length - 512)));
      writeFileSync(file(i), bytes);
      changed += 512;
    }
    for (let i = 20; i < 25; i++) {
      writeFileSync(
        file(i),
        Buffer.concat([Buffer.from("<!-- a new first line -->\n"), readFileSync(file(i))]),
      );
      changed += 26;
    }
    for (let i = 25; i < 30; i++) writeFileSync(file(i), readFileSync(file(i)).subarray(0, 5_000));
    const report = await push();
    assert.equal(report.files.sent, 30);
    assert.equal(report.files.patched, 30);
    // The edits, and at most a 64-byte block on either side of each.
    assert.ok(
      report.bytes.content <= changed + 25 * 2 * 64,
      `${report.bytes.content} bytes for ${changed} changed`,
    );
    const compared = await runOffsite(["compare", tree, "--to", to(), "--certs", certs.client, "--json"]);
    assert.equal(compared.code, 0, compared.stdout);
    const restored = join(work, "restored");
    const back = await runOffsite(["restore", "--from", to(), "--certs", certs.client, "--json", restored]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(treeSnapshot(restored), treeSnapshot(tree));
  });

  it("answers a request for a file it lacks with no signature, and refuses patches that do not fit", async () => {
    const request = encodeJson(FrameType.SignatureRequest, { paths: ["pages/p40.html", "pages/none.html"] });
    const answers = await rawSession(receiver.port, certs.client, [hello([3]), request], 10_000, 500);
    const signatures = answers.filter(
      (m): m is MessageOf<typeof FrameType.Signatures> => m.type === FrameType.Signatures,
    );
    assert.deepEqual(
      signatures.map((s) => [s.path, s.signature?.blockSize]),
      [
        ["pages/p40.html", 64],
        ["pages/none.html", undefined],
      ],
    );
    const content = Buffer.from("patched\n");
    const header = (path: string, sha256 = sha256Hex(content)) => ({
      path,
      size: content.length,
      mtime: 1,
      mode: 0o644,
      sha256,
    });
    const cases: [Buffer, RegExp][] = [
      [encodePatch(header("pages/none.html"), 64, [{ literal: content }]), /^bad-reference: /],
      [
        encodePatch(header("pages/p41.html"), 64, [{ copy: 157, count: 1 }]),
        /^bad-message: .*not in the base file/,
      ],
      [encodePatch(header("pages/p41.html", "0".repeat(64)), 64, [{ literal: content }]), /^hash-mismatch: /],
    ];
    for (const [patch, expected] of cases) {
      assert.match(refusal(await rawSession(receiver.port, certs.client, [hello([3]), patch])), expected);
    }
    // Version 2 has neither frame.
    for (const frame of [request, cases[0]![0]]) {
      assert.match(
        refusal(await rawSession(receiver.port, certs.client, [hello([2]), frame])),
        /^unexpected-frame: /,
      );
    }
  });
});
