/**
 * Reading and renewing the TLS Secrets the operator issues for agents (kubernetes.io/tls
 * with tls.crt, tls.key and ca.crt). One rule for all of them: a certificate is issued
 * again when it is missing or unreadable, when it was not signed by the current CA (its
 * ca.crt differs, or its signature does not verify: an edited Secret), when
 * it was issued for other names, or when less than a third of its life is left.
 */
import { X509Certificate } from "node:crypto";
import type { V1Secret } from "@kubernetes/client-node";
import { certificateNotAfter } from "../../pki/certificates.ts";

/** The names a certificate was issued for, as recorded on its Secret. */
export const ISSUED_FOR_ANNOTATION = "offsite.dev/issued-for";

export type RenewalReason = "Missing" | "Unreadable" | "CaChanged" | "SubjectChanged" | "Expiring";

export const decodeSecretKey = (secret: V1Secret | undefined, key: string): string | undefined =>
  secret?.data?.[key] ? Buffer.from(secret.data[key], "base64").toString("utf8") : undefined;

export const encodeSecretData = (data: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]));

/** Why the Secret's certificate must be issued again (undefined: keep it); pure. */
export function renewalReason(
  secret: V1Secret | undefined,
  caPem: string,
  issuedFor: string,
  validForMs: number,
  now: Date,
): RenewalReason | undefined {
  const certificatePem = decodeSecretKey(secret, "tls.crt");
  if (!secret || !certificatePem || !decodeSecretKey(secret, "tls.key")) return "Missing";
  let notAfter: Date;
  try {
    notAfter = certificateNotAfter(certificatePem);
  } catch {
    return "Unreadable";
  }
  if (decodeSecretKey(secret, "ca.crt") !== caPem || !signedBy(certificatePem, caPem)) return "CaChanged";
  if (secret.metadata?.annotations?.[ISSUED_FOR_ANNOTATION] !== issuedFor) return "SubjectChanged";
  if (notAfter.getTime() - now.getTime() <= validForMs / 3) return "Expiring";
  return undefined;
}

/** Whether the CA signed the certificate: a Secret edited to hold another CA's certificate is issued again. */
function signedBy(certificatePem: string, caPem: string): boolean {
  try {
    return new X509Certificate(certificatePem).verify(new X509Certificate(caPem).publicKey);
  } catch {
    return false;
  }
}

/** When the certificate in `secret` is next due for renewal (a third of its life before expiry). */
export function renewalDueAt(secret: V1Secret, validForMs: number): Date {
  return new Date(certificateNotAfter(decodeSecretKey(secret, "tls.crt")!).getTime() - validForMs / 3);
}
