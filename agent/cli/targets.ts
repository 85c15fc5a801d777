/**
 * What `--to` / `--from` name and who the client is: a local directory or a receiver
 * address, a source's derived GUID, a certificate's identity. Kept apart from the local
 * store itself so that a push to a remote receiver loads no certificate-issuing code.
 */
import { createHash, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

/** A value for --to/--from is a local directory when it is a path rather than HOST:PORT. */
export function isLocalDirectory(value: string): boolean {
  return value.includes("/") || value.startsWith(".") || existsSync(value);
}

/** A stable GUID for a source directory (name-based, from its absolute path). */
export function sourceGuidFor(path: string): string {
  const hex = createHash("sha256").update(resolve(path)).digest("hex");
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** The site (O) and source (CN) a client certificate was issued for. */
export function identityOfCertificate(pem: string): { site?: string; source?: string } {
  const subject = new X509Certificate(pem).subject;
  const field = (name: string) =>
    subject
      .split("\n")
      .find((line) => line.startsWith(`${name}=`))
      ?.slice(name.length + 1);
  const site = field("O");
  const source = field("CN");
  return { ...(site ? { site } : {}), ...(source ? { source } : {}) };
}
