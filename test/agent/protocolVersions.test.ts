/**
 * Mixed versions (PROTOCOL.md, "Versioning"): this agent and the released agents of
 * protocol versions 1 and 2 (test/agent/olderAgents.ts), as real processes of their own.
 * An older pusher backs up to this receiver and a pusher of this release to an older
 * receiver, each with the protocol both speak; compare and restore of either side read
 * what the other wrote; and this receiver serves a store an older one wrote, including its
 * older versions, then keeps it with this pusher's receiver state cache.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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
import { OLDER_AGENTS, unpackOlderAgent, type OlderAgent } from "./olderAgents.ts";
import { inertRandomBytes, treeSnapshot } from "./testSupport.ts";

const SITE = "versions-site";
const SOURCE = "versions-source";

interface PushReport {
  version: string;
  files: { total: number; sent: number };
  receiverState?: { from: string; cache: string };
}

for (const older of OLDER_AGENTS) {
  describe(`this agent and the agent of ${older.name} (${older.commit})`, () => {
    let work: string;
    let agent: OlderAgent;
    let certs: { receiver: string; client: string };
    let tree: string;
    let run = 0;
    const receivers: ReceiverProcess[] = [];
    const startReceiver = async (root: string, main?: string) => {
      const receiver = await startReceiverProcess(join(work, root), certs.receiver, [], undefined, main);
      receivers.push(receiver);
      return receiver;
    };
    const client = (main: string | undefined) => ({
      push: async (receiver: ReceiverProcess): Promise<PushReport> => {
        const args = ["push", tree, "--to", `127.0.0.1:${receiver.port}`, "--certs", certs.client, "--json"];
        // Only this release knows --cache; its cache lives in the test's directory.
        if (!main) args.push("--cache", join(work, "cache"));
        const pushed = await runOffsite(args, undefined, main);
        assert.equal(pushed.code, 0, pushed.stderr);
        return reportOf<PushReport>(pushed);
      },
      /** Exit 0: the receiver's version matches the tree. */
      compare: async (receiver: ReceiverProcess) => {
        const args = [
          "compare",
          tree,
          "--to",
          `127.0.0.1:${receiver.port}`,
          "--certs",
          certs.client,
          "--json",
        ];
        const compared = await runOffsite(args, undefined, main);
        assert.equal(compared.code, 0, `compare found differences:\n${compared.stdout}\n${compared.stderr}`);
      },
      restore: async (receiver: ReceiverProcess, version?: string) => {
        const into = join(work, `restored-${++run}`);
        const args = ["restore", "--from", `127.0.0.1:${receiver.port}`, "--certs", certs.client, "--json"];
        if (version) args.push("--version", version);
        const restored = await runOffsite([...args, into], undefined, main);
        assert.equal(restored.code, 0, restored.stderr);
        return treeSnapshot(into);
      },
    });
    const current = client(undefined);
    let old: ReturnType<typeof client>;

    /** A first tree: directories, small and large (chunked) files, a symlink, an empty file and directory. */
    const makeTree = () => {
      rmSync(tree, { recursive: true, force: true });
      mkdirSync(join(tree, "site", "assets"), { recursive: true });
      mkdirSync(join(tree, "empty"));
      for (let i = 0; i < 30; i++) writeFileSync(join(tree, "site", `page-${i}.html`), `<p>page ${i}</p>\n`);
      writeFileSync(join(tree, "site", "assets", "photo.jpg"), inertRandomBytes(300 * 1024));
      writeFileSync(join(tree, "site", "nothing.txt"), "");
      writeFileSync(join(tree, "run.sh"), "echo hello\n");
      chmodSync(join(tree, "run.sh"), 0o755);
      symlinkSync("site/page-0.html", join(tree, "index.html"));
    };
    /** The edits of an incremental: an edit, an append to the large file, a deletion, a rename. */
    const editTree = () => {
      writeFileSync(join(tree, "site", "page-1.html"), "<p>page 1, edited</p>\n");
      writeFileSync(join(tree, "site", "assets", "photo.jpg"), inertRandomBytes(310 * 1024));
      rmSync(join(tree, "site", "page-2.html"));
      renameSync(join(tree, "site", "page-3.html"), join(tree, "site", "page-3-moved.html"));
    };

    before(async () => {
      work = mkdtempSync(join(tmpdir(), `offsite-${older.name}-`));
      tree = join(work, "tree");
      agent = unpackOlderAgent(older.name);
      old = client(agent.main);
      certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    });

    after(async () => {
      for (const receiver of receivers) await receiver.stop();
      agent?.remove();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("an older pusher backs up to this receiver; compare and restore of both read it", async () => {
      makeTree();
      const receiver = await startReceiver("store-new");
      assert.equal((await old.push(receiver)).files.sent, 33);
      editTree();
      assert.equal((await old.push(receiver)).files.total, 32);
      await old.compare(receiver);
      await current.compare(receiver);
      const expected = treeSnapshot(tree);
      assert.deepEqual(await old.restore(receiver), expected);
      assert.deepEqual(await current.restore(receiver), expected);
    });

    it("this pusher backs up to an older receiver, which sends its entries as always", async () => {
      makeTree();
      // A cache for this CA, host and source, from a receiver of this release: the pushes
      // below name its version in Hello, which the older receiver must take and ignore.
      const cacheWriter = await startReceiver("store-cache");
      assert.equal((await current.push(cacheWriter)).receiverState?.cache, "saved");
      const receiver = await startReceiver("store-old", agent.main);
      const first = await current.push(receiver);
      assert.deepEqual(first.receiverState, { from: "older-receiver", cache: "off" });
      editTree();
      const second = await current.push(receiver);
      assert.deepEqual(second.receiverState, { from: "older-receiver", cache: "off" });
      await current.compare(receiver);
      await old.compare(receiver);
      const expected = treeSnapshot(tree);
      assert.deepEqual(await current.restore(receiver), expected);
      assert.deepEqual(await old.restore(receiver), expected);
    });

    it("this receiver serves the store an older receiver wrote, its older versions too, and keeps it", async () => {
      makeTree();
      const oldReceiver = await startReceiver("store-kept", agent.main);
      const first = await old.push(oldReceiver);
      const firstTree = treeSnapshot(tree);
      editTree();
      await old.push(oldReceiver);
      await oldReceiver.stop();

      const receiver = await startReceiver("store-kept");
      await current.compare(receiver);
      assert.deepEqual(await current.restore(receiver), treeSnapshot(tree));
      assert.deepEqual(await current.restore(receiver, first.version), firstTree);
      // Incrementals on top of the older store: the first downloads its entries (written
      // by the older receiver, their digest computed from them; the cache is of another
      // store of the test's), the next uses the cache.
      writeFileSync(join(tree, "site", "page-4.html"), "<p>page 4, edited</p>\n");
      assert.deepEqual((await current.push(receiver)).receiverState, { from: "stale", cache: "saved" });
      writeFileSync(join(tree, "site", "page-5.html"), "<p>page 5, edited</p>\n");
      assert.deepEqual((await current.push(receiver)).receiverState, { from: "cache", cache: "saved" });
      await current.compare(receiver);
      assert.deepEqual(await current.restore(receiver, first.version), firstTree);
    });
  });
}
