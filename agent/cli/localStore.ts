/**
 * The embedded default: `--to DIR` / `--from DIR` names a local directory instead of a
 * receiver. The CLI then runs a receiver in-process on 127.0.0.1 with DIR as its root, and
 * the same protocol, TLS included, carries the job — one code path, nothing to set up.
 * The local CA and the site GUID live in DIR/.offsite/; a source's GUID is derived from its
 * absolute path, so the same directory always maps to the same backups.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import { isGuid } from "../../contract/guid.ts";
import { startReceiver, type RunningReceiver } from "../receiver/receiverServer.ts";
import type { TlsCredentials } from "../tlsCredentials.ts";

const TEN_YEARS = 10 * 365 * 86_400_000;

export interface LocalStore {
  root: string;
  site: string;
  receiver: RunningReceiver;
  serverCredentials: TlsCredentials;
  clientCredentials(source: string): Promise<TlsCredentials>;
  /** Sources that have versions here. */
  sources(): string[];
  close(): Promise<void>;
}

export async function openLocalStore(dir: string): Promise<LocalStore> {
  const root = resolve(dir);
  const state = join(root, ".offsite");
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const siteFile = join(state, "site");
  if (!existsSync(siteFile)) writeFileSync(siteFile, randomUUID());
  const site = readFileSync(siteFile, "utf8").trim();
  const ca = await loadOrCreateCa(state);
  const server = await issueCertificate(ca, {
    commonName: "localhost",
    hosts: ["localhost", "127.0.0.1"],
    usage: "server",
    validForMs: TEN_YEARS,
  });
  const serverCredentials = { ca: ca.certificatePem, cert: server.certificatePem, key: server.privateKeyPem };
  const receiver = await startReceiver({ root, host: "127.0.0.1", port: 0, credentials: serverCredentials });
  return {
    root,
    site,
    receiver,
    serverCredentials,
    clientCredentials: async (source) => {
      const client = await issueCertificate(ca, {
        commonName: source,
        organizations: [site],
        usage: "client",
        validForMs: 86_400_000,
      });
      return { ca: ca.certificatePem, cert: client.certificatePem, key: client.privateKeyPem };
    },
    sources: () =>
      existsSync(join(root, site)) ? readdirSync(join(root, site)).filter((name) => isGuid(name)) : [],
    close: () => receiver.close(),
  };
}

async function loadOrCreateCa(state: string): Promise<CertificateAndKey> {
  const certificate = join(state, "ca.crt");
  const key = join(state, "ca.key");
  if (existsSync(certificate) && existsSync(key)) {
    return { certificatePem: readFileSync(certificate, "utf8"), privateKeyPem: readFileSync(key, "utf8") };
  }
  const ca = await createCertificateAuthority("offsite local store", TEN_YEARS);
  writeFileSync(key, ca.privateKeyPem, { mode: 0o600 });
  writeFileSync(certificate, ca.certificatePem);
  return ca;
}
