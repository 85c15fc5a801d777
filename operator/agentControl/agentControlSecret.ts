/**
 * The control Secret of a namespace (names.ts, AGENT_CONTROL_SECRET): what every agent
 * pod the operator deploys there mounts to serve its control endpoint — the agents'
 * serving certificate (CN offsite-agent, from the operator's CA) and the operator's CA,
 * the one its client certificate must chain to. One per namespace, so a sidecar injected
 * before any BackupJob reconciled, or into a pod several jobs select, mounts the same one.
 *
 * Not owned by any one object (several jobs share it); labelled as the operator's, and
 * renewed by whichever reconcile needs it next.
 */
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import { AGENT_CONTROL_COMMON_NAME } from "../../contract/reports.ts";
import type { CertificateAndKey } from "../../pki/certificates.ts";
import { issueAgentControlCertificate } from "../../pki/controlIdentities.ts";
import type { ControllerContext } from "../runtime/controller.ts";
import { readOptional } from "../runtime/kubeApi.ts";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../runtime/ownership.ts";
import { AGENT_CONTROL_SECRET } from "./names.ts";
import { ISSUED_FOR_ANNOTATION, encodeSecretData, renewalDueAt, renewalReason } from "./tlsSecrets.ts";

export const AGENT_CONTROL_VALIDITY_MS = 365 * 24 * 3600 * 1000;

export async function desiredAgentControlSecret(
  namespace: string,
  operatorCa: CertificateAndKey,
): Promise<V1Secret> {
  const certificate = await issueAgentControlCertificate(operatorCa, AGENT_CONTROL_VALIDITY_MS);
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: {
      name: AGENT_CONTROL_SECRET,
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY, "offsite.dev/secret-role": "agent-control" },
      annotations: { [ISSUED_FOR_ANNOTATION]: AGENT_CONTROL_COMMON_NAME },
    },
    data: encodeSecretData({
      "tls.crt": certificate.certificatePem,
      "tls.key": certificate.privateKeyPem,
      "ca.crt": operatorCa.certificatePem,
    }),
  };
}

/**
 * Makes sure the namespace's control Secret holds a current certificate; returns when it
 * is next due. Read from the API server (not a cache): a miss would re-issue it.
 */
export async function ensureAgentControlSecret(ctx: ControllerContext, namespace: string): Promise<Date> {
  const core = ctx.kc.makeApiClient(CoreV1Api);
  let secret = await readOptional(core.readNamespacedSecret({ name: AGENT_CONTROL_SECRET, namespace }));
  const reason = renewalReason(
    secret,
    ctx.operatorCa.certificatePem,
    AGENT_CONTROL_COMMON_NAME,
    AGENT_CONTROL_VALIDITY_MS,
    ctx.now(),
  );
  if (reason) {
    ctx.logger.info({ namespace, reason }, "issuing the agents' control certificate");
    secret = await ctx.applier.apply(await desiredAgentControlSecret(namespace, ctx.operatorCa));
  }
  return renewalDueAt(secret!, AGENT_CONTROL_VALIDITY_MS);
}
