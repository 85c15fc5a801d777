/**
 * The MutatingWebhookConfiguration that sends pod creations to the injection webhook, as
 * a pure function: every replica applies it at start-up (server-side apply), and all of
 * them write the same object, because the caBundle is the operator CA's certificate,
 * which every replica loads from the same Secret (agentControl/operatorCa.ts), not the
 * serving certificate each replica issues itself.
 *
 * Safety lives in this object: only pods labelled offsite.dev/inject=true are ever sent
 * (objectSelector), failurePolicy Ignore and a 5 s timeout mean an operator that is down
 * or slow never stops a pod from being created (it starts without the agent), and
 * reinvocationPolicy Never with sideEffects None keeps the webhook a plain, one-shot
 * mutation of the Pod being created.
 */
import type { V1MutatingWebhookConfiguration } from "@kubernetes/client-node";
import { INJECT_LABEL, INJECT_LABEL_VALUE } from "../agentControl/names.ts";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../runtime/ownership.ts";

export const WEBHOOK_CONFIGURATION = "offsite-agent-injector";
/** The webhook's name inside the configuration (a fully qualified name, as the API requires). */
export const WEBHOOK_NAME = "agent-injector.offsite.dev";
export const WEBHOOK_PATH = "/mutate-pods";
/** The port of the webhook Service (helm/offsite: `<release>-webhook`, to the pods' webhook port). */
export const WEBHOOK_SERVICE_PORT = 443;
export const WEBHOOK_TIMEOUT_SECONDS = 5;

/** Where the API server reaches the webhook: the operator's Service, or a URL (an operator outside the cluster). */
export type WebhookEndpoint = { url: string } | { service: { namespace: string; name: string } };

/** The DNS names the serving certificate must carry for `endpoint` (plus any extra hosts). */
export function servingHosts(endpoint: WebhookEndpoint, extraHosts: readonly string[] = []): string[] {
  const hosts =
    "url" in endpoint
      ? [new URL(endpoint.url).hostname.replace(/^\[(.*)\]$/, "$1")]
      : [
          `${endpoint.service.name}.${endpoint.service.namespace}.svc`,
          `${endpoint.service.name}.${endpoint.service.namespace}.svc.cluster.local`,
        ];
  return [...new Set([...hosts, ...extraHosts])];
}

export function desiredWebhookConfiguration(
  endpoint: WebhookEndpoint,
  caCertificatePem: string,
): V1MutatingWebhookConfiguration {
  const clientConfig =
    "url" in endpoint
      ? { url: endpoint.url }
      : { service: { ...endpoint.service, path: WEBHOOK_PATH, port: WEBHOOK_SERVICE_PORT } };
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: {
      name: WEBHOOK_CONFIGURATION,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY, "app.kubernetes.io/part-of": "offsite" },
    },
    webhooks: [
      {
        name: WEBHOOK_NAME,
        admissionReviewVersions: ["v1"],
        clientConfig: { ...clientConfig, caBundle: Buffer.from(caCertificatePem, "utf8").toString("base64") },
        rules: [
          {
            operations: ["CREATE"],
            apiGroups: [""],
            apiVersions: ["v1"],
            resources: ["pods"],
            scope: "Namespaced",
          },
        ],
        objectSelector: { matchLabels: { [INJECT_LABEL]: INJECT_LABEL_VALUE } },
        matchPolicy: "Equivalent",
        failurePolicy: "Ignore",
        sideEffects: "None",
        timeoutSeconds: WEBHOOK_TIMEOUT_SECONDS,
        reinvocationPolicy: "Never",
      },
    ],
  };
}
