/**
 * The real node leaves nothing behind: not after a suite that fails, and not after its
 * test process is killed with SIGKILL (no handler runs then: the next run's start sweeps
 * what it left, and that next run starts clean).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { leftovers, ourProcesses } from "../cluster/node/hostState.ts";
import { whileHoldingNodeLock } from "../cluster/node/realNode.ts";
import { realNodeUnavailable, startTestCluster, usingExistingCluster } from "../cluster/testCluster.ts";

const FIXTURE = join(import.meta.dirname, "fixtures", "realNodeSuite.ts");

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return condition();
}

/** Runs the fixture under node --test; with `kill`, SIGKILLs its whole group once its pod runs. */
async function runFixture(kill: boolean) {
  const work = mkdtempSync(join(tmpdir(), "offsite-node-teardown-"));
  const report = join(work, "report.json");
  // A nested `node --test` that inherits NODE_TEST_CONTEXT reports to us and runs nothing.
  const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
  const child = spawn(process.execPath, ["--test", "--test-reporter=dot", FIXTURE], {
    env: { ...env, OFFSITE_FIXTURE_REPORT: report, ...(kill ? { OFFSITE_FIXTURE_HANG: "1" } : {}) },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  if (kill) {
    assert.ok(
      await waitFor(() => existsSync(report), 300_000),
      `the fixture never started its pod:\n${output}`,
    );
    process.kill(-child.pid!, "SIGKILL");
  }
  const code = await exited;
  assert.ok(existsSync(report), `the fixture never started its pod:\n${output}`);
  const { pids } = JSON.parse(readFileSync(report, "utf8")) as { pids: number[] };
  rmSync(work, { recursive: true, force: true });
  return { code, output, pids };
}

describe(
  "real node teardown",
  { skip: usingExistingCluster() ? "an existing cluster is not torn down" : realNodeUnavailable() },
  () => {
    it("leaves nothing after a suite that fails", async () => {
      const { code, output, pids } = await runFixture(false);
      assert.notEqual(code, 0, `the fixture fails on purpose:\n${output}`);
      assert.ok(pids.length >= 3);
      // Under the node lock: another suite's node must not be starting while we look.
      assert.deepEqual(await whileHoldingNodeLock(leftovers), []);
    });

    it("after SIGKILL of the test process, the next run sweeps what it left and starts clean", async () => {
      await runFixture(true);
      // Nothing could clean up: kubelet, containerd, the shim and the container are orphans.
      assert.ok(ourProcesses().length >= 4, `orphans are left: ${leftovers().join("; ")}`);
      const cluster = await startTestCluster({
        node: "real",
        crds: false,
        realNode: { volumes: 1, dns: false },
      });
      try {
        const pods = await cluster.node!.crictl(["pods", "-q"]);
        assert.equal(pods.stdout.trim(), "", "no pod of the killed run is left in containerd");
        const nodes = await cluster.kubectl(["get", "nodes", "-o", "name"]);
        assert.equal(nodes.stdout.trim(), "node/offsite-node-0");
      } finally {
        await cluster.stop();
      }
      assert.deepEqual(cluster.node!.leftAfterStop, []);
    });
  },
);
