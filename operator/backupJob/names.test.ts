import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { API_VERSION, backupJobKind } from "../../crds/definitions.ts";
import { MANAGED_BY_LABEL } from "../runtime/ownership.ts";
import { backupJobLabels, backupJobNames, JOB_LABEL, jobOwnerReference } from "./names.ts";

/** A DNS-1123 label: what a pod's host name must be. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

describe("names of what a BackupJob owns", () => {
  it("are the job's name and a suffix while they fit", () => {
    assert.deepEqual(backupJobNames("orders"), {
      sourceSecret: "orders-offsite-source",
      moverPod: "orders-offsite-mover",
    });
  });

  it("fit 63 characters for the longest job name, and stay apart for names with one prefix", () => {
    const longest = "a".repeat(backupJobKind.maxNameLength!);
    const other = `${"a".repeat(backupJobKind.maxNameLength! - 1)}b`;
    for (const name of [longest, other, "x".repeat(49), "x".repeat(48)]) {
      for (const derived of Object.values(backupJobNames(name))) {
        assert.ok(derived.length <= 63, `${derived} is ${derived.length} characters`);
        assert.match(derived, DNS_LABEL);
      }
    }
    assert.notEqual(backupJobNames(longest).moverPod, backupJobNames(other).moverPod);
    assert.notEqual(backupJobNames(longest).sourceSecret, backupJobNames(other).sourceSecret);
    assert.deepEqual(backupJobNames(longest), backupJobNames(longest), "the same every time");
    assert.match(backupJobNames(longest).moverPod, /-offsite-mover$/);
    assert.match(backupJobNames(longest).sourceSecret, /-offsite-source$/);
    // A name that just fits is kept as it is.
    assert.equal(backupJobNames("x".repeat(49)).moverPod, `${"x".repeat(49)}-offsite-mover`);
    assert.match(backupJobNames("x".repeat(50)).moverPod, /^x{40}-[0-9a-f]{8}-offsite-mover$/);
  });

  it("labels what it owns with the job, for the controller's mapper", () => {
    const labels = backupJobLabels("orders");
    assert.equal(labels[JOB_LABEL], "orders");
    assert.equal(JOB_LABEL, "offsite.dev/backupjob");
    assert.equal(labels[MANAGED_BY_LABEL], "offsite-operator");
    assert.equal(labels["app.kubernetes.io/part-of"], "offsite");
    const longest = backupJobLabels("a".repeat(backupJobKind.maxNameLength!));
    assert.ok(longest[JOB_LABEL]!.length <= 63, "a label value holds 63 characters");
  });

  it("puts them under the job's garbage collection", () => {
    const reference = jobOwnerReference({ name: "orders", uid: "u-1" });
    assert.equal(reference.kind, "BackupJob");
    assert.equal(reference.apiVersion, API_VERSION);
    assert.equal(reference.name, "orders");
    assert.equal(reference.uid, "u-1");
    assert.equal(reference.controller, true);
  });
});
