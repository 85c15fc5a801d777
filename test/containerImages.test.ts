// No Docker engine runs on our machines, so the images are checked without building them:
// everything they copy exists, everything their entrypoint imports is copied, and they
// run as non-root on distroless Node 24.
import { it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

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
