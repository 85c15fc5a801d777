/**
 * The README's main command: `npm start` brings up the local control plane with the
 * Offsite API and the examples, and the cluster it prints is usable by kubectl and by
 * our own suites in OFFSITE_TEST_CLUSTER=existing mode (the mode a kind cluster uses).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { runKubectl } from "../cluster/controlPlane.ts";
import { usingExistingCluster } from "../cluster/testCluster.ts";
import { runStartCommand } from "../fixtures/startCommand.ts";

const ROOT = join(import.meta.dirname, "..", "..");

describe("npm start", { skip: usingExistingCluster() && "starts a local control plane of its own" }, () => {
  it("serves the API with the examples until Ctrl-C, and the suites run against it as an existing cluster", async () => {
    // kwok's node here (API behaviour); test/e2e/startCommand.test.ts runs it on the real node.
    const start = runStartCommand(["--node", "kwok"]);
    const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
    try {
      const output = await start.waitFor(/runs until Ctrl-C/, 180_000);
      const kubeconfig = join(start.stateDir, "kubeconfig");
      assert.match(output, new RegExp(`export KUBECONFIG=${kubeconfig}`));
      assert.match(output, /offsiteserver\.offsite\.dev\/vault/);
      assert.match(output, /backupjob\.offsite\.dev\/cms-uploads-nightly/);
      assert.match(output, /replicationpair\.offsite\.dev\/web-uploads/);

      const servers = await runKubectl(kubeconfig, ["get", "osrv", "-n", "offsite-demo", "-o", "name"]);
      assert.equal(servers.code, 0, servers.stderr);
      assert.match(servers.stdout, /offsiteserver\.offsite\.dev\/vault/);
      // The operator runs inside npm start: the simplest example server is Ready.
      assert.match(output, /The operator runs \(logs: /);
      const ready = await runKubectl(kubeconfig, [
        "get",
        "osrv",
        "vault",
        "-n",
        "offsite-demo",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      assert.equal(ready.stdout, "True");

      // The same CRD suite, unchanged, against the cluster npm start made.
      const suite = spawn(
        process.execPath,
        ["--test", "--test-reporter=spec", "test/integration/crds.test.ts"],
        {
          cwd: ROOT,
          env: { ...env, OFFSITE_TEST_CLUSTER: "existing", KUBECONFIG: kubeconfig },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let suiteOutput = "";
      suite.stdout.on("data", (chunk: Buffer) => (suiteOutput += chunk.toString()));
      suite.stderr.on("data", (chunk: Buffer) => (suiteOutput += chunk.toString()));
      const suiteCode = await new Promise<number | null>((resolve) => suite.on("close", resolve));
      assert.equal(suiteCode, 0, suiteOutput);
      // Every test of the suite ran and passed (the count grows with the suite).
      const tests = Number(/ℹ tests (\d+)/.exec(suiteOutput)?.[1]);
      assert.ok(tests >= 12, suiteOutput);
      assert.match(suiteOutput, new RegExp(`ℹ pass ${tests}\n`));
      assert.match(suiteOutput, /ℹ fail 0/);

      assert.equal(
        await start.interrupt(),
        130,
        "npm start stops on Ctrl-C with the shell's code for SIGINT",
      );
      const after = await runKubectl(kubeconfig, ["get", "ns", "--request-timeout=2s"]);
      assert.notEqual(after.code, 0, "the control plane is gone after Ctrl-C");
    } finally {
      await start.dispose();
    }
  });
});
