import { it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { renderAll } from "./generate.ts";

it("the committed CRD YAML is what the zod schemas generate (run `npm run crds:generate` if not)", () => {
  for (const { file, text } of renderAll()) {
    assert.ok(existsSync(file), `${file} is missing`);
    assert.equal(readFileSync(file, "utf8"), text, `${file} is stale`);
  }
});
