/**
 * What the control-channel tests share: the certificates of both channels (the operator's
 * CA with the operator's and the agents' control certificates; a target CA with a
 * receiver and a source), credential directories laid out as the kubelet mounts a Secret
 * (files linked through a `..data` symlink, swapped atomically to update), `offsite agent`
 * as a real process, and raw HTTPS requests for the hostile cases.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join, resolve } from "node:path";
import { connect } from "node:tls";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import {
  issueAgentControlCertificate,
  issueOperatorControlCertificate,
} from "../../pki/controlIdentities.ts";
import { AGENT_CONTROL_COMMON_NAME } from "../../contract/reports.ts";
import type { ControlClientOptions } from "../../operator/agentControl/controlClient.ts";

import { freePort } from "../cluster/controlPlane.ts";
import { listeningEvent } from "./agentProcesses.ts";

const MAIN = resolve(import.meta.dirname, "../../agent/main.mjs");
const DAY = 86_400_000;

export const SITE = "shop-eu";
export const SOURCE = "orders-db";

export interface ControlPki {
  operatorCa: CertificateAndKey;
  operator: CertificateAndKey;
  agent: CertificateAndKey;
  targetCa: CertificateAndKey;
  receiver: CertificateAndKey;
  source: CertificateAndKey;
}

export async function makeControlPki(): Promise<ControlPki> {
  const operatorCa = await createCertificateAuthority("offsite operator CA", DAY);
  const targetCa = await createCertificateAuthority("offsite server CA", DAY);
  return {
    operatorCa,
    operator: await issueOperatorControlCertificate(operatorCa, DAY),
    agent: await issueAgentControlCertificate(operatorCa, DAY),
    targetCa,
    receiver: await issueCertificate(targetCa, {
      commonName: "localhost",
      hosts: ["localhost", "127.0.0.1"],
      usage: "server",
      validForMs: DAY,
    }),
    source: await issueCertificate(targetCa, {
      commonName: SOURCE,
      organizations: [SITE],
      usage: "client",
      validForMs: DAY,
    }),
  };
}

/** The operator's options for controlClient.ts. */
export function operatorOptions(pki: ControlPki): ControlClientOptions {
  return {
    operatorCredentials: { cert: pki.operator.certificatePem, key: pki.operator.privateKeyPem },
    caPem: pki.operatorCa.certificatePem,
    expectCommonName: AGENT_CONTROL_COMMON_NAME,
  };
}

let generation = 0;
/**
 * Writes ca.crt, tls.crt and tls.key into `dir` as the kubelet does: into a fresh
 * timestamped directory, then `..data` is swapped to it in one rename, and the names
 * link through `..data`. Calling it again is a Secret update.
 */
export function writeSecretDir(dir: string, ca: CertificateAndKey, party: CertificateAndKey): void {
  mkdirSync(dir, { recursive: true });
  const version = `..${Date.now()}_${generation++}`;
  mkdirSync(join(dir, version));
  writeFileSync(join(dir, version, "ca.crt"), ca.certificatePem);
  writeFileSync(join(dir, version, "tls.crt"), party.certificatePem);
  writeFileSync(join(dir, version, "tls.key"), party.privateKeyPem, { mode: 0o600 });
  rmSync(join(dir, "..data_tmp"), { force: true });
  symlinkSync(version, join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  for (const name of ["ca.crt", "tls.crt", "tls.key"]) {
    rmSync(join(dir, name), { force: true });
    symlinkSync(join("..data", name), join(dir, name));
  }
}

/** Plain files, as `offsite receive --certs` takes them. */
export function writeCertsDir(dir: string, ca: CertificateAndKey, party: CertificateAndKey): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "ca.crt"), ca.certificatePem);
  writeFileSync(join(dir, "tls.crt"), party.certificatePem);
  writeFileSync(join(dir, "tls.key"), party.privateKeyPem, { mode: 0o600 });
  return dir;
}

export { freePort };

export interface AgentProcess {
  controlPort: number;
  healthPort: number | undefined;
  child: ChildProcess;
  events: Record<string, unknown>[];
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** `offsite agent` on 127.0.0.1, a free control port, and a health port unless `health` is false. */
export async function startAgentProcess(
  controlCerts: string,
  extra: string[] = [],
  health = true,
): Promise<AgentProcess> {
  const healthPort = health ? await freePort() : undefined;
  const child = spawn(
    process.execPath,
    [
      MAIN,
      "agent",
      "--control-certs",
      controlCerts,
      "--host",
      "127.0.0.1",
      "--control-port",
      "0",
      ...(healthPort ? ["--health-port", String(healthPort)] : []),
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const events: Record<string, unknown>[] = [];
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const controlPort = (await listeningEvent(child, events, "the agent")).controlPort as number;
  return {
    controlPort,
    healthPort,
    child,
    events,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited;
    },
  };
}

/** GET over plain HTTP (the probes). */
export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveAnswer, reject) => {
    const request = httpRequest({ host: "127.0.0.1", port, path }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolveAnswer({ status: response.statusCode!, body }));
    });
    request.on("error", reject);
    request.end();
  });
}

/**
 * One HTTPS request to a control port as any client: `client` is its certificate (none
 * when undefined); the server's certificate is checked against `ca` but not by name.
 */
export function controlRequest(
  port: number,
  ca: string,
  client: CertificateAndKey | undefined,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; body: string; json: unknown }> {
  return new Promise((resolveAnswer, reject) => {
    const request = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: false,
        ca,
        ...(client ? { cert: client.certificatePem, key: client.privateKeyPem } : {}),
        checkServerIdentity: () => undefined,
        headers: body !== undefined ? { "content-type": "application/json" } : {},
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolveAnswer({ status: response.statusCode!, body: text, json });
        });
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

/** The SHA-256 fingerprint of the certificate a control port serves now (a new connection). */
export async function servedFingerprint(
  port: number,
  client: CertificateAndKey,
  ca: string,
): Promise<string> {
  const socket = connect({
    host: "127.0.0.1",
    port,
    ca,
    cert: client.certificatePem,
    key: client.privateKeyPem,
    checkServerIdentity: () => undefined,
  });
  try {
    await once(socket, "secureConnect");
    return socket.getPeerCertificate().fingerprint256;
  } finally {
    socket.destroy();
  }
}
