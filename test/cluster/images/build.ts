/**
 * Builds the images our suites' pods run (the agent, the operator, the test web app), the
 * same way the harness does, and prints one `<ref> <archive>` line per image (OCI
 * archives, cached by their inputs):
 *
 *   node test/cluster/images/build.ts [--kind-cluster NAME]
 *
 * With --kind-cluster, loads each into that kind cluster (`kind load image-archive`: kind
 * imports it with ctr on every node), so OFFSITE_TEST_CLUSTER=existing suites find the
 * images by the same references and nothing is pulled. For another cluster, push the
 * archives to a registry it pulls from (e.g. `crane push ARCHIVE REGISTRY/offsite/agent:TAG`)
 * and retag, or import them on every node with `ctr -n k8s.io images import ARCHIVE`.
 */
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { buildWorkloadImages } from "./images.ts";

const { values } = parseArgs({ options: { "kind-cluster": { type: "string" } } });
const { agent, operator, webApp } = buildWorkloadImages();
for (const image of [agent, operator, webApp]) {
  process.stdout.write(`${image.ref} ${image.archive}\n`);
  const cluster = values["kind-cluster"];
  if (cluster)
    execFileSync("kind", ["load", "image-archive", image.archive, "--name", cluster], { stdio: "inherit" });
}
