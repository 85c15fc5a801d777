/**
 * What an OffsiteServer's spec says takes effect in the receiver: the receiver runs as a
 * real process with the command line the operator renders for that spec (only the pod's
 * paths and port swapped for the test's), and its retention, concurrency limit and
 * suspended sources are met by real clients. GUIDs are readable names here (site
 * shop-eu, source orders-db): the one GUID rule that the CRDs enforce too.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openSession } from "../../agent/client/openSession.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";
import { aReceiverContainer } from "../../operator/offsiteServer/fixtures.ts";
import { reportOf, runOffsite, startReceiverProcess, type ReceiverProcess } from "./agentProcesses.ts";

const SITE = "shop-eu";
const ORDERS = "orders-db";
const MEDIA = "media";
const SUSPENDED = "old-uploads";

/**
 * The receiver's args as the operator renders them for `fields`, less the pod's paths and
 * ports (the control port is a fixed number in the pod; here it would be one for every
 * test process on the machine).
 */
function renderedReceiverArgs(fields: Record<string, unknown>): string[] {
  const args = aReceiverContainer(fields).args!;
  assert.equal(args[0], "receive");
  return args.slice(1).filter((arg) => !/^--(root|certs|host|port|control-port|control-certs)=/.test(arg));
}

describe("an OffsiteServer's spec in the receiver process", () => {
  let work: string;
  let root: string;
  let receiver: ReceiverProcess;
  let to: string;
  const certs = (source: string) => join(work, "certs", `source-${source}`);
  const tree = (source: string) => join(work, "data", source);

  const push = (source: string) =>
    runOffsite(["push", tree(source), "--to", to, "--certs", certs(source), "--json"]);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-policies-"));
    root = join(work, "root");
    const made = await runOffsite([
      "certs",
      "--out",
      join(work, "certs"),
      "--site",
      SITE,
      ...[ORDERS, MEDIA, SUSPENDED].flatMap((source) => ["--source", source]),
      "--json",
    ]);
    assert.equal(made.code, 0, made.stderr);
    for (const source of [ORDERS, MEDIA, SUSPENDED]) {
      mkdirSync(tree(source), { recursive: true });
      writeFileSync(join(tree(source), "a.txt"), `${source} 0\n`);
    }
    // A first receiver without suspension, so the suspended source has a stored version.
    receiver = await startReceiverProcess(root, join(work, "certs", "receiver"), renderedReceiverArgs({}));
    to = `127.0.0.1:${receiver.port}`;
    const first = await push(SUSPENDED);
    assert.equal(first.code, 0, first.stderr);
    await receiver.stop();

    receiver = await startReceiverProcess(
      root,
      join(work, "certs", "receiver"),
      renderedReceiverArgs({
        retention: { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 },
        maxConcurrentJobs: 1,
        suspendedSources: [SUSPENDED],
      }),
    );
    to = `127.0.0.1:${receiver.port}`;
  });

  after(async () => {
    await receiver?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("keeps the versions the spec's retention says, and prunes the rest", async () => {
    for (let i = 1; i <= 4; i++) {
      writeFileSync(join(tree(ORDERS), "a.txt"), `${ORDERS} ${i}\n`);
      const pushed = await push(ORDERS);
      assert.equal(pushed.code, 0, pushed.stderr);
    }
    assert.equal(readdirSync(join(root, SITE, ORDERS, "versions")).length, 2);
    // The pruned versions left versions/ at the commit, and are deleted just after it.
    const trash = join(root, SITE, ORDERS, "trash");
    for (const started = Date.now(); existsSync(trash) && readdirSync(trash).length > 0;) {
      assert.ok(Date.now() - started < 10_000, `the trash is emptied: ${readdirSync(trash).join(", ")}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  it("refuses one job more than maxConcurrentJobs as busy, and serves it once the other ends", async () => {
    // Hold one push session open: Hello answered, nothing sent.
    const held = await openSession(
      { host: "127.0.0.1", port: receiver.port, credentials: loadCredentials(certs(ORDERS)) },
      { role: "push", site: SITE, source: ORDERS },
    );
    try {
      const refused = await push(MEDIA);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /serving its limit of 1 jobs at once \(maxConcurrentJobs\); retry/);
    } finally {
      await held.connection.abort("internal", "test: the held session ends");
    }
    const served = await push(MEDIA);
    assert.equal(served.code, 0, served.stderr);
    assert.equal(reportOf<{ files: { total: number } }>(served).files.total, 1);
  });

  it("refuses pushes of a suspended source with a clear error, and keeps its versions restorable", async () => {
    writeFileSync(join(tree(SUSPENDED), "a.txt"), "changed while suspended\n");
    const refused = await push(SUSPENDED);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /source old-uploads is suspended on this receiver/);
    assert.equal(readdirSync(join(root, SITE, SUSPENDED, "versions")).length, 1);
    const restored = join(work, "restored");
    const restore = await runOffsite([
      "restore",
      "--from",
      to,
      "--certs",
      certs(SUSPENDED),
      "--json",
      restored,
    ]);
    assert.equal(restore.code, 0, restore.stderr);
  });

  it("refuses a GUID that breaks the rule before anything is sent", async () => {
    const result = await runOffsite([
      "push",
      tree(ORDERS),
      "--to",
      to,
      "--certs",
      certs(ORDERS),
      "--source",
      "Orders_DB",
    ]);
    assert.equal(result.code, 2);
    const { message } = JSON.parse(result.stderr.trim().split("\n").at(-1)!) as { message: string };
    assert.match(message, /--source "Orders_DB" is not a GUID: 1-63 lower-case letters/);
  });
});
