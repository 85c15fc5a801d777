/**
 * The operator's own CA, kept in a Secret in the operator's namespace. It signs only what
 * the control plane speaks with: the operator's control client certificate, the agents'
 * control serving certificates and the webhook's serving certificate. It never signs a
 * source certificate (those come from each OffsiteServer's CA), so a data-plane identity
 * can never call an agent's control endpoint (contract/reports.ts, OPERATOR_CONTROL_IDENTITY).
 *
 * Every replica loads it at start-up; the first one creates it. Two replicas creating it
 * at once is settled by the API server (one create wins with 201, the other gets 409 and
 * reads the winner's), so all replicas sign with the same CA.
 */
import { CoreV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { ApiException } from "@kubernetes/client-node";
import { createCertificateAuthority, type CertificateAndKey } from "../../pki/certificates.ts";
import { readOptional } from "../runtime/kubeApi.ts";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../runtime/ownership.ts";
import { OPERATOR_CA_SECRET } from "./names.ts";
import { decodeSecretKey, encodeSecretData } from "./tlsSecrets.ts";

const CA_VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;

function caOf(secret: V1Secret): CertificateAndKey {
  const certificatePem = decodeSecretKey(secret, "tls.crt") ?? "";
  const privateKeyPem = decodeSecretKey(secret, "tls.key") ?? "";
  if (!certificatePem.includes("BEGIN CERTIFICATE") || !privateKeyPem.includes("PRIVATE KEY"))
    throw new Error(
      `the Secret ${secret.metadata?.namespace}/${OPERATOR_CA_SECRET} has no usable tls.crt/tls.key; ` +
        "delete it and restart the operator to create a new CA (agents pick up the new one within a minute)",
    );
  return { certificatePem, privateKeyPem };
}

export async function loadOperatorCa(kc: KubeConfig, namespace: string): Promise<CertificateAndKey> {
  const core = kc.makeApiClient(CoreV1Api);
  const existing = await readOptional(core.readNamespacedSecret({ name: OPERATOR_CA_SECRET, namespace }));
  if (existing) return caOf(existing);
  const ca = await createCertificateAuthority("offsite operator CA", CA_VALIDITY_MS);
  try {
    await core.createNamespacedSecret({
      namespace,
      body: {
        apiVersion: "v1",
        kind: "Secret",
        type: "kubernetes.io/tls",
        metadata: {
          name: OPERATOR_CA_SECRET,
          namespace,
          labels: { [MANAGED_BY_LABEL]: MANAGED_BY, "offsite.dev/secret-role": "operator-ca" },
        },
        data: encodeSecretData({ "tls.crt": ca.certificatePem, "tls.key": ca.privateKeyPem }),
      },
    });
    return ca;
  } catch (error) {
    if (!(error instanceof ApiException && error.code === 409)) throw error;
    return caOf(await core.readNamespacedSecret({ name: OPERATOR_CA_SECRET, namespace }));
  }
}
