/**
 * The harness never leaves etcd or an API server behind: not when a test fails, and not
 * when the test process is terminated in the middle of a suite.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { usingExistingCluster } from "../cluster/testCluster.ts";

const FIXTURE = join(import.meta.dirname, "fixtures", "failingSuite.ts");

/** Whether a process runs; a zombie (exited, not yet reaped by init) counts as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return condition();
}

/** Runs the fixture under node --test; with `terminateAfterStart`, SIGTERMs it once its cluster is up. */
async function runFixture(terminateAfterStart: boolean) {
  const work = mkdtempSync(join(tmpdir(), "offsite-teardown-"));
  const report = join(work, "report.json");
  // A test file runs with NODE_TEST_CONTEXT set; a nested `node --test` that inherits it
  // acts as a reporting child of ours and runs nothing, so it is removed.
  const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
  const child = spawn(process.execPath, ["--test", "--test-reporter=dot", FIXTURE], {
    env: {
      ...env,
      OFFSITE_FIXTURE_REPORT: report,
      ...(terminateAfterStart ? { OFFSITE_FIXTURE_HANG: "1" } : {}),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  if (terminateAfterStart) {
    assert.ok(
      await waitFor(() => existsSync(report), 120_000),
      `the fixture never started its cluster:\n${output}`,
    );
    const { pids } = JSON.parse(readFileSync(report, "utf8")) as { pids: number[] };
    assert.ok(pids.every(alive), "the control plane is running before the fixture is terminated");
    // node --test runs the file in a child of its own: signal the whole group, as a CI
    // runner or Ctrl-C would. The control plane has its own groups, so only the
    // harness's own handler can stop it.
    process.kill(-child.pid!, "SIGTERM");
  }
  const code = await exited;
  assert.ok(existsSync(report), `the fixture never started its cluster:\n${output}`);
  const result = JSON.parse(readFileSync(report, "utf8")) as { pids: number[]; dir: string };
  rmSync(work, { recursive: true, force: true });
  return { code, output, ...result };
}

describe(
  "test cluster teardown",
  { skip: usingExistingCluster() && "an existing cluster is not torn down" },
  () => {
    it("stops etcd and the API server and removes their files after a failing test", async () => {
      const { code, output, pids, dir } = await runFixture(false);
      assert.notEqual(code, 0, `the fixture's test should have failed:\n${output}`);
      assert.match(output, /this failure is the point of the fixture/);
      assert.equal(pids.length, 2, "etcd and kube-apiserver were started");
      assert.ok(
        await waitFor(() => !pids.some(alive), 10_000),
        `still running: ${pids.filter(alive).join(", ")}`,
      );
      assert.ok(!existsSync(dir), `${dir} was left behind`);
    });

    it("stops them and removes their files when the test process is terminated mid-suite", async () => {
      const { pids, dir } = await runFixture(true);
      assert.equal(pids.length, 2);
      assert.ok(
        await waitFor(() => !pids.some(alive), 10_000),
        `still running: ${pids.filter(alive).join(", ")}`,
      );
      // The test process removes it right after its children are gone, possibly after its
      // runner (whose exit we awaited) has already left: give it a moment, not forever.
      assert.ok(await waitFor(() => !existsSync(dir), 10_000), `${dir} was left behind`);
    });
  },
);
