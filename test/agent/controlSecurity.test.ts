/**
 * Who may call an agent's control endpoint, and how it lives with its credentials: the
 * real `offsite agent` on loopback. Only the operator's certificate (chain to the
 * operator's CA, subject exactly CN=O=offsite-operator) gets an answer; requests that
 * break the contract are named field by field; credentials that are missing at start,
 * broken, or rotated never stop the process, and new connections use what is there now.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate } from "../../pki/certificates.ts";
import {
  issueAgentControlCertificate,
  issueOperatorControlCertificate,
} from "../../pki/controlIdentities.ts";
import type { ControlError } from "../../operator/agentControl/controlClient.ts";
import { attachJob, runJob } from "../../operator/agentControl/controlClient.ts";
import type { JobRequest } from "../../contract/reports.ts";
import {
  type AgentProcess,
  controlRequest,
  type ControlPki,
  httpGet,
  makeControlPki,
  operatorOptions,
  servedFingerprint,
  SITE,
  SOURCE,
  startAgentProcess,
  writeSecretDir,
} from "./controlSupport.ts";

const DAY = 86_400_000;

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > until) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

describe("the agent's control endpoint", () => {
  const work = mkdtempSync(join(tmpdir(), "offsite-control-security-"));
  let pki: ControlPki;
  let agent: AgentProcess;
  let late: AgentProcess;
  const lateCerts = join(work, "late-control");

  const validRequest = (): JobRequest => ({
    jobId: "r1",
    mode: "push",
    site: SITE,
    source: SOURCE,
    path: work,
    target: { endpoint: "127.0.0.1:1", caCertificate: pki.targetCa.certificatePem },
    credentials: { certificate: pki.source.certificatePem, privateKey: pki.source.privateKeyPem },
    filters: { include: [], exclude: [] },
    contentFirewall: {
      enabled: false,
      blockExecutables: true,
      blockScripts: true,
      blockPatterns: [],
      allowPatterns: [],
    },
    checksum: false,
    deadlineMs: 1000,
  });
  const asOperator = (method: string, path: string, body?: string) =>
    controlRequest(agent.controlPort, pki.operatorCa.certificatePem, pki.operator, method, path, body);

  before(async () => {
    pki = await makeControlPki();
    const certs = join(work, "control");
    writeSecretDir(certs, pki.operatorCa, pki.agent);
    [agent, late] = await Promise.all([startAgentProcess(certs), startAgentProcess(lateCerts)]);
  });

  after(async () => {
    const codes = await Promise.all([agent?.stop(), late?.stop()]);
    rmSync(work, { recursive: true, force: true });
    assert.deepEqual(codes, [0, 0]);
  });

  describe("refuses every caller but the operator", () => {
    it("in TLS: no client certificate, a source's (the target's CA), another CA's operator look-alike", async () => {
      const foreignCa = await createCertificateAuthority("someone else's CA", DAY);
      const lookAlike = await issueOperatorControlCertificate(foreignCa, DAY);
      for (const client of [undefined, pki.source, lookAlike])
        await assert.rejects(
          controlRequest(agent.controlPort, pki.operatorCa.certificatePem, client, "GET", "/v1/jobs/x"),
          (error: NodeJS.ErrnoException) => typeof error.code === "string",
        );
    });

    it("with 403: the operator CA's certificates of any other subject", async () => {
      const ca = pki.operatorCa;
      const subjects = [
        await issueCertificate(ca, {
          commonName: SOURCE,
          organizations: [SITE],
          usage: "client",
          validForMs: DAY,
        }),
        await issueCertificate(ca, {
          commonName: "offsite-operator",
          organizations: ["someone-else"],
          usage: "client",
          validForMs: DAY,
        }),
        await issueCertificate(ca, {
          commonName: "offsite-operator",
          organizations: ["offsite-operator", "extra"],
          usage: "client",
          validForMs: DAY,
        }),
        await issueCertificate(ca, { commonName: "offsite-operator", usage: "client", validForMs: DAY }),
        pki.agent,
      ];
      for (const client of subjects) {
        const answer = await controlRequest(
          agent.controlPort,
          ca.certificatePem,
          client,
          "POST",
          "/v1/jobs",
          JSON.stringify(validRequest()),
        );
        assert.equal(answer.status, 403, answer.body);
        assert.equal((answer.json as { code: string }).code, "forbidden");
      }
      assert.equal(agent.events.filter((e) => e.event === "job-started").length, 0);
    });

    it("and the operator's client refuses an agent that is not the expected identity", async () => {
      await assert.rejects(
        attachJob({ host: "127.0.0.1", port: agent.controlPort }, "x", {
          ...operatorOptions(pki),
          expectCommonName: "someone-else",
        }),
        (error: ControlError) => error.kind === "tls" && /CN=offsite-agent/.test(error.message),
      );
      const foreignCa = await createCertificateAuthority("someone else's CA", DAY);
      await assert.rejects(
        attachJob({ host: "127.0.0.1", port: agent.controlPort }, "x", {
          ...operatorOptions(pki),
          caPem: foreignCa.certificatePem,
        }),
        (error: ControlError) => error.kind === "tls",
      );
    });
  });

  describe("answers requests that break the contract", () => {
    it("400 for a body that is not JSON", async () => {
      const answer = await asOperator("POST", "/v1/jobs", "{not json");
      assert.equal(answer.status, 400);
      assert.equal((answer.json as { code: string }).code, "bad-request");
      assert.match((answer.json as { message: string }).message, /not JSON/);
    });

    it("400 naming each field the schema refuses", async () => {
      const { target: _, ...rest } = validRequest();
      const broken = { ...rest, mode: "explode", target: { endpoint: "127.0.0.1:1" }, extra: true };
      const answer = await asOperator("POST", "/v1/jobs", JSON.stringify(broken));
      assert.equal(answer.status, 400, answer.body);
      const issues = (answer.json as { issues: { path: string; message: string }[] }).issues;
      const paths = issues.map((i) => i.path);
      assert.ok(paths.includes("mode"), answer.body);
      assert.ok(paths.includes("target.caCertificate"), answer.body);
      assert.ok(
        issues.some((i) => /extra/.test(i.message)),
        answer.body,
      );
      const badEndpoint = await asOperator(
        "POST",
        "/v1/jobs",
        JSON.stringify({ ...validRequest(), target: { ...validRequest().target, endpoint: "host:99999" } }),
      );
      assert.equal(badEndpoint.status, 400);
      assert.deepEqual(
        (badEndpoint.json as { issues: { path: string }[] }).issues.map((i) => i.path),
        ["target.endpoint"],
      );
      assert.equal(agent.events.filter((e) => e.event === "job-started").length, 0);
    });

    it("404 with the versions it speaks for another version, 404 and 405 under v1", async () => {
      const v2 = await asOperator("POST", "/v2/jobs", JSON.stringify(validRequest()));
      assert.equal(v2.status, 404);
      assert.deepEqual((v2.json as { versions: string[] }).versions, ["v1"]);
      assert.equal((await asOperator("GET", "/v1/nothing")).status, 404);
      assert.equal((await asOperator("GET", "/v1/jobs")).status, 405);
    });
  });

  describe("lives with its credentials directory", () => {
    it("starts without it, stays up and unready saying why, refuses TLS, and serves once it appears", async () => {
      const health = (path: string) => httpGet(late.healthPort!, path);
      assert.equal((await health("/healthz")).status, 200);
      const notReady = await health("/readyz");
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, /cannot read .*late-control\/ca\.crt/);
      const lateAt = { host: "127.0.0.1", port: late.controlPort };
      await assert.rejects(
        attachJob(lateAt, "x", operatorOptions(pki)),
        (error: ControlError) => error.kind === "tls",
      );

      writeSecretDir(lateCerts, pki.operatorCa, pki.agent);
      // Served at once: a new connection reads the directory before its handshake.
      await assert.rejects(
        attachJob(lateAt, "x", operatorOptions(pki)),
        (error: ControlError) => error.status === 404,
      );
      await eventually("ready", async () => (await health("/readyz")).status === 200);
      const states = late.events.filter((e) => e.event === "control-credentials").map((e) => e.state);
      assert.deepEqual(states, ["unavailable", "loaded"], "logged once per change");
      assert.equal(late.child.exitCode, null);
    });

    it("takes a rotated Secret for new connections, refuses broken credentials meanwhile, and a new CA", async () => {
      const lateAt = { host: "127.0.0.1", port: late.controlPort };
      const fingerprint = () =>
        servedFingerprint(late.controlPort, pki.operator, pki.operatorCa.certificatePem);
      assert.equal(await fingerprint(), new X509Certificate(pki.agent.certificatePem).fingerprint256);

      const rotated = await issueAgentControlCertificate(pki.operatorCa, DAY);
      writeSecretDir(lateCerts, pki.operatorCa, rotated);
      assert.equal(await fingerprint(), new X509Certificate(rotated.certificatePem).fingerprint256);

      // A certificate with another's key: refused, unready, still running.
      writeSecretDir(lateCerts, pki.operatorCa, { ...rotated, privateKeyPem: pki.agent.privateKeyPem });
      await assert.rejects(
        attachJob(lateAt, "x", operatorOptions(pki)),
        (error: ControlError) => error.kind === "tls",
      );
      const broken = await httpGet(late.healthPort!, "/readyz");
      assert.equal(broken.status, 503);
      assert.match(broken.body, /cannot be used/);

      // A new operator CA: the old operator certificate is refused, the new one served.
      const newCa = await createCertificateAuthority("offsite operator CA 2", DAY);
      const newAgent = await issueAgentControlCertificate(newCa, DAY);
      const newOperator = await issueOperatorControlCertificate(newCa, DAY);
      writeSecretDir(lateCerts, newCa, newAgent);
      const newOptions = {
        ...operatorOptions(pki),
        caPem: newCa.certificatePem,
        operatorCredentials: { cert: newOperator.certificatePem, key: newOperator.privateKeyPem },
      };
      await assert.rejects(attachJob(lateAt, "x", newOptions), (error: ControlError) => error.status === 404);
      await assert.rejects(
        attachJob(lateAt, "x", operatorOptions(pki)),
        (error: ControlError) => error.kind === "tls",
      );
      const result = await runJob(lateAt, { ...validRequest(), jobId: "after-rotation" }, newOptions);
      assert.equal(result.code, "unreachable", result.message);
      assert.equal(late.child.exitCode, null);
    });
  });
});
