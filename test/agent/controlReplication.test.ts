/**
 * The replication roles through the agents' control channel, as the operator will drive
 * them: two real `offsite agent` processes (the standby's with --allow-standby), each told
 * its role with PUT /v1/replication; the primary's changes reach the standby's tree, both
 * report what they do (GET /v1/replication, the heartbeat), the same request again changes
 * nothing, and a backup sidecar (no --allow-standby) refuses to become a writer.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import type { ReplicationReport, ReplicationRequest } from "../../contract/reports.ts";
import {
  controlRequest,
  freePort,
  makeControlPki,
  startAgentProcess,
  writeSecretDir,
  type AgentProcess,
  type ControlPki,
} from "./controlSupport.ts";
import { waitForIdentical } from "./replicationSupport.ts";

const SITE = "pair-site";
const PAIR = "web-pair";
const DAY = 86_400_000;

describe("replication roles over the control channel", () => {
  let work = "";
  let pki: ControlPki;
  let pairCa: CertificateAndKey;
  let primaryAgent: AgentProcess | undefined;
  let standbyAgent: AgentProcess | undefined;
  let sidecar: AgentProcess | undefined;
  let standbyPort = 0;
  const primary = () => join(work, "primary");
  const standby = () => join(work, "standby");

  const call = (agent: AgentProcess, method: string, path: string, body?: unknown) =>
    controlRequest(
      agent.controlPort,
      pki.operatorCa.certificatePem,
      pki.operator,
      method,
      path,
      body === undefined ? undefined : JSON.stringify(body),
    );

  const request = async (role: "primary" | "standby", epoch = 1): Promise<ReplicationRequest> => {
    const party =
      role === "primary"
        ? await issueCertificate(pairCa, {
            commonName: PAIR,
            organizations: [SITE],
            usage: "client",
            validForMs: DAY,
          })
        : await issueCertificate(pairCa, {
            commonName: "standby",
            hosts: ["127.0.0.1"],
            usage: "server",
            validForMs: DAY,
          });
    return {
      pair: PAIR,
      site: SITE,
      role,
      epoch,
      path: role === "primary" ? primary() : standby(),
      caCertificate: pairCa.certificatePem,
      credentials: { certificate: party.certificatePem, privateKey: party.privateKeyPem },
      ...(role === "primary"
        ? { standby: { endpoint: `127.0.0.1:${standbyPort}` }, stateDir: join(work, "primary-state") }
        : { listenPort: standbyPort }),
      filters: { include: [], exclude: [] },
      contentFirewall: {
        enabled: true,
        blockExecutables: true,
        blockScripts: true,
        blockPatterns: [],
        allowPatterns: [],
      },
      batchWindowMs: 50,
    };
  };

  const reportOf = async (agent: AgentProcess) =>
    (await call(agent, "GET", "/v1/replication")).json as ReplicationReport;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-control-replication-"));
    mkdirSync(primary());
    mkdirSync(standby());
    writeFileSync(join(primary(), "index.html"), "<h1>shop</h1>");
    pki = await makeControlPki();
    pairCa = await createCertificateAuthority("pair CA", DAY);
    const certs = join(work, "control");
    writeSecretDir(certs, pki.operatorCa, pki.agent);
    standbyPort = await freePort();
    primaryAgent = await startAgentProcess(certs);
    standbyAgent = await startAgentProcess(certs, ["--allow-standby"]);
    sidecar = await startAgentProcess(certs);
  });

  after(async () => {
    await Promise.all([primaryAgent?.stop(), standbyAgent?.stop(), sidecar?.stop()]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("a backup sidecar refuses the standby role: it never writes the data it protects", async () => {
    const answer = await call(sidecar!, "PUT", "/v1/replication", await request("standby"));
    assert.equal(answer.status, 403, answer.body);
    assert.equal((answer.json as { code: string }).code, "standby-not-allowed");
  });

  it("refuses a request that breaks the contract, naming the field", async () => {
    const answer = await call(standbyAgent!, "PUT", "/v1/replication", {
      ...(await request("standby")),
      epoch: -1,
    });
    assert.equal(answer.status, 400, answer.body);
    assert.match(answer.body, /epoch/);
  });

  it("told their roles, the two agents keep the standby's tree identical, and report it", async () => {
    const standbyAnswer = await call(standbyAgent!, "PUT", "/v1/replication", await request("standby"));
    assert.equal(standbyAnswer.status, 200, standbyAnswer.body);
    const primaryRequest = await request("primary");
    const primaryAnswer = await call(primaryAgent!, "PUT", "/v1/replication", primaryRequest);
    assert.equal(primaryAnswer.status, 200, primaryAnswer.body);
    await waitForIdentical(primary(), standby(), 20_000);
    mkdirSync(join(primary(), "uploads"));
    writeFileSync(join(primary(), "uploads", "cat.jpg"), Buffer.from("\xff\xd8 a cat", "latin1"));
    writeFileSync(join(primary(), "uploads", "shell.jpg"), "<?php system($_GET['c']);");
    await waitFor(async () => existsSync(join(standby(), "uploads", "cat.jpg")));
    assert.equal(readFileSync(join(standby(), "uploads", "cat.jpg"), "latin1"), "\xff\xd8 a cat");
    assert.ok(!existsSync(join(standby(), "uploads", "shell.jpg")));

    const reported = await waitFor(async () => {
      const report = await reportOf(primaryAgent!);
      return report.state === "streaming" && report.blocked > 0 && report.pendingChanges === 0
        ? report
        : undefined;
    });
    assert.equal(reported.role, "primary");
    assert.equal(reported.epoch, 1);
    assert.ok(reported.lastSyncTime, JSON.stringify(reported));
    assert.deepEqual(
      reported.recentBlocked.map((b) => b.path),
      ["uploads/shell.jpg"],
    );
    const standbyReport = await reportOf(standbyAgent!);
    assert.equal(standbyReport.state, "serving", JSON.stringify(standbyReport));
    assert.ok(standbyReport.batchesApplied > 0 && standbyReport.lastAppliedAt);

    const beat = await call(primaryAgent!, "GET", "/v1/heartbeat");
    const line = JSON.parse(beat.body.trim()) as { role: string; epoch: number; healthy: boolean };
    assert.deepEqual([line.role, line.epoch, line.healthy], ["primary", 1, true]);

    // The operator's next reconcile sends the same role: nothing restarts.
    const again = await call(primaryAgent!, "PUT", "/v1/replication", primaryRequest);
    assert.equal((again.json as { restarted: boolean }).restarted, false);
  });

  it("a primary of an older epoch is refused by the standby and reports failed", async () => {
    const stale = await call(primaryAgent!, "PUT", "/v1/replication", {
      ...(await request("primary")),
      epoch: 0,
    });
    assert.equal(stale.status, 200, stale.body);
    const report = await waitFor(async () => {
      const current = await reportOf(primaryAgent!);
      return current.state === "failed" ? current : undefined;
    });
    assert.match(report.message ?? "", /epoch/);
  });

  it("DELETE stops the role", async () => {
    const stopped = await call(primaryAgent!, "DELETE", "/v1/replication");
    assert.equal(stopped.status, 200);
    assert.equal((await reportOf(primaryAgent!)).role, "none");
    writeFileSync(join(primary(), "after-stop.txt"), "not replicated");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(!existsSync(join(standby(), "after-stop.txt")));
  });
});

async function waitFor<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
