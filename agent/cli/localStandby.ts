/**
 * The embedded default of `offsite replicate SRC --to DIR`: a standby run in-process on
 * 127.0.0.1 with DIR as its live tree, reached over the same protocol, TLS included, as a
 * remote one, with certificates made for the run (nothing to set up). The site GUID lives in
 * DIR/.offsite/site; the pair's GUID is derived from SRC's absolute path.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createCertificateAuthority, issueCertificate } from "../../pki/certificates.ts";
import { startStandby, type RunningStandby } from "../standby/standbyServer.ts";
import { STATE_DIR } from "../standby/liveTree.ts";
import type { Endpoint } from "../client/openSession.ts";

const ONE_YEAR = 365 * 86_400_000;

export interface LocalStandby {
  standby: RunningStandby;
  endpoint: Endpoint;
  site: string;
}

export async function openLocalStandby(
  dir: string,
  source: string,
  onEvent: (event: Record<string, unknown>) => void,
): Promise<LocalStandby> {
  const root = resolve(dir);
  mkdirSync(join(root, STATE_DIR), { recursive: true, mode: 0o700 });
  const siteFile = join(root, STATE_DIR, "site");
  if (!existsSync(siteFile)) writeFileSync(siteFile, randomUUID());
  const site = readFileSync(siteFile, "utf8").trim();
  const ca = await createCertificateAuthority("offsite local standby", ONE_YEAR);
  const server = await issueCertificate(ca, {
    commonName: "localhost",
    hosts: ["127.0.0.1"],
    usage: "server",
    validForMs: ONE_YEAR,
  });
  const client = await issueCertificate(ca, {
    commonName: source,
    organizations: [site],
    usage: "client",
    validForMs: ONE_YEAR,
  });
  const standby = await startStandby({
    root,
    host: "127.0.0.1",
    port: 0,
    credentials: { ca: ca.certificatePem, cert: server.certificatePem, key: server.privateKeyPem },
    onEvent: (event) => onEvent({ ...event, side: "standby" }),
  });
  return {
    standby,
    site,
    endpoint: {
      host: "127.0.0.1",
      port: standby.port,
      credentials: { ca: ca.certificatePem, cert: client.certificatePem, key: client.privateKeyPem },
    },
  };
}
