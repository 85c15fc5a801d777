import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImage, dockerignoreMatcher, type ImageDefinition } from "./ociImage.ts";

const saved = process.env.OFFSITE_CACHE_DIR;
const dirs: string[] = [];
afterEach(() => {
  if (saved === undefined) delete process.env.OFFSITE_CACHE_DIR;
  else process.env.OFFSITE_CACHE_DIR = saved;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), "offsite-oci-"));
  dirs.push(dir);
  return dir;
}

describe("OCI image archives", () => {
  it("writes a layout ctr can import: named index, manifest, config and a layer matching its digest", () => {
    const dir = scratch();
    process.env.OFFSITE_CACHE_DIR = join(dir, "cache");
    mkdirSync(join(dir, "src", "sub"), { recursive: true });
    writeFileSync(join(dir, "src", "a.txt"), "hello");
    writeFileSync(join(dir, "src", "sub", "b.test.ts"), "left out");
    const definition: ImageDefinition = {
      repository: "offsite.local/example",
      entries: [
        { kind: "content", path: "etc/greeting", content: "hi\n" },
        { kind: "dir", path: "tmp", mode: 0o1777 },
        { kind: "layer" },
        { kind: "tree", path: "app", source: join(dir, "src"), exclude: (rel) => rel.endsWith(".test.ts") },
      ],
      config: { Entrypoint: ["/bin/true"], User: "65532:65532" },
    };
    const image = buildImage(definition);
    assert.equal(image.built, true);
    assert.match(image.ref, /^offsite\.local\/example:[0-9a-f]{20}$/);
    const layout = join(dir, "layout");
    mkdirSync(layout);
    execFileSync("tar", ["-xf", image.archive, "-C", layout]);
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    assert.equal(index.manifests[0]!.annotations["io.containerd.image.name"], image.ref);
    const blob = (digest: string) => join(layout, "blobs", "sha256", digest.replace("sha256:", ""));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), "utf8")) as {
      config: { digest: string };
      layers: { digest: string; mediaType: string }[];
    };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), "utf8")) as {
      config: { User: string };
      rootfs: { diff_ids: string[] };
    };
    assert.equal(config.config.User, "65532:65532");
    assert.equal(manifest.layers.length, 2);
    const files = manifest.layers
      .map((layer, i) => {
        const path = blob(layer.digest);
        const digest = `sha256:${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
        assert.equal(digest, config.rootfs.diff_ids[i]);
        return execFileSync("tar", ["-tvf", path], { encoding: "utf8" });
      })
      .join("");
    assert.match(files, /\.\/etc\/greeting/);
    assert.match(files, /^drwxrwxrwt .* \.\/tmp\/$/m);
    assert.match(files, /\.\/app\/a\.txt/);
    assert.doesNotMatch(files, /b\.test\.ts/);
    // Same inputs: cached. Changed input: a new key, and the old archive is removed.
    assert.equal(buildImage(definition).built, false);
    writeFileSync(join(dir, "src", "a.txt"), "changed");
    const changed = buildImage(definition);
    assert.equal(changed.built, true);
    assert.notEqual(changed.ref, image.ref);
    const layersDir = join(dir, "cache", "images", "layers");
    const layerFiles = readdirSync(layersDir).filter((name) => name.endsWith(".tar"));
    assert.equal(layerFiles.length, 2, "the unchanged base layer is reused, the old top layer removed");
    assert.equal(existsSync(image.archive), false);
  });

  it("reads .dockerignore patterns as Docker does for the simple cases", () => {
    const dir = scratch();
    writeFileSync(join(dir, ".dockerignore"), "node_modules\n**/*.test.ts\n# comment\ntest\n");
    const ignored = dockerignoreMatcher(dir);
    assert.equal(ignored("node_modules/x/index.js"), true);
    assert.equal(ignored("agent/cli/runCli.test.ts"), true);
    assert.equal(ignored("top.test.ts"), true);
    assert.equal(ignored("test/e2e/x.ts"), true);
    assert.equal(ignored("agent/cli/runCli.ts"), false);
    assert.equal(ignored("contract/flags.ts"), false);
  });
});
