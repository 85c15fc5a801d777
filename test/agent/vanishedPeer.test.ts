/**
 * A pusher whose network vanishes mid-push — as when its pod is deleted and its network
 * namespace torn down before its FIN leaves — never closes its end of the session. The
 * receiver must notice by itself (TCP keepalive, contract/transport.ts) and free the
 * source, or every retry of that source is refused as busy until the idle timeout
 * (minutes). Here the pusher runs in a network namespace of its own behind a veth pair;
 * the test takes the link down (so not even its FIN or RST leaves) and kills it with
 * SIGKILL mid-push, then pushes again from the host: refused as busy at first, accepted
 * well before the idle timeout, and resuming what was staged.
 *
 * Needs root (network namespaces); it says so and skips otherwise.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { whileHoldingNodeLock } from "../cluster/node/realNode.ts";
import { reportOf, runOffsite, startReceiverProcess, type ReceiverProcess } from "./agentProcesses.ts";

const MAIN = join(import.meta.dirname, "..", "..", "agent", "main.mjs");
const NAMESPACE = `offsite-vanish-${process.pid}`;
const HOST_LINK = `ofv${process.pid % 100000}`;
const PEER_LINK = `ofp${process.pid % 100000}`;
const RECEIVER_ADDRESS = "198.18.251.1";
const PEER_ADDRESS = "198.18.251.2";
const SITE = "vanish-site";
const SOURCE = "vanish-source";
const MiB = 1024 * 1024;

const notRoot = process.getuid?.() !== 0 ? "needs root to create a network namespace" : undefined;
if (notRoot) process.stderr.write(`[vanishedPeer] SKIPPED: ${notRoot}\n`);

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });

describe("a pusher whose network vanishes mid-push", { skip: notRoot }, () => {
  let work = "";
  let receiver: ReceiverProcess | undefined;
  const tree = () => join(work, "tree");
  const certs = () => join(work, "certs", `source-${SOURCE}`);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-vanish-"));
    ip("netns", "add", NAMESPACE);
    ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", PEER_LINK);
    ip("link", "set", PEER_LINK, "netns", NAMESPACE);
    ip("addr", "add", `${RECEIVER_ADDRESS}/30`, "dev", HOST_LINK);
    ip("link", "set", HOST_LINK, "up");
    ip("netns", "exec", NAMESPACE, "ip", "addr", "add", `${PEER_ADDRESS}/30`, "dev", PEER_LINK);
    ip("netns", "exec", NAMESPACE, "ip", "link", "set", PEER_LINK, "up");
    const made = await runOffsite([
      "certs",
      "--out",
      join(work, "certs"),
      "--site",
      SITE,
      "--source",
      SOURCE,
      "--host",
      RECEIVER_ADDRESS,
      "--json",
    ]);
    assert.equal(made.code, 0, made.stderr);
    mkdirSync(tree());
    const fd = openSync(join(tree(), "big.bin"), "w");
    for (let i = 0; i < 48; i++) writeSync(fd, randomBytes(4 * MiB));
    closeSync(fd);
    receiver = await startReceiverProcess(join(work, "store"), join(work, "certs", "receiver"), [
      "--host",
      RECEIVER_ADDRESS,
    ]);
  });

  after(async () => {
    await receiver?.stop();
    try {
      ip("netns", "del", NAMESPACE);
    } catch {
      // already gone
    }
    try {
      ip("link", "del", HOST_LINK);
    } catch {
      // went with the namespace
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // The real node's guard drops host traffic in 198.18.0.0/15 that is not on its bridge
  // (test/cluster/node/hostState.ts), which is this test's veth: it runs while no node does.
  it("frees the source within seconds of keepalive, and the next push resumes", () =>
    whileHoldingNodeLock(async () => {
      const to = `${RECEIVER_ADDRESS}:${receiver!.port}`;
      const push = ["push", tree(), "--to", to, "--certs", certs(), "--json"];
      const vanishing = spawn("ip", ["netns", "exec", NAMESPACE, process.execPath, MAIN, ...push], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      // Mid-push: the receiver has staged some of the file (waited for, not timed: a loaded
      // machine can take seconds to start the pusher).
      const staged = join(work, "store", SITE, SOURCE, "staging", "partial", "data");
      const stagedBytes = () => (existsSync(staged) ? statSync(staged).size : 0);
      for (const waitStarted = Date.now(); stagedBytes() < 8 * MiB;) {
        assert.ok(Date.now() - waitStarted < 60_000, "the first push staged 8 MiB within a minute");
        assert.equal(vanishing.exitCode, null, "the first push is still running");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      ip("netns", "exec", NAMESPACE, "ip", "link", "set", PEER_LINK, "down");
      vanishing.kill("SIGKILL");
      // The namespace stays until after(): deleting it would take the host's end of the
      // veth pair, and with it the receiver's address, away from the retries below.
      const vanishedAt = Date.now();

      let busy = 0;
      let report: { resumed?: boolean; bytes?: { wire: number } } | undefined;
      while (Date.now() - vanishedAt < 90_000) {
        const again = await runOffsite(push);
        if (again.code === 0) {
          report = reportOf(again);
          break;
        }
        assert.match(again.stderr, /already running/, `only busy is expected: ${again.stderr}`);
        busy++;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      const seconds = (Date.now() - vanishedAt) / 1000;
      process.stderr.write(
        `[vanishedPeer] source free again after ${seconds.toFixed(1)} s (${busy} busy refusals)\n`,
      );
      assert.ok(report, "a push was accepted before 90 s (the idle timeout is 5 min)");
      assert.ok(seconds < 60, `freed after ${seconds} s`);
      assert.equal(report.resumed, true, "the push resumed what the vanished one staged");
      assert.ok(report.bytes!.wire < 192 * MiB, `sent ${report.bytes!.wire} of ${192 * MiB} bytes`);
    }));
});
