/**
 * The job request for each kind of spec, checked against the contract's own schema: what
 * the operator sends is what the agent accepts, and every spec field meant for the agent
 * arrives with its value (after the CRD schema's defaults).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { jobRequest } from "../../contract/reports.ts";
import { backupJobSpec } from "../../crds/schema/backupJob.ts";
import { jobRequestFor, runPath, type JobRequestInputs } from "./jobRequest.ts";
import { startRun } from "./runs.ts";

const uid = "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44";
const now = new Date("2026-12-02T03:15:00Z");

function inputs(
  fields: Record<string, unknown>,
  overrides: Partial<JobRequestInputs> = {},
): JobRequestInputs {
  const spec = backupJobSpec.parse({
    source: { podSelector: { matchLabels: { app: "db" } } },
    target: { offsiteServer: { name: "vault" } },
    ...fields,
  });
  return {
    spec,
    run: startRun({ trigger: "Manual" }, spec, uid, now),
    site: "c3d2a1b0-1111-4222-8333-944455556666",
    source: uid,
    path: runPath(spec),
    target: { endpoint: "vault.backups.svc:5722", caPem: "-----BEGIN CERTIFICATE-----\nCA\n" },
    credentials: { certificate: "-----BEGIN CERTIFICATE-----\nSRC\n", privateKey: "-----BEGIN KEY-----\n" },
    deadlineMs: 6 * 3600_000,
    ...overrides,
  };
}

/** The request, as the agent's parser reads it (it throws for anything the agent would refuse). */
const requestOf = (fields: Record<string, unknown>, overrides: Partial<JobRequestInputs> = {}) => {
  const request = jobRequestFor(inputs(fields, overrides));
  const parsed = jobRequest.safeParse(request);
  assert.ok(parsed.success, `the agent refuses ${JSON.stringify(request)}: ${parsed.error?.message}`);
  assert.deepEqual(parsed.data, request, "nothing is dropped or changed by the agent's parse");
  return request;
};

describe("the job request", () => {
  it("of a Backup with the defaults is a push the agent accepts", () => {
    const request = requestOf({});
    assert.deepEqual(request, {
      jobId: `${uid}-20261202t031500z-1`,
      mode: "push",
      site: "c3d2a1b0-1111-4222-8333-944455556666",
      source: uid,
      path: "/data",
      target: { endpoint: "vault.backups.svc:5722", caCertificate: "-----BEGIN CERTIFICATE-----\nCA\n" },
      credentials: {
        certificate: "-----BEGIN CERTIFICATE-----\nSRC\n",
        privateKey: "-----BEGIN KEY-----\n",
      },
      filters: { include: [], exclude: [] },
      contentFirewall: {
        enabled: false,
        blockExecutables: true,
        blockScripts: true,
        blockPatterns: [],
        allowPatterns: [],
      },
      checksum: false,
      deadlineMs: 6 * 3600_000,
    });
  });

  it("carries the filters, with maxFileSize in bytes, and the content firewall", () => {
    const request = requestOf({
      source: { podSelector: { matchLabels: { app: "db" } }, path: "/var/lib/db" },
      filters: { include: ["**/*.db"], exclude: ["tmp/**", "*.log"], maxFileSize: "2Gi" },
      contentFirewall: { enabled: true, blockScripts: false, blockPatterns: ["**/*.phtml"] },
    });
    assert.equal(request.path, "/var/lib/db");
    assert.deepEqual(request.filters, {
      include: ["**/*.db"],
      exclude: ["tmp/**", "*.log"],
      maxFileSize: 2 * 2 ** 30,
    });
    assert.deepEqual(request.contentFirewall, {
      enabled: true,
      blockExecutables: true,
      blockScripts: false,
      blockPatterns: ["**/*.phtml"],
      allowPatterns: [],
    });
    for (const [size, bytes] of [
      ["500M", 500_000_000],
      [1536, 1536],
      ["0", 0],
    ] as const)
      assert.equal(requestOf({ filters: { maxFileSize: size } }).filters.maxFileSize, bytes);
  });

  it("of a Compare carries its version and checksum, and no deleteExtra", () => {
    const request = requestOf({ mode: "Compare", compare: { version: "20261201T031500Z", checksum: true } });
    assert.equal(request.mode, "compare");
    assert.equal(request.version, "20261201T031500Z");
    assert.equal(request.checksum, true);
    assert.equal("deleteExtra" in request, false);
    const newest = requestOf({ mode: "Compare" });
    assert.equal("version" in newest, false, "the newest version when none is named");
    assert.equal(newest.checksum, false);
  });

  it("of a Restore carries its version, deleteExtra and its own path", () => {
    const request = requestOf({
      mode: "Restore",
      restore: { version: "20261201T031500Z-2", path: "/data/restored", deleteExtraFiles: true },
    });
    assert.equal(request.mode, "restore");
    assert.equal(request.version, "20261201T031500Z-2");
    assert.equal(request.deleteExtra, true);
    assert.equal(request.path, "/data/restored");
    assert.equal(request.checksum, false);

    const defaults = requestOf({ mode: "Restore" });
    assert.equal(defaults.deleteExtra, false);
    assert.equal("version" in defaults, false);
    assert.equal(defaults.path, "/data", "source.path when restore.path is empty");
    assert.equal(requestOf({ mode: "Restore", restore: {} }).deleteExtra, false);
  });

  it("never carries deleteExtra for a Backup", () => {
    assert.equal("deleteExtra" in requestOf({ mode: "Backup" }), false);
  });

  it("carries the run's current attempt's job id", () => {
    const base = inputs({});
    const request = requestOf({}, { run: { ...base.run, attempt: 3, jobId: "job-3" } });
    assert.equal(request.jobId, "job-3");
  });

  it("asks for at least 1 ms, in whole milliseconds, of what is left of the deadline", () => {
    assert.equal(requestOf({}, { deadlineMs: 1234.9 }).deadlineMs, 1234);
    assert.equal(requestOf({}, { deadlineMs: 0.2 }).deadlineMs, 1);
    assert.equal(requestOf({}, { deadlineMs: -5000 }).deadlineMs, 1);
  });

  it("names the directory a run works on", () => {
    const spec = (fields: Record<string, unknown>) =>
      backupJobSpec.parse({
        source: { persistentVolumeClaim: { claimName: "data" }, path: "/data/app" },
        target: { offsiteServer: { name: "vault" } },
        ...fields,
      });
    assert.equal(runPath(spec({})), "/data/app");
    assert.equal(runPath(spec({ mode: "Compare" })), "/data/app");
    assert.equal(runPath(spec({ mode: "Restore" })), "/data/app");
    assert.equal(runPath(spec({ mode: "Restore", restore: { path: "/data/other" } })), "/data/other");
  });
});
