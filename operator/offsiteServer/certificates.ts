/**
 * The TLS material of an OffsiteServer, in Secrets:
 *
 *   <name>-ca           kubernetes.io/tls  tls.crt, tls.key          the server's own CA (10 years)
 *   <name>-tls          kubernetes.io/tls  tls.crt, tls.key, ca.crt  the receiver's serving certificate
 *   <name>-src-<hash>   kubernetes.io/tls  tls.crt, tls.key, ca.crt  one client certificate per source
 *
 * A source's certificate binds it to its GUIDs: subject CN = source GUID, O = site GUID.
 * The receiver lets a connection write only under <site>/<source> of its certificate.
 * Serving certificates are reissued when they near expiry (spec.tls.renewBefore), when
 * their host names change, or when they were not signed by the current CA.
 */
import { createHash } from "node:crypto";
import type { V1Secret } from "@kubernetes/client-node";
import {
  certificateNotAfter,
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import type { ServerIdentity } from "./desiredState.ts";
import { offsiteServerLabels, offsiteServerNames, serverOwnerReference } from "./names.ts";

export const CA_VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;
const HOSTS_ANNOTATION = "offsite.dev/hosts";

const decode = (secret: V1Secret | undefined, key: string) =>
  secret?.data?.[key] ? Buffer.from(secret.data[key], "base64").toString("utf8") : undefined;
const encode = (text: string) => Buffer.from(text).toString("base64");

/** The CA kept in `<name>-ca`, if it is there and readable. */
export function caFromSecret(secret: V1Secret | undefined): CertificateAndKey | undefined {
  const certificatePem = decode(secret, "tls.crt");
  const privateKeyPem = decode(secret, "tls.key");
  if (!certificatePem || !privateKeyPem) return undefined;
  try {
    certificateNotAfter(certificatePem);
  } catch {
    return undefined;
  }
  return { certificatePem, privateKeyPem };
}

export type RenewalReason = "Missing" | "Expiring" | "HostsChanged" | "CaChanged" | "Unreadable";

/** Whether the serving certificate must be (re)issued, and why; pure. */
export function servingCertificateRenewal(
  secret: V1Secret | undefined,
  ca: CertificateAndKey,
  hosts: string[],
  now: Date,
  renewBeforeMs: number,
): RenewalReason | undefined {
  const certificatePem = decode(secret, "tls.crt");
  if (!secret || !certificatePem || !decode(secret, "tls.key")) return "Missing";
  let notAfter: Date;
  try {
    notAfter = certificateNotAfter(certificatePem);
  } catch {
    return "Unreadable";
  }
  if (decode(secret, "ca.crt") !== ca.certificatePem) return "CaChanged";
  if (secret.metadata?.annotations?.[HOSTS_ANNOTATION] !== hosts.join(",")) return "HostsChanged";
  if (notAfter.getTime() - now.getTime() <= renewBeforeMs) return "Expiring";
  return undefined;
}

/** When the serving certificate in `secret` is due for renewal. */
export function renewalDueAt(secret: V1Secret, renewBeforeMs: number): Date {
  return new Date(certificateNotAfter(decode(secret, "tls.crt")!).getTime() - renewBeforeMs);
}

/** A digest of the serving certificate, put on the pod template so a new one rolls the pod. */
export function tlsChecksum(secret: V1Secret | undefined): string {
  return createHash("sha256")
    .update(decode(secret, "tls.crt") ?? "")
    .digest("hex")
    .slice(0, 16);
}

function tlsSecret(
  server: ServerIdentity,
  name: string,
  role: string,
  data: Record<string, string>,
  annotations: Record<string, string> = {},
): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: {
      name,
      namespace: server.namespace,
      labels: { ...offsiteServerLabels(server.name), "offsite.dev/secret-role": role },
      annotations,
      ownerReferences: [serverOwnerReference(server)],
    },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, encode(v)])),
  };
}

export async function newCaSecret(
  server: ServerIdentity,
): Promise<{ secret: V1Secret; ca: CertificateAndKey }> {
  const ca = await createCertificateAuthority(
    `offsite ${server.namespace}/${server.name} CA`,
    CA_VALIDITY_MS,
  );
  const secret = tlsSecret(server, offsiteServerNames(server.name).caSecret, "ca", {
    "tls.crt": ca.certificatePem,
    "tls.key": ca.privateKeyPem,
  });
  return { secret, ca };
}

export async function newServingSecret(
  server: ServerIdentity,
  ca: CertificateAndKey,
  hosts: string[],
  validForMs: number,
): Promise<V1Secret> {
  const certificate = await issueCertificate(ca, {
    commonName: hosts[2] ?? server.name,
    hosts,
    usage: "server",
    validForMs,
  });
  return tlsSecret(
    server,
    offsiteServerNames(server.name).serverTlsSecret,
    "server",
    {
      "tls.crt": certificate.certificatePem,
      "tls.key": certificate.privateKeyPem,
      "ca.crt": ca.certificatePem,
    },
    { [HOSTS_ANNOTATION]: hosts.join(",") },
  );
}

/**
 * A client certificate for one source of this server (used by the BackupJob and
 * ReplicationPair controllers): CN = source GUID, O = site GUID.
 */
export async function newSourceSecret(
  server: ServerIdentity,
  ca: CertificateAndKey,
  site: string,
  source: string,
  validForMs: number,
): Promise<V1Secret> {
  const certificate = await issueCertificate(ca, {
    commonName: source,
    organizations: [site],
    usage: "client",
    validForMs,
  });
  return tlsSecret(
    server,
    offsiteServerNames(server.name).sourceTlsSecret(site, source),
    "source",
    {
      "tls.crt": certificate.certificatePem,
      "tls.key": certificate.privateKeyPem,
      "ca.crt": ca.certificatePem,
    },
    { "offsite.dev/site": site, "offsite.dev/source": source },
  );
}
