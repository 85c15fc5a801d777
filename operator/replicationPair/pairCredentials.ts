/**
 * A pair's own CA and the certificates of its two agents for the replication session,
 * kept in one Secret beside the pair (owned by it): the primary's client certificate
 * (CN = the pair's GUID, O = the site GUID, as the standby checks it) and the standby's
 * serving certificate for its Service's names. Each pair has a CA of its own, so an agent
 * of another pair can never pass for this one's standby. The operator sends them to the
 * agents with each role request (contract/reports.ts: replicationRequest); no pod mounts
 * them. They are issued again (CA and all) when missing, unreadable, issued for other
 * GUIDs or names, or within a third of their life of expiring.
 */
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import { certificateNotAfter, createCertificateAuthority, issueCertificate } from "../../pki/certificates.ts";
import { ISSUED_FOR_ANNOTATION, decodeSecretKey, encodeSecretData } from "../agentControl/tlsSecrets.ts";
import type { ControllerContext } from "../runtime/controller.ts";
import { readOptional } from "../runtime/kubeApi.ts";
import { pairLabels, pairNames, pairOwnerReference } from "./names.ts";

export const PAIR_CERTIFICATE_VALIDITY_MS = 90 * 24 * 3600 * 1000;

export interface PairCredentials {
  ca: string;
  primary: { certificate: string; privateKey: string };
  standby: { certificate: string; privateKey: string };
  /** When the operator must look again. */
  renewAt: Date;
}

const KEYS = ["ca.crt", "ca.key", "primary.crt", "primary.key", "standby.crt", "standby.key"] as const;

/** The names the standby's certificate is valid for: its Service's, in every form a resolver takes. */
export function standbyHosts(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

export async function ensurePairCredentials(
  ctx: ControllerContext,
  pair: { name: string; namespace: string; uid: string },
  site: string,
  pairGuid: string,
): Promise<PairCredentials> {
  const names = pairNames(pair.name);
  const issuedFor = `${site}/${pairGuid}/${names.standbyService}.${pair.namespace}`;
  const core = ctx.kc.makeApiClient(CoreV1Api);
  let secret = await readOptional(
    core.readNamespacedSecret({ name: names.secret, namespace: pair.namespace }),
  );
  const reason = renewalReason(secret, issuedFor, ctx.now());
  if (reason) {
    ctx.logger.info(
      { namespace: pair.namespace, pair: pair.name, reason },
      "issuing the pair's certificates",
    );
    secret = await ctx.applier.apply(await desiredPairSecret(pair, site, pairGuid, issuedFor));
  }
  const value = (key: (typeof KEYS)[number]) => decodeSecretKey(secret, key)!;
  return {
    ca: value("ca.crt"),
    primary: { certificate: value("primary.crt"), privateKey: value("primary.key") },
    standby: { certificate: value("standby.crt"), privateKey: value("standby.key") },
    renewAt: new Date(certificateNotAfter(value("primary.crt")).getTime() - PAIR_CERTIFICATE_VALIDITY_MS / 3),
  };
}

function renewalReason(secret: V1Secret | undefined, issuedFor: string, now: Date): string | undefined {
  if (!secret) return "Missing";
  if (KEYS.some((key) => !decodeSecretKey(secret, key))) return "Unreadable";
  if (secret.metadata?.annotations?.[ISSUED_FOR_ANNOTATION] !== issuedFor) return "SubjectChanged";
  try {
    for (const key of ["primary.crt", "standby.crt"] as const) {
      const left = certificateNotAfter(decodeSecretKey(secret, key)!).getTime() - now.getTime();
      if (left < PAIR_CERTIFICATE_VALIDITY_MS / 3) return "Expiring";
    }
  } catch {
    return "Unreadable";
  }
  return undefined;
}

async function desiredPairSecret(
  pair: { name: string; namespace: string; uid: string },
  site: string,
  pairGuid: string,
  issuedFor: string,
): Promise<V1Secret> {
  const names = pairNames(pair.name);
  const ca = await createCertificateAuthority(
    `offsite replication pair ${pair.namespace}/${pair.name}`,
    10 * PAIR_CERTIFICATE_VALIDITY_MS,
  );
  const primary = await issueCertificate(ca, {
    commonName: pairGuid,
    organizations: [site],
    usage: "client",
    validForMs: PAIR_CERTIFICATE_VALIDITY_MS,
  });
  const standby = await issueCertificate(ca, {
    commonName: names.standbyService,
    hosts: standbyHosts(names.standbyService, pair.namespace),
    usage: "server",
    validForMs: PAIR_CERTIFICATE_VALIDITY_MS,
  });
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name: names.secret,
      namespace: pair.namespace,
      labels: { ...pairLabels(pair.name), "offsite.dev/secret-role": "replication" },
      annotations: { [ISSUED_FOR_ANNOTATION]: issuedFor },
      ownerReferences: [pairOwnerReference(pair)],
    },
    data: encodeSecretData({
      "ca.crt": ca.certificatePem,
      "ca.key": ca.privateKeyPem,
      "primary.crt": primary.certificatePem,
      "primary.key": primary.privateKeyPem,
      "standby.crt": standby.certificatePem,
      "standby.key": standby.privateKeyPem,
    }),
  };
}
