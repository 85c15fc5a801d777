import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import {
  SchemaConversionError,
  toStructuralSchema,
  undocumentedPaths,
  type JsonSchema,
} from "./toStructuralSchema.ts";
import { KINDS } from "./definitions.ts";
import { renderCrd } from "./renderCrd.ts";

/** Visits every schema node with its path. */
function walk(node: unknown, visit: (node: JsonSchema, path: string) => void, path = ""): void {
  if (typeof node !== "object" || node === null) return;
  if (Array.isArray(node)) {
    node.forEach((child, i) => walk(child, visit, `${path}[${i}]`));
    return;
  }
  visit(node as JsonSchema, path);
  for (const [key, child] of Object.entries(node)) {
    if (key === "default" || key === "x-kubernetes-validations" || key === "enum") continue;
    walk(child, visit, `${path}/${key}`);
  }
}

const crdSchemas = KINDS.map((kind) => {
  const crd = renderCrd(kind) as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } };
  return { kind: kind.kind, schema: crd.spec.versions[0]!.schema.openAPIV3Schema };
});

describe("toStructuralSchema", () => {
  it("drops additionalProperties: false from strict objects", () => {
    const out = toStructuralSchema(z.strictObject({ a: z.string().describe("a") }));
    assert.equal(out.additionalProperties, undefined);
    assert.equal(out.type, "object");
  });

  it("keeps additionalProperties as a schema for maps", () => {
    const out = toStructuralSchema(z.object({ labels: z.record(z.string(), z.string()) }));
    const labels = (out.properties as Record<string, JsonSchema>).labels!;
    assert.deepEqual(labels.additionalProperties, { type: "string" });
  });

  it("collapses integer|string unions into x-kubernetes-int-or-string", () => {
    const out = toStructuralSchema(z.object({ size: z.union([z.number().int(), z.string().max(20)]) }));
    const size = (out.properties as Record<string, JsonSchema>).size!;
    assert.equal(size["x-kubernetes-int-or-string"], true);
    assert.equal(size.type, undefined);
    assert.deepEqual(size.anyOf, [{ type: "integer" }, { type: "string" }]);
    assert.equal(size.maxLength, 20);
  });

  it("refuses unions that are not int-or-string, naming the path", () => {
    const schema = z.object({ target: z.object({ when: z.union([z.string(), z.boolean()]) }) });
    assert.throws(
      () => toStructuralSchema(schema),
      (error: unknown) => {
        assert.ok(error instanceof SchemaConversionError);
        assert.match(error.message, /\.target\.when/);
        assert.match(error.message, /not structural/);
        return true;
      },
    );
  });

  it("turns a literal into a one-value enum", () => {
    const out = toStructuralSchema(z.object({ v: z.literal("x") }));
    assert.deepEqual((out.properties as Record<string, JsonSchema>).v, { type: "string", enum: ["x"] });
  });

  it("refuses intersections (allOf) and discriminated unions (oneOf), naming the path", () => {
    const intersection = z.object({ both: z.intersection(z.string(), z.number()) });
    assert.throws(() => toStructuralSchema(intersection), /\.both: "allOf" cannot appear/);
    const oneOf = z.object({
      target: z.discriminatedUnion("kind", [
        z.object({ kind: z.literal("a") }),
        z.object({ kind: z.literal("b") }),
      ]),
    });
    assert.throws(() => toStructuralSchema(oneOf), /\.target: "oneOf" cannot appear/);
  });

  it("inlines reused schemas instead of emitting $ref", () => {
    const shared = z.object({ name: z.string() });
    const out = toStructuralSchema(z.object({ a: shared, b: shared }));
    assert.doesNotMatch(JSON.stringify(out), /\$ref|\$defs/);
    const properties = out.properties as Record<string, JsonSchema>;
    assert.deepEqual(properties.a, properties.b);
  });

  it("refuses recursive schemas", () => {
    interface Node {
      children: Node[];
    }
    const node: z.ZodType<Node> = z.object({
      get children() {
        return z.array(node);
      },
    });
    assert.throws(() => toStructuralSchema(node));
  });

  it("drops zod's date-time regex and safe-integer bounds but keeps real ones", () => {
    const out = toStructuralSchema(
      z.object({ at: z.iso.datetime(), n: z.number().int(), p: z.number().int().min(3) }),
    );
    const properties = out.properties as Record<string, JsonSchema>;
    assert.deepEqual(properties.at, { type: "string", format: "date-time" });
    assert.equal(properties.n!.minimum, undefined);
    assert.equal(properties.p!.minimum, 3);
  });

  it("copies CEL rules and descriptions verbatim", () => {
    const out = toStructuralSchema(
      z.object({ a: z.string() }).meta({
        description: "d",
        "x-kubernetes-validations": [{ rule: "self.a != ''", message: "a must be set" }],
      }),
    );
    assert.equal(out.description, "d");
    assert.deepEqual(out["x-kubernetes-validations"], [{ rule: "self.a != ''", message: "a must be set" }]);
  });
});

describe("the generated Offsite CRD schemas", () => {
  for (const { kind, schema } of crdSchemas) {
    it(`${kind}: every node is structural`, () => {
      walk(schema, (node, path) => {
        for (const key of [
          "$ref",
          "$defs",
          "definitions",
          "patternProperties",
          "uniqueItems",
          "oneOf",
          "allOf",
          "not",
        ]) {
          assert.ok(!(key in node), `${kind} ${path} has ${key}`);
        }
        assert.notEqual(node.additionalProperties, false, `${kind} ${path} has additionalProperties: false`);
        if (path.endsWith("/anyOf[0]") || path.endsWith("/anyOf[1]")) return;
        if ("properties" in node || "items" in node || "description" in node) {
          assert.ok(
            node.type !== undefined || node["x-kubernetes-int-or-string"] === true,
            `${kind} ${path} has no type`,
          );
        }
        if (Array.isArray(node.anyOf)) {
          assert.equal(
            node["x-kubernetes-int-or-string"],
            true,
            `${kind} ${path}: anyOf only as int-or-string`,
          );
        }
      });
    });

    it(`${kind}: every field has a description for kubectl explain`, () => {
      const spec = (schema.properties as Record<string, JsonSchema>).spec!;
      const status = (schema.properties as Record<string, JsonSchema>).status!;
      assert.deepEqual(undocumentedPaths(spec, "spec"), []);
      assert.deepEqual(undocumentedPaths(status, "status"), []);
    });

    it(`${kind}: every list with CEL rules inside has maxItems (or the API server refuses the cost)`, () => {
      const hasRules = (node: unknown): boolean =>
        JSON.stringify(node).includes('"x-kubernetes-validations"');
      walk(schema, (node, path) => {
        if (node.type === "array" && hasRules(node.items)) {
          assert.equal(
            typeof node.maxItems,
            "number",
            `${kind} ${path} is a list with CEL rules and no maxItems`,
          );
        }
      });
    });

    it(`${kind}: every string checked by a CEL regex has a length bound`, () => {
      walk(schema, (node, path) => {
        const rules = node["x-kubernetes-validations"] as { rule: string }[] | undefined;
        if (!rules?.some((r) => r.rule.includes("matches("))) return;
        assert.equal(typeof node.maxLength, "number", `${kind} ${path} uses matches() without maxLength`);
      });
    });
  }
});
