import { it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { API_VERSION, KINDS } from "./definitions.ts";

const EXAMPLES = join(import.meta.dirname, "examples");

it("every example is valid under the zod schemas (the same rules the API server applies)", () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith(".yaml"));
  assert.ok(files.length >= 3);
  const seenKinds = new Set<string>();
  for (const file of files) {
    for (const document of parseAllDocuments(readFileSync(join(EXAMPLES, file), "utf8"))) {
      const object = document.toJS() as { apiVersion: string; kind: string; spec: unknown };
      assert.equal(object.apiVersion, API_VERSION, file);
      const kind = KINDS.find((k) => k.kind === object.kind);
      assert.ok(kind, `${file}: unknown kind ${object.kind}`);
      const result = kind.spec.safeParse(object.spec);
      assert.ok(result.success, `${file}: ${result.error?.message}`);
      seenKinds.add(object.kind);
    }
  }
  assert.deepEqual([...seenKinds].sort(), KINDS.map((k) => k.kind).sort(), "an example for every kind");
});
