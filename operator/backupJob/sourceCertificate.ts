/**
 * The source's client certificate for its target: CN = source GUID, O = site GUID, issued
 * by the OffsiteServer's CA, kept in a Secret beside the BackupJob (owned by it, so it
 * goes with the job) and issued again before a third of its life is left, when the CA or
 * the GUIDs change. The operator sends it to the agent with each job (contract/reports.ts:
 * jobRequest.credentials); no pod mounts it. An external target's certificate is the
 * user's Secret, used as it is.
 */
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import type { BackupJob } from "../../crds/definitions.ts";
import { issueCertificate, type CertificateAndKey } from "../../pki/certificates.ts";
import {
  ISSUED_FOR_ANNOTATION,
  decodeSecretKey,
  encodeSecretData,
  renewalDueAt,
  renewalReason,
} from "../agentControl/tlsSecrets.ts";
import type { ControllerContext } from "../runtime/controller.ts";
import { readOptional } from "../runtime/kubeApi.ts";
import { backupJobLabels, backupJobNames, jobOwnerReference } from "./names.ts";
import type { ResolvedTarget } from "./target.ts";

export const SOURCE_CERTIFICATE_VALIDITY_MS = 90 * 24 * 3600 * 1000;

export interface SourceCredentials {
  certificate: string;
  privateKey: string;
  /** When the operator must look again (renewal); undefined for a user's certificate. */
  renewAt?: Date;
}

export async function desiredSourceSecret(
  job: { name: string; namespace: string; uid: string },
  issuer: CertificateAndKey,
  site: string,
  source: string,
): Promise<V1Secret> {
  const certificate = await issueCertificate(issuer, {
    commonName: source,
    organizations: [site],
    usage: "client",
    validForMs: SOURCE_CERTIFICATE_VALIDITY_MS,
  });
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: {
      name: backupJobNames(job.name).sourceSecret,
      namespace: job.namespace,
      labels: { ...backupJobLabels(job.name), "offsite.dev/secret-role": "source" },
      annotations: { [ISSUED_FOR_ANNOTATION]: `${site}/${source}` },
      ownerReferences: [jobOwnerReference(job)],
    },
    data: encodeSecretData({
      "tls.crt": certificate.certificatePem,
      "tls.key": certificate.privateKeyPem,
      "ca.crt": issuer.certificatePem,
    }),
  };
}

export async function ensureSourceCredentials(
  ctx: ControllerContext,
  job: BackupJob,
  target: ResolvedTarget,
  site: string,
  source: string,
): Promise<SourceCredentials> {
  if (target.clientCertificate) return target.clientCertificate;
  const identity = { name: job.metadata.name!, namespace: job.metadata.namespace!, uid: job.metadata.uid! };
  const core = ctx.kc.makeApiClient(CoreV1Api);
  let secret = await readOptional(
    core.readNamespacedSecret({
      name: backupJobNames(identity.name).sourceSecret,
      namespace: identity.namespace,
    }),
  );
  const reason = renewalReason(
    secret,
    target.caPem,
    `${site}/${source}`,
    SOURCE_CERTIFICATE_VALIDITY_MS,
    ctx.now(),
  );
  if (reason) {
    ctx.logger.info(
      { namespace: identity.namespace, job: identity.name, reason },
      "issuing the source certificate",
    );
    secret = await ctx.applier.apply(await desiredSourceSecret(identity, target.issuer!, site, source));
  }
  return {
    certificate: decodeSecretKey(secret, "tls.crt")!,
    privateKey: decodeSecretKey(secret, "tls.key")!,
    renewAt: renewalDueAt(secret!, SOURCE_CERTIFICATE_VALIDITY_MS),
  };
}
