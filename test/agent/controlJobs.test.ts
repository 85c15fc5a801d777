/**
 * The control channel end to end: the real `offsite agent` and `offsite receive`
 * processes on loopback, driven by the operator's client (operator/agentControl/
 * controlClient.ts) with certificates from pki/. Jobs: push, compare and restore as the
 * BackupJob controller sends them, idempotent retries and re-attaching, reports, the
 * failure codes, and the receiver's check-in report.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  statSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import type { JobProgress, JobRequest } from "../../contract/reports.ts";
import type { ControlError } from "../../operator/agentControl/controlClient.ts";
import {
  attachJob,
  fetchReceiverReport,
  fetchReport,
  runJob,
} from "../../operator/agentControl/controlClient.ts";
import { startReceiverProcess, type ReceiverProcess } from "./agentProcesses.ts";
import {
  type AgentProcess,
  type ControlPki,
  freePort,
  makeControlPki,
  operatorOptions,
  SITE,
  SOURCE,
  startAgentProcess,
  writeCertsDir,
  writeSecretDir,
} from "./controlSupport.ts";
import { treeSnapshot } from "./testSupport.ts";

describe("the agent's control endpoint runs the operator's jobs", () => {
  const work = mkdtempSync(join(tmpdir(), "offsite-control-jobs-"));
  const src = join(work, "src");
  const root = join(work, "store");
  let pki: ControlPki;
  let receiver: ReceiverProcess;
  let receiverControlPort: number;
  let sidecar: AgentProcess;
  let mover: AgentProcess;
  const silent = createServer((socket: Socket) => socket.on("error", () => undefined));
  let ids = 0;
  const jobId = (what: string) => `${what}-${++ids}`;

  const request = (overrides: Partial<JobRequest> = {}): JobRequest => ({
    jobId: jobId("push"),
    mode: "push",
    site: SITE,
    source: SOURCE,
    path: src,
    target: { endpoint: `127.0.0.1:${receiver.port}`, caCertificate: pki.targetCa.certificatePem },
    credentials: { certificate: pki.source.certificatePem, privateKey: pki.source.privateKeyPem },
    filters: { include: [], exclude: ["**/*.tmp"] },
    contentFirewall: {
      enabled: true,
      blockExecutables: true,
      blockScripts: true,
      blockPatterns: [],
      allowPatterns: [],
    },
    checksum: false,
    deadlineMs: 60_000,
    ...overrides,
  });
  const at = (agent: AgentProcess) => ({ host: "127.0.0.1", port: agent.controlPort });
  const versionsOnDisk = () => {
    const dir = join(root, SITE, SOURCE, "versions");
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  };

  before(async () => {
    pki = await makeControlPki();
    mkdirSync(join(src, "dir"), { recursive: true });
    writeFileSync(join(src, "a.txt"), "alpha\n");
    writeFileSync(join(src, "dir", "b.bin"), Buffer.alloc(200_000, 7));
    writeFileSync(join(src, "run.sh"), "#!/bin/sh\necho hi\n");
    writeFileSync(join(src, "skip.tmp"), "scratch");
    const controlCerts = join(work, "control");
    writeSecretDir(controlCerts, pki.operatorCa, pki.agent);
    receiverControlPort = await freePort();
    [receiver, sidecar, mover] = await Promise.all([
      startReceiverProcess(root, writeCertsDir(join(work, "receiver"), pki.targetCa, pki.receiver), [
        "--control-port",
        String(receiverControlPort),
        "--control-certs",
        controlCerts,
      ]),
      startAgentProcess(controlCerts),
      startAgentProcess(controlCerts, ["--allow-restore"]),
    ]);
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
  });

  after(async () => {
    silent.close();
    const codes = await Promise.all([sidecar?.stop(), mover?.stop()]);
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
    // SIGTERM: stop accepting, exit 0 (a sidecar must never look like it crashed).
    assert.deepEqual(codes, [0, 0]);
  });

  let pushed: { id: string; version: string };

  it("pushes: progress lines, then a result whose version is on the receiver's disk", async () => {
    const job = request();
    const progress: JobProgress[] = [];
    const result = await runJob(at(sidecar), job, {
      ...operatorOptions(pki),
      onProgress: (p) => progress.push(p),
    });
    assert.equal(result.outcome, "succeeded", result.message);
    assert.equal(result.jobId, job.jobId);
    assert.ok(result.version);
    assert.deepEqual(versionsOnDisk(), [result.version]);
    assert.equal(
      readdirSync(join(root, SITE, SOURCE, "versions", result.version, "tree"))
        .sort()
        .join(),
      "a.txt,dir",
    );
    // a.txt and dir/b.bin sent; skip.tmp filtered; run.sh stopped by the firewall.
    assert.deepEqual(result.files, { scanned: 2, changed: 2, deleted: 0, filtered: 1, stopped: 1 });
    assert.ok(result.bytes.changed >= 200_006 && result.bytes.sent >= result.bytes.changed);
    assert.equal(result.resumed, false);
    assert.ok(progress.length >= 1 && progress[0]!.phase === "scanning", JSON.stringify(progress));
    assert.ok(progress.every((p) => p.jobId === job.jobId));
    pushed = { id: job.jobId, version: result.version };

    const report = await fetchReceiverReport(
      { host: "127.0.0.1", port: receiverControlPort },
      operatorOptions(pki),
    );
    const entry = report.sources.find((s) => s.site === SITE && s.source === SOURCE);
    assert.ok(entry, JSON.stringify(report));
    assert.equal(entry.versions, 1);
    assert.equal(entry.latestVersion, result.version);
    assert.equal(entry.lastOutcome, "committed");
    assert.ok(entry.bytesStored >= 200_006);
    assert.ok(report.volume.totalBytes > 0 && report.volume.usedBytes > 0);
    assert.equal(report.jobsRunning, 0);
  });

  it("answers a retry with the same jobId with its result, without a second version; GET attaches too", async () => {
    const again = await runJob(at(sidecar), request({ jobId: pushed.id }), operatorOptions(pki));
    assert.equal(again.version, pushed.version);
    const attached = await attachJob(at(sidecar), pushed.id, operatorOptions(pki));
    assert.deepEqual(attached, again);
    assert.deepEqual(versionsOnDisk(), [pushed.version]);
    assert.equal(sidecar.events.filter((e) => e.event === "job-started" && e.jobId === pushed.id).length, 1);
    // The id of another run is refused rather than answered with this one's result.
    await assert.rejects(
      runJob(at(sidecar), request({ jobId: pushed.id, mode: "compare" }), operatorOptions(pki)),
      (error: ControlError) => error.status === 409 && error.code === "job-id-conflict",
    );
    await assert.rejects(
      attachJob(at(sidecar), "never-ran", operatorOptions(pki)),
      (error: ControlError) => error.kind === "http" && error.status === 404,
    );
  });

  it("serves the role's full report, as `offsite push --json` prints it", async () => {
    const report = await fetchReport(at(sidecar), pushed.id, operatorOptions(pki));
    assert.equal(report.event, "pushed");
    assert.equal(report.version, pushed.version);
    assert.equal(report.site, SITE);
    assert.deepEqual(
      (report.filtered as { path: string; reason: string }[]).map((f) => `${f.path}:${f.reason}`).sort(),
      ["run.sh:firewall-script", "skip.tmp:excluded"],
    );
    await assert.rejects(
      fetchReport(at(sidecar), "never-ran", operatorOptions(pki)),
      (error: ControlError) => error.status === 404,
    );
  });

  it("compares: added, changed and missing, with the first differences", async () => {
    writeFileSync(join(src, "a.txt"), "alpha, edited\n");
    writeFileSync(join(src, "new.txt"), "new\n");
    rmSync(join(src, "dir", "b.bin"));
    const job = request({ jobId: jobId("compare"), mode: "compare" });
    const result = await runJob(at(sidecar), job, operatorOptions(pki));
    assert.equal(result.outcome, "succeeded", result.message);
    assert.equal(result.version, pushed.version);
    const { first, ...counts } = result.compare!;
    assert.deepEqual(counts, { match: false, added: 1, changed: 1, missing: 1, metadata: 1 });
    assert.deepEqual(
      first.map((d) => `${d.kind} ${d.path}`),
      ["added new.txt", "changed a.txt", "missing dir/b.bin", "metadata dir"],
    );
    const report = await fetchReport(at(sidecar), job.jobId, operatorOptions(pki));
    assert.deepEqual(report.missing, ["dir/b.bin"]);
    assert.deepEqual(versionsOnDisk(), [pushed.version]);
  });

  it("refuses restores unless started with --allow-restore", async () => {
    const dest = join(work, "refused");
    await assert.rejects(
      runJob(
        at(sidecar),
        request({ jobId: jobId("restore"), mode: "restore", path: dest }),
        operatorOptions(pki),
      ),
      (error: ControlError) => error.status === 403 && error.code === "restore-not-allowed",
    );
    assert.equal(existsSync(dest), false);
  });

  it("restores byte-identical into a tree that holds other things, removing extras (deleteExtra), never through links", async () => {
    const dest = join(work, "restored");
    const outside = join(work, "outside");
    mkdirSync(join(dest, "dir", "old"), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, "keep.txt"), "not ours");
    writeFileSync(join(dest, "a.txt"), "a stale copy\n");
    writeFileSync(join(dest, "dir", "b.bin"), "short");
    writeFileSync(join(dest, "extra.txt"), "extra");
    writeFileSync(join(dest, "dir", "old", "x"), "x");
    symlinkSync(outside, join(dest, "escape"));
    symlinkSync(outside, join(dest, "dir", "link"));
    chmodSync(join(dest, "dir"), 0o555); // restored read-only before: writable for the restore
    const job = request({ jobId: jobId("restore"), mode: "restore", path: dest, deleteExtra: true });
    const result = await runJob(at(mover), job, operatorOptions(pki));
    assert.equal(result.outcome, "succeeded", result.message);
    assert.equal(result.version, pushed.version);
    assert.deepEqual(
      treeSnapshot(dest),
      treeSnapshot(join(root, SITE, SOURCE, "versions", pushed.version, "tree")),
    );
    // extra.txt, dir/old/x and the two links: removed; what they pointed at: untouched.
    assert.equal(result.files.deleted, 4);
    assert.equal(result.files.changed, 2);
    assert.deepEqual(treeSnapshot(outside), { "keep.txt": Buffer.from("not ours").toString("base64") });
    const stored = join(root, SITE, SOURCE, "versions", pushed.version, "tree", "dir");
    assert.equal(statSync(join(dest, "dir")).mode & 0o7777, statSync(stored).mode & 0o7777);
  });

  it("keeps, with deleteExtra, what the job's filters and firewall leave out: no backup ever held it", async () => {
    const dest = join(work, "restored-filtered");
    mkdirSync(join(dest, "tools"), { recursive: true });
    writeFileSync(join(dest, "cache.tmp"), "excluded by **/*.tmp");
    writeFileSync(join(dest, "tools", "deploy"), "#!/bin/sh\necho stopped by the firewall\n");
    writeFileSync(join(dest, "extra.txt"), "in no version, not filtered");
    const job = request({ jobId: jobId("restore"), mode: "restore", path: dest, deleteExtra: true });
    const result = await runJob(at(mover), job, operatorOptions(pki));
    assert.equal(result.outcome, "succeeded", result.message);
    assert.equal(readFileSync(join(dest, "cache.tmp"), "utf8"), "excluded by **/*.tmp");
    assert.match(readFileSync(join(dest, "tools", "deploy"), "utf8"), /^#!/);
    assert.equal(existsSync(join(dest, "extra.txt")), false);
    assert.equal(result.files.deleted, 1);
  });

  it("fails with `unreachable` when nothing listens at the target", async () => {
    const port = await freePort();
    const result = await runJob(
      at(sidecar),
      request({
        jobId: jobId("unreachable"),
        target: { endpoint: `127.0.0.1:${port}`, caCertificate: pki.targetCa.certificatePem },
      }),
      operatorOptions(pki),
    );
    assert.equal(result.outcome, "failed");
    assert.equal(result.code, "unreachable", result.message);
    assert.match(result.message!, /cannot reach the receiver/);
  });

  it("fails with `certificate` when TLS with the receiver fails either way", async () => {
    const result = await runJob(
      at(sidecar),
      request({
        jobId: jobId("certificate"),
        target: { endpoint: `127.0.0.1:${receiver.port}`, caCertificate: pki.operatorCa.certificatePem },
      }),
      operatorOptions(pki),
    );
    assert.equal(result.code, "certificate", result.message);
    // The other way: the receiver refuses a client certificate of another CA.
    const stranger = await runJob(
      at(sidecar),
      request({
        jobId: jobId("certificate"),
        credentials: { certificate: pki.agent.certificatePem, privateKey: pki.agent.privateKeyPem },
      }),
      operatorOptions(pki),
    );
    assert.equal(stranger.code, "certificate", stranger.message);
  });

  it("fails with `source-missing` when the path is not there", async () => {
    const result = await runJob(
      at(sidecar),
      request({ jobId: jobId("missing"), path: join(work, "no-such-dir") }),
      operatorOptions(pki),
    );
    assert.equal(result.code, "source-missing", result.message);
  });

  it("stops a job at its deadline; a caller that goes away leaves it running, and any caller gets its result", async () => {
    const target = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const job = request({
      jobId: jobId("deadline"),
      deadlineMs: 2000,
      target: { endpoint: target, caCertificate: pki.targetCa.certificatePem },
    });
    const leaving = new AbortController();
    const first = runJob(at(sidecar), job, { ...operatorOptions(pki), signal: leaving.signal });
    await new Promise((done) => setTimeout(done, 300));
    leaving.abort();
    await assert.rejects(first, (error: ControlError) => error.kind === "aborted");
    // Still running: both a retry and a GET attach to it, and another job runs meanwhile.
    const retrying = runJob(at(sidecar), job, operatorOptions(pki));
    const attaching = attachJob(at(sidecar), job.jobId, operatorOptions(pki));
    const other = await runJob(
      at(sidecar),
      request({ jobId: jobId("meanwhile"), mode: "compare" }),
      operatorOptions(pki),
    );
    assert.equal(other.outcome, "succeeded", other.message);
    const [retry, attached] = await Promise.all([retrying, attaching]);
    assert.ok(Date.parse(retry.at) > Date.parse(other.at), "the other job ended first");
    assert.equal(retry.code, "deadline", retry.message);
    assert.deepEqual(attached, retry);
    assert.equal(sidecar.events.filter((e) => e.event === "job-started" && e.jobId === job.jobId).length, 1);
  });
});
