/**
 * zod → a CRD's `openAPIV3Schema`.
 *
 * zod's own JSON Schema output (OpenAPI 3.0 target) is close, but the API server only
 * accepts *structural* schemas: every node has a type, no `$ref`, no
 * `additionalProperties: false`, no `patternProperties`, no `uniqueItems`, and unions only
 * in the one shape Kubernetes knows (int-or-string). This walk rewrites zod's output into
 * that form and throws, naming the path, on anything it cannot express — a schema that
 * only fails when the API server rejects it is a slow way to learn.
 */
import { z } from "zod";

export type JsonSchema = { [key: string]: unknown };

/** Keys a structural schema node may carry; anything else zod emits is a bug to report. */
const ALLOWED_KEYS = new Set([
  "type",
  "description",
  "properties",
  "required",
  "items",
  "additionalProperties",
  "default",
  "enum",
  "format",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "nullable",
  "x-kubernetes-validations",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-embedded-resource",
  "anyOf",
]);

/** Keys that are never structural and have no structural equivalent. */
const FORBIDDEN_KEYS = [
  "$ref",
  "$defs",
  "definitions",
  "patternProperties",
  "uniqueItems",
  "oneOf",
  "allOf",
  "not",
  "const",
];

export class SchemaConversionError extends Error {
  constructor(path: string, problem: string) {
    super(`${path || "<root>"}: ${problem}`);
    this.name = "SchemaConversionError";
  }
}

/** Converts a zod schema to a structural OpenAPI v3 schema for a CRD. */
export function toStructuralSchema(schema: z.ZodType): JsonSchema {
  const raw = z.toJSONSchema(schema, {
    target: "openapi-3.0",
    io: "input",
    reused: "inline",
    cycles: "throw",
    unrepresentable: "throw",
  }) as JsonSchema;
  delete raw.$schema;
  return structural(raw, "");
}

function isObject(value: unknown): value is JsonSchema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function structural(node: JsonSchema, path: string): JsonSchema {
  for (const key of FORBIDDEN_KEYS) {
    if (key in node) throw new SchemaConversionError(path, `"${key}" cannot appear in a structural schema`);
  }
  let out: JsonSchema = { ...node };

  if (Array.isArray(out.anyOf)) out = collapseUnion(out, path);

  // zod's .strict() gives additionalProperties: false; a structural schema prunes unknown
  // fields anyway and rejects them under strict field validation, so drop it.
  if (out.additionalProperties === false) delete out.additionalProperties;
  // z.number().int() bounds itself to JavaScript's safe integers; that is not a rule of ours.
  if (out.minimum === Number.MIN_SAFE_INTEGER) delete out.minimum;
  if (out.maximum === Number.MAX_SAFE_INTEGER) delete out.maximum;
  // z.iso.datetime() adds a 600-character regex next to format: date-time, which the API
  // server checks by itself.
  if (out.format === "date-time") delete out.pattern;

  for (const key of Object.keys(out)) {
    if (!ALLOWED_KEYS.has(key)) throw new SchemaConversionError(path, `unsupported key "${key}"`);
  }
  if (
    out.type === undefined &&
    out["x-kubernetes-int-or-string"] !== true &&
    out["x-kubernetes-preserve-unknown-fields"] !== true
  ) {
    throw new SchemaConversionError(path, "every node of a structural schema needs a type");
  }

  if (isObject(out.properties)) {
    if (isObject(out.additionalProperties)) {
      throw new SchemaConversionError(path, "properties and additionalProperties cannot both be set");
    }
    const properties: JsonSchema = {};
    for (const [name, child] of Object.entries(out.properties)) {
      if (!isObject(child)) throw new SchemaConversionError(`${path}.${name}`, "not a schema");
      properties[name] = structural(child, `${path}.${name}`);
    }
    out.properties = properties;
  }
  if (isObject(out.additionalProperties)) {
    out.additionalProperties = structural(out.additionalProperties, `${path}[*]`);
  }
  if (isObject(out.items)) out.items = structural(out.items, `${path}[]`);
  return out;
}

/**
 * A union is structural only as int-or-string: `integer | string` (a Kubernetes
 * quantity or port) becomes `x-kubernetes-int-or-string: true`; the branches' shared
 * length bound is kept so CEL cost estimation stays finite. Anything else must be
 * modelled as one object with optional members and a CEL "exactly one of" rule.
 */
function collapseUnion(node: JsonSchema, path: string): JsonSchema {
  const branches = node.anyOf as unknown[];
  const types = branches.map((branch) => (isObject(branch) ? branch.type : undefined)).sort();
  if (types.length !== 2 || types[0] !== "integer" || types[1] !== "string") {
    throw new SchemaConversionError(
      path,
      `union of ${JSON.stringify(types)} is not structural: use integer|string, or one object with optional fields and a CEL rule`,
    );
  }
  const stringBranch = branches.find((branch) => isObject(branch) && branch.type === "string") as JsonSchema;
  const { anyOf: _anyOf, ...rest } = node;
  const collapsed: JsonSchema = { ...rest, "x-kubernetes-int-or-string": true };
  // Not an anyOf of typed branches: value validations only, which is what structural allows.
  collapsed.anyOf = [{ type: "integer" }, { type: "string" }];
  if (typeof stringBranch.maxLength === "number") collapsed.maxLength = stringBranch.maxLength;
  return collapsed;
}

/** Every property path whose schema has no description, for the test that `kubectl explain` documents everything. */
export function undocumentedPaths(node: JsonSchema, path = ""): string[] {
  const missing: string[] = [];
  if (path !== "" && typeof node.description !== "string") missing.push(path);
  if (isObject(node.properties)) {
    for (const [name, child] of Object.entries(node.properties)) {
      if (isObject(child)) missing.push(...undocumentedPaths(child, `${path}.${name}`));
    }
  }
  if (isObject(node.items) && isObject(node.items.properties)) {
    for (const [name, child] of Object.entries(node.items.properties)) {
      if (isObject(child)) missing.push(...undocumentedPaths(child, `${path}[].${name}`));
    }
  }
  return missing;
}
