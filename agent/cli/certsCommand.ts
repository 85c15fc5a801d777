/**
 * `offsite certs`: a CA and certificates for running the agent without Kubernetes (in a
 * cluster the operator issues them). Writes one directory per party in the layout of a
 * Kubernetes TLS Secret (ca.crt, tls.crt, tls.key), ready for --certs.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";

const YEAR = 365 * 86_400_000;

export interface CertsOptions {
  out: string;
  hosts: string[];
  site?: string;
  sources: string[];
}

export interface CertsResult {
  ca: string;
  receiver: string;
  site: string;
  sources: { source: string; dir: string }[];
}

export async function writeCertificates(options: CertsOptions): Promise<CertsResult> {
  mkdirSync(options.out, { recursive: true });
  const caDir = join(options.out, "ca");
  let ca: CertificateAndKey;
  if (existsSync(join(caDir, "tls.key"))) {
    ca = {
      certificatePem: readFileSync(join(caDir, "tls.crt"), "utf8"),
      privateKeyPem: readFileSync(join(caDir, "tls.key"), "utf8"),
    };
  } else {
    ca = await createCertificateAuthority("offsite standalone CA", 10 * YEAR);
    writeParty(caDir, ca, ca);
  }
  const receiver = await issueCertificate(ca, {
    commonName: options.hosts[0] ?? "localhost",
    hosts: options.hosts.length > 0 ? options.hosts : ["localhost", "127.0.0.1"],
    usage: "server",
    validForMs: YEAR,
  });
  const receiverDir = join(options.out, "receiver");
  writeParty(receiverDir, ca, receiver);
  const site = options.site ?? randomUUID();
  const sources: CertsResult["sources"] = [];
  for (const source of options.sources.length > 0 ? options.sources : [randomUUID()]) {
    const client = await issueCertificate(ca, {
      commonName: source,
      organizations: [site],
      usage: "client",
      validForMs: YEAR,
    });
    const dir = join(options.out, `source-${source}`);
    writeParty(dir, ca, client);
    sources.push({ source, dir });
  }
  return { ca: caDir, receiver: receiverDir, site, sources };
}

function writeParty(dir: string, ca: CertificateAndKey, party: CertificateAndKey): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "ca.crt"), ca.certificatePem);
  writeFileSync(join(dir, "tls.crt"), party.certificatePem);
  writeFileSync(join(dir, "tls.key"), party.privateKeyPem, { mode: 0o600 });
}
