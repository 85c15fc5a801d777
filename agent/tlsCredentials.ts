/**
 * TLS for every agent connection (PROTOCOL.md, "Security"): TLS 1.3 only, the one cipher
 * suite TLS_AES_256_GCM_SHA384, and certificates on both sides from one CA. A directory
 * holds the credentials in the layout of a Kubernetes TLS Secret: ca.crt, tls.crt, tls.key.
 * A source's client certificate names it: CN = source GUID, O = site GUID.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CERT_FILES } from "../contract/roles.ts";
import type { ConnectionOptions, PeerCertificate, TlsOptions, TLSSocket } from "node:tls";

export interface TlsCredentials {
  ca: string;
  cert: string;
  key: string;
}

/** TLS 1.3 and its one cipher suite, for every agent connection (data and control). */
export const PROTOCOL_SETTINGS = {
  minVersion: "TLSv1.3",
  maxVersion: "TLSv1.3",
  ciphersuites: "TLS_AES_256_GCM_SHA384",
} as const;

export function loadCredentials(dir: string): TlsCredentials {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), "utf8");
    } catch (error) {
      throw new Error(
        `cannot read ${join(dir, name)} (${(error as NodeJS.ErrnoException).code}); ` +
          "a credentials directory holds ca.crt, tls.crt and tls.key (create them with `offsite certs`)",
        { cause: error },
      );
    }
  };
  return { ca: read(CERT_FILES.ca), cert: read(CERT_FILES.cert), key: read(CERT_FILES.key) };
}

export function serverTlsOptions(credentials: TlsCredentials): TlsOptions {
  return {
    ...PROTOCOL_SETTINGS,
    ...credentials,
    requestCert: true,
    rejectUnauthorized: true,
  };
}

export function clientTlsOptions(credentials: TlsCredentials, host: string): ConnectionOptions {
  return {
    ...PROTOCOL_SETTINGS,
    ...credentials,
    rejectUnauthorized: true,
    servername: /^[\d.]+$|:/.test(host) ? undefined : host,
  };
}

export interface SourceIdentity {
  site: string;
  source: string;
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The site and source a verified client certificate was issued to, exactly as issued: a
 * certificate whose names break the GUID rule matches no Hello, so it is refused.
 */
export function peerIdentity(socket: TLSSocket): SourceIdentity | undefined {
  const certificate: PeerCertificate = socket.getPeerCertificate();
  const source = first(certificate.subject?.CN);
  const site = first(certificate.subject?.O);
  return source && site ? { site, source } : undefined;
}
