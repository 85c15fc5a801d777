/**
 * The real-node suites run unchanged against a cluster they did not start
 * (OFFSITE_TEST_CLUSTER=existing, as on kind): this suite starts our real node, then runs
 * offsiteServer.test.ts as a child in existing mode against it. The child does what it
 * would on kind: finds the images by the references test/cluster/images/build.ts prints
 * (here our node imported them; on kind, `build.ts --kind-cluster NAME` loads them), installs
 * the operator with helm, reaches the receiver through `kubectl port-forward`, and leaves
 * the cluster as it found it. kind itself cannot run here (no container engine).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { binaryPath } from "../cluster/binaries.ts";
import {
  realNodeUnavailable,
  startTestCluster,
  usingExistingCluster,
  type TestCluster,
} from "../cluster/testCluster.ts";

const SUITE = join(import.meta.dirname, "offsiteServer.test.ts");

const skip = usingExistingCluster() ? "this suite makes the existing cluster itself" : realNodeUnavailable();

describe("the real-node suites on an existing cluster", { skip }, () => {
  let cluster: (TestCluster & { stop(): Promise<void> }) | undefined;
  before(async () => {
    cluster = await startTestCluster({ node: "real", crds: false, realNode: { volumes: 2 } });
  });
  after(async () => {
    await cluster?.stop();
  });

  it("runs offsiteServer.test.ts in OFFSITE_TEST_CLUSTER=existing mode, and it cleans up after itself", async () => {
    const namespacesBefore = (await cluster!.kubectl(["get", "namespaces", "-o", "name"])).stdout;
    // A nested `node --test` that inherits NODE_TEST_CONTEXT reports to us and runs nothing.
    const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
    const child = spawn(process.execPath, ["--test", "--test-reporter=spec", SUITE], {
      env: { ...env, OFFSITE_TEST_CLUSTER: "existing", KUBECONFIG: cluster!.kubeconfigPath },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, output);
    const count = (what: string) => Number(new RegExp(`ℹ ${what} (\\d+)`).exec(output)?.[1]);
    assert.equal(count("fail"), 0, output);
    // Every test ran but the three that stop or kill a process through our node's runtime.
    assert.equal(count("skipped"), 3, output);
    assert.ok(count("pass") >= 6, output);
    assert.match(output, /✔ offsite push from the host .* backs up a tree/);
    assert.match(output, /﹣ kill -9 .* # stops or kills a container process through the node's runtime/);
    assert.match(output, /﹣ a hung receiver .* # stops or kills/);

    // Left as found: no release, no operator, no namespace of the suite's.
    const releases = await new Promise<string>((resolve) => {
      const helm = spawn(binaryPath("helm"), ["list", "-A", "-q", "--kubeconfig", cluster!.kubeconfigPath]);
      let out = "";
      helm.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      helm.on("close", () => resolve(out));
    });
    assert.equal(releases.trim(), "");
    const remaining = async () =>
      (await cluster!.kubectl(["get", "namespaces", "-o", "name"])).stdout
        .split("\n")
        .filter((line) => line && !namespacesBefore.includes(line));
    const deadline = Date.now() + 120_000;
    while ((await remaining()).length > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await remaining(), [], "the suite's namespaces are deleted");
  });
});
