/**
 * A push that resumes an interrupted one sees, in its entries, the files the interrupted
 * one staged, and may send a Link or a Copy that reads one of them (a duplicate of a file
 * staged before the interruption, a staged file whose mtime changed since). The receiver
 * takes those from its staging area: before, it looked in the base version only and
 * refused them as bad-reference, and the retry, which resumed the same staging area,
 * failed the same way every time. Real processes over TLS.
 */
import assert from "node:assert/strict";
import { mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { encodeFile } from "../../agent/protocol/messages.ts";
import { pushHello, rawSession, reportOf, runOffsite, standaloneReceiverSuite } from "./agentProcesses.ts";
import { sha256Hex } from "./testSupport.ts";

const SITE = "resume-site";
const SOURCE = "resume-source";

describe("a resumed push that links to what the interrupted one staged", () => {
  const suite = standaloneReceiverSuite("resume-links", SITE, SOURCE);

  it("links a duplicate and a touched file to the staged ones, and commits the tree exactly", async () => {
    const { work, certs, receiver } = suite;
    const tree = join(work, "tree");
    mkdirSync(tree);
    const license = "the same licence text in two places\n".repeat(40);
    writeFileSync(join(tree, "a-LICENSE"), license);
    writeFileSync(join(tree, "z-LICENSE"), license);
    writeFileSync(join(tree, "notes.txt"), "notes\n");
    // The interrupted push: it staged a-LICENSE and notes.txt (with another mtime), then the connection ended.
    const staged = (path: string, text: string, mtime: number) =>
      encodeFile(
        { path, size: Buffer.byteLength(text), mtime, mode: 0o644, sha256: sha256Hex(Buffer.from(text)) },
        Buffer.from(text),
      );
    const hello = pushHello(SITE, SOURCE);
    await rawSession(receiver.port, certs.client, [
      hello,
      staged("a-LICENSE", license, 1_000),
      staged("notes.txt", "notes\n", 2_000),
    ]);
    utimesSync(join(tree, "a-LICENSE"), 5, 5);

    const pushed = await runOffsite([
      "push",
      tree,
      "--to",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      certs.client,
      "--cache",
      "none",
      "--json",
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const report = reportOf<{ resumed: boolean; files: { linked: number } }>(pushed);
    assert.equal(report.resumed, true);
    // z-LICENSE from the staged a-LICENSE; a-LICENSE and notes.txt: their own mtimes, no data.
    assert.equal(report.files.linked, 3);
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
  });
});
