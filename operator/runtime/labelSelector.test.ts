import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { selectorMatches } from "./labelSelector.ts";

describe("label selectors", () => {
  const labels = { app: "shop", tier: "web" };

  it("need every matchLabels entry and every expression to hold", () => {
    assert.equal(selectorMatches({ matchLabels: { app: "shop" } }, labels), true);
    assert.equal(selectorMatches({ matchLabels: { app: "shop", tier: "db" } }, labels), false);
    assert.equal(
      selectorMatches(
        { matchLabels: { app: "shop" }, matchExpressions: [{ key: "tier", operator: "In", values: ["db"] }] },
        labels,
      ),
      false,
    );
  });

  it("evaluate In, NotIn, Exists and DoesNotExist as the API server does", () => {
    const holds = (operator: string, key: string, values?: string[]) =>
      selectorMatches({ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] }, labels);
    assert.equal(holds("In", "tier", ["web", "api"]), true);
    assert.equal(holds("In", "tier", ["db"]), false);
    assert.equal(holds("In", "missing", ["x"]), false);
    assert.equal(holds("NotIn", "tier", ["db"]), true);
    assert.equal(holds("NotIn", "tier", ["web"]), false);
    assert.equal(holds("NotIn", "missing", ["x"]), true, "a missing key is not in any set");
    assert.equal(holds("Exists", "app"), true);
    assert.equal(holds("Exists", "missing"), false);
    assert.equal(holds("DoesNotExist", "missing"), true);
    assert.equal(holds("DoesNotExist", "app"), false);
  });

  it("match everything when empty, nothing when absent or malformed", () => {
    assert.equal(selectorMatches({}, labels), true);
    assert.equal(selectorMatches({}, undefined), true);
    assert.equal(selectorMatches(undefined, labels), false);
    assert.equal(selectorMatches(null, labels), false);
    for (const requirement of [
      { key: "tier", operator: "In", values: [] },
      { key: "tier", operator: "NotIn" },
      { key: "app", operator: "Exists", values: ["shop"] },
      { key: "app", operator: "DoesNotExist", values: ["x"] },
      { key: "app", operator: "Gt", values: ["1"] },
    ])
      assert.equal(
        selectorMatches({ matchExpressions: [requirement] }, labels),
        false,
        JSON.stringify(requirement),
      );
  });
});
