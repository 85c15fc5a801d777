// No Docker engine runs on our machines, so the images are checked without building them:
// everything they copy exists, everything their entrypoint imports is copied, and they
// run as non-root on distroless Node 24.
import { it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { imageFromDockerfile, webAppImage } from "./cluster/images/images.ts";

const ROOT = join(import.meta.dirname, "..");

for (const [dockerfilePath, entry] of [
  ["operator/Dockerfile", "operator/main.ts"],
  ["agent.Dockerfile", "agent/main.mjs"],
] as const) {
  it(`${dockerfilePath} copies files that exist, starts ${entry} with all it imports, and runs as non-root`, () => {
    const dockerfile = readFileSync(join(ROOT, dockerfilePath), "utf8");
    const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    assert.ok(copies.length >= 3);
    for (const source of copies) assert.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
    const entrypoint = /^ENTRYPOINT \[(.*)\]$/m.exec(dockerfile)?.[1];
    const script = (JSON.parse(`[${entrypoint}]`) as string[]).filter((arg) => !arg.startsWith("--"));
    assert.equal(script[1], entry);
    assert.match(dockerfile, /^USER 65532:65532$/m);
    assert.match(dockerfile, /^FROM gcr\.io\/distroless\/nodejs24-debian12:nonroot$/m);
    // The runtime image only has what it copies: everything the entrypoint imports, statically
    // or dynamically, must be in it.
    const imported = new Set<string>();
    const pending = [join(ROOT, entry)];
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (imported.has(file)) continue;
      imported.add(file);
      for (const [, path] of readFileSync(file, "utf8").matchAll(
        /(?:from |import\()"(\.{1,2}\/[^"]+\.ts)"/g,
      )) {
        pending.push(join(file, "..", path!));
      }
    }
    assert.ok(imported.size > 3);
    const covered = (file: string) => copies.some((source) => file.startsWith(join(ROOT, source)));
    assert.deepEqual(
      [...imported].filter((f) => !covered(f)).map((f) => f.slice(ROOT.length + 1)),
      [],
    );
  });
}

// The real test node builds these images from the same Dockerfiles (test/cluster/images/):
// the translation must keep what the Dockerfile says.
for (const [dockerfilePath, repository] of [
  ["operator/Dockerfile", "offsite.local/operator"],
  ["agent.Dockerfile", "offsite.local/agent"],
] as const) {
  it(`the test node's image from ${dockerfilePath} has its entrypoint, user, workdir, environment and files`, () => {
    const dockerfile = readFileSync(join(ROOT, dockerfilePath), "utf8");
    const image = imageFromDockerfile(dockerfilePath, repository);
    const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    assert.deepEqual(image.config.Entrypoint, entrypoint);
    assert.equal(image.config.User, "65532:65532");
    assert.equal(image.config.WorkingDir, "/app");
    assert.ok(image.config.Env?.includes("NODE_ENV=production"));
    const paths = new Set(image.entries.map((entry) => ("path" in entry ? entry.path : "")));
    assert.ok(paths.has(entrypoint[0]!.slice(1)), "the Node binary is where the entrypoint runs it");
    assert.ok(paths.has("app/package.json"));
    assert.ok(paths.has("app/node_modules/@kubernetes/client-node"), "production dependencies are in");
    assert.ok(!paths.has("app/node_modules/typescript"), "development dependencies are not");
    for (const [, source] of dockerfile.matchAll(/^COPY (?!--from)(\S+) \S+$/gm)) {
      assert.ok(
        image.entries.some((entry) => "source" in entry && entry.source === join(ROOT, source!)),
        `COPY ${source} is in the image`,
      );
    }
  });
}

it("the test web app's image (test/webApp/Dockerfile, its own build context) runs server.ts as non-root", () => {
  const image = webAppImage();
  assert.deepEqual(image.config.Entrypoint, ["/nodejs/bin/node", "server.ts"]);
  assert.equal(image.config.User, "65532:65532");
  assert.equal(image.config.WorkingDir, "/app");
  assert.ok(
    image.entries.some(
      (entry) =>
        "source" in entry &&
        entry.path === "app/server.ts" &&
        entry.source === join(ROOT, "test/webApp/server.ts"),
    ),
    "server.ts is copied from the context test/webApp/",
  );
});
