import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { INJECT_LABEL } from "../agentControl/names.ts";
import { desiredWebhookConfiguration, servingHosts } from "./webhookConfiguration.ts";

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

describe("the webhook configuration", () => {
  it("sends only labelled pod creations, and never holds a pod back", () => {
    const [webhook, ...rest] = desiredWebhookConfiguration(
      { service: { namespace: "offsite-system", name: "offsite-webhook" } },
      CA,
    ).webhooks!;
    assert.equal(rest.length, 0);
    assert.deepEqual(webhook!.rules, [
      {
        operations: ["CREATE"],
        apiGroups: [""],
        apiVersions: ["v1"],
        resources: ["pods"],
        scope: "Namespaced",
      },
    ]);
    assert.deepEqual(webhook!.objectSelector, { matchLabels: { [INJECT_LABEL]: "true" } });
    assert.equal(webhook!.failurePolicy, "Ignore");
    assert.equal(webhook!.sideEffects, "None");
    assert.equal(webhook!.timeoutSeconds, 5);
    assert.equal(webhook!.reinvocationPolicy, "Never");
    assert.deepEqual(webhook!.admissionReviewVersions, ["v1"]);
    assert.deepEqual(webhook!.clientConfig, {
      service: { namespace: "offsite-system", name: "offsite-webhook", path: "/mutate-pods", port: 443 },
      caBundle: Buffer.from(CA).toString("base64"),
    });
  });

  it("points at a URL instead for an operator outside the cluster", () => {
    const url = "https://127.0.0.1:9555/mutate-pods";
    const [webhook] = desiredWebhookConfiguration({ url }, CA).webhooks!;
    assert.deepEqual(webhook!.clientConfig, { url, caBundle: Buffer.from(CA).toString("base64") });
  });

  it("names the Service's DNS names, or the URL's host, in the serving certificate", () => {
    assert.deepEqual(
      servingHosts({ service: { namespace: "ops", name: "offsite-webhook" } }, ["127.0.0.1"]),
      ["offsite-webhook.ops.svc", "offsite-webhook.ops.svc.cluster.local", "127.0.0.1"],
    );
    assert.deepEqual(servingHosts({ url: "https://[::1]:9443/mutate-pods" }, ["::1", "localhost"]), [
      "::1",
      "localhost",
    ]);
  });
});
