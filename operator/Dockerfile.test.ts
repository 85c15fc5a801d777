// No Docker engine runs on our machines, so the image is checked without building it:
// everything it copies exists, its entrypoint exists, and it runs as non-root.
import { it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");

it("the operator Dockerfile copies files that exist, starts operator/main.ts, and runs as non-root", () => {
  const dockerfile = readFileSync(join(ROOT, "operator", "Dockerfile"), "utf8");
  const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
  assert.ok(copies.length >= 4);
  for (const source of copies) assert.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
  const entrypoint = /^ENTRYPOINT \[(.*)\]$/m.exec(dockerfile)?.[1];
  const script = JSON.parse(`[${entrypoint}]`) as string[];
  assert.ok(existsSync(join(ROOT, script[1]!)), `${script[1]} exists`);
  assert.match(dockerfile, /^USER 65532:65532$/m);
  assert.match(dockerfile, /^FROM gcr\.io\/distroless\/nodejs24-debian12:nonroot$/m);
  // The runtime image only has what it copies: everything the operator imports must be in it.
  const imported = new Set<string>();
  const pending = [join(ROOT, "operator", "main.ts")];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (imported.has(file)) continue;
    imported.add(file);
    for (const [, path] of readFileSync(file, "utf8").matchAll(/from "(\.{1,2}\/[^"]+\.ts)"/g)) {
      pending.push(join(file, "..", path!));
    }
  }
  const covered = (file: string) => copies.some((source) => file.startsWith(join(ROOT, source)));
  assert.deepEqual(
    [...imported].filter((f) => !covered(f)).map((f) => f.slice(ROOT.length + 1)),
    [],
  );
});
