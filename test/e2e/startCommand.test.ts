/**
 * `npm start` on the real node, as a new user meets it: the demo OffsiteServer's receiver
 * runs for real, and the commands npm start prints push a tree to it from this machine
 * (through the Service's ClusterIP and kube-proxy) and restore it byte for byte. Ctrl-C
 * stops everything: no process, mount, netns, link or chain of the node is left.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runKubectl } from "../cluster/controlPlane.ts";
import { realNodeUnavailable, usingExistingCluster } from "../cluster/testCluster.ts";
import { runStartCommand } from "../fixtures/startCommand.ts";
import { reportOf, runOffsite } from "../agent/agentProcesses.ts";

const skip = usingExistingCluster() ? "npm start makes a local cluster of its own" : realNodeUnavailable();

/** The command npm start printed that begins with `offsite VERB`, as argv after the alias. */
function printedCommand(output: string, verb: string): string[] {
  const line = output.split("\n").find((l) => l.trimStart().startsWith(`offsite ${verb} `));
  assert.ok(line, `npm start printed no 'offsite ${verb}' command:\n${output}`);
  return line.trim().split(/\s+/).slice(1);
}

describe("npm start on the real node", { skip }, () => {
  it("runs the demo receiver for real, and the push and restore it prints work from this machine", async () => {
    const start = runStartCommand(["--node", "real"]);
    const work = mkdtempSync(join(tmpdir(), "offsite-e2e-start-"));
    try {
      const output = await start.waitFor(/runs until Ctrl-C/, 600_000);
      assert.match(output, /and a real node/);
      assert.doesNotMatch(output, /pods are simulated/);
      const kubeconfig = join(start.stateDir, "kubeconfig");
      const pod = await runKubectl(kubeconfig, [
        "get",
        "pod",
        "vault-0",
        "-n",
        "offsite-demo",
        "-o",
        "jsonpath={.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].state.running.startedAt}",
      ]);
      assert.match(pod.stdout, /^Running true \d{4}-/, "the receiver container runs, Ready by its probe");
      assert.match(output, /alias offsite="/);

      // The printed commands, with ./my-data and ./restored made real.
      const push = printedCommand(output, "push");
      const restore = printedCommand(output, "restore");
      assert.match(push[3]!, /^198\.19\.\d+\.\d+:5722$/, "it pushes to the ClusterIP");
      const data = join(work, "my-data");
      mkdirSync(join(data, "uploads"), { recursive: true });
      writeFileSync(join(data, "uploads", "photo.jpg"), randomBytes(256 * 1024));
      writeFileSync(join(data, "notes.txt"), "hello from the host\n");
      const pushed = await runOffsite(push.map((a) => (a === "./my-data" ? data : a)).concat("--json"));
      assert.equal(pushed.code, 0, pushed.stderr);
      const report = reportOf<{ outcome: string; version: string; files: { sent: number } }>(pushed);
      assert.equal(report.outcome, "succeeded");
      assert.equal(report.files.sent, 2);

      const restored = join(work, "restored");
      const back = await runOffsite(restore.map((a) => (a === "./restored" ? restored : a)).concat("--json"));
      assert.equal(back.code, 0, back.stderr);
      execFileSync("diff", ["-r", data, restored]); // throws on any difference

      // The version is on the receiver's volume, under the demo site and source.
      const versions = await runKubectl(kubeconfig, [
        "exec",
        "-n",
        "offsite-demo",
        "vault-0",
        "--",
        "/nodejs/bin/node",
        "-e",
        'console.log(require("fs").readdirSync("/data/demo-site/demo-source/versions").join(","))',
      ]);
      assert.equal(versions.code, 0, versions.stderr);
      assert.ok(
        versions.stdout
          .split(",")
          .map((v) => v.trim())
          .includes(report.version),
        versions.stdout,
      );

      assert.equal(
        await start.interrupt(),
        130,
        "npm start stops on Ctrl-C with the shell's code for SIGINT",
      );
      // Checked by npm start itself while it still held the node's lock: once it is gone,
      // another suite's node (or the orphans realNodeTeardown makes on purpose) may be there.
      assert.doesNotMatch(start.output(), /left behind/);
      assert.match(start.output(), /\[real node\] swept at exit: nothing left/);
    } finally {
      await start.dispose();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
