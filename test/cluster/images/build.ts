/**
 * Builds the images the real-node suites run, the same way the harness does, and prints
 * one `<ref> <archive>` line per image (OCI archives, cached by their inputs):
 *
 *   node test/cluster/images/build.ts [--kind-cluster NAME]
 *
 * With --kind-cluster, loads each into that kind cluster (`kind load image-archive`: kind
 * imports it with ctr on every node), so OFFSITE_TEST_CLUSTER=existing suites find the
 * images by the same references; pods use imagePullPolicy: Never.
 */
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { imageFromDockerfile, pauseImage, webAppImage } from "./images.ts";
import { buildImage } from "./ociImage.ts";

const { values } = parseArgs({ options: { "kind-cluster": { type: "string" } } });
const images = [
  buildImage(pauseImage()),
  buildImage(imageFromDockerfile("agent.Dockerfile", "offsite.local/agent")),
  buildImage(imageFromDockerfile("operator/Dockerfile", "offsite.local/operator")),
  buildImage(webAppImage()),
];
for (const image of images) {
  process.stdout.write(`${image.ref} ${image.archive}\n`);
  const cluster = values["kind-cluster"];
  if (cluster)
    execFileSync("kind", ["load", "image-archive", image.archive, "--name", cluster], { stdio: "inherit" });
}
