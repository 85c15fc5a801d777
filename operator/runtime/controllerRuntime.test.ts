import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ApiException } from "@kubernetes/client-node";
import type { ControllerDefinition, CustomObject } from "./controller.ts";
import { watchedResources } from "./controllerRuntime.ts";
import { lifecycleStep } from "./finalizers.ts";
import { ReconcileError } from "./kubeApi.ts";
import { FINALIZER, ownerKeyByLabel } from "./ownership.ts";
import { SECRETS, SERVICES } from "./resources.ts";
import { failedStatus, reportsFailure } from "./statusWriter.ts";

const controller = (
  kind: string,
  plural: string,
  watches: ControllerDefinition["watches"],
): ControllerDefinition => ({
  kind,
  group: "offsite.dev",
  version: "v1alpha1",
  plural,
  watches,
  reconcile: () => Promise.resolve({ status: {} }),
});

const anObject = (metadata: CustomObject["metadata"] = {}): CustomObject => ({
  apiVersion: "offsite.dev/v1alpha1",
  kind: "Thing",
  metadata: { name: "a", namespace: "ns", ...metadata },
});

describe("the controller runtime", () => {
  it("watches each resource once however many controllers watch it", () => {
    const resources = watchedResources([
      controller("OffsiteServer", "offsiteservers", [{ resource: SECRETS }, { resource: SERVICES }]),
      controller("BackupJob", "backupjobs", [{ resource: SECRETS }]),
    ]);
    assert.deepEqual(
      resources.map((r) => r.name),
      ["offsiteservers", "secrets", "services", "backupjobs"],
    );
  });

  it("maps an owned object back to its owner by the kind's label, and others to nothing", () => {
    const toServer = ownerKeyByLabel("OffsiteServer");
    const labelled = {
      metadata: { namespace: "ns", name: "vault-tls", labels: { "offsite.dev/offsiteserver": "vault" } },
    };
    assert.equal(toServer(labelled), "ns/vault");
    assert.equal(ownerKeyByLabel("BackupJob")(labelled), undefined);
    assert.equal(toServer({ metadata: { namespace: "ns", name: "x" } }), undefined);
  });

  it("adds the finalizer, finalizes once deleted, and leaves an object it does not hold alone", () => {
    const deleted = { deletionTimestamp: new Date() };
    assert.equal(lifecycleStep(anObject(), true), "addFinalizer");
    assert.equal(lifecycleStep(anObject(), false), "reconcile");
    assert.equal(lifecycleStep(anObject({ finalizers: ["other", FINALIZER] }), true), "reconcile");
    assert.equal(lifecycleStep(anObject({ ...deleted, finalizers: [FINALIZER] }), true), "finalize");
    assert.equal(lifecycleStep(anObject({ ...deleted, finalizers: ["other"] }), true), "released");
  });
});

describe("the status after a failed step", () => {
  const now = new Date("2026-11-21T12:00:00Z");
  const refused = new ReconcileError(
    "Invalid",
    'applying Service ns/vault failed: Service "vault" is invalid: metadata.annotations: Invalid value: "bad key!" (HTTP 422)',
  );

  it("is Ready=False with the error's reason and message at the current generation, keeping the rest", () => {
    const previous = {
      phase: "Ready",
      endpoint: "vault.ns.svc:5722",
      observedGeneration: 1,
      conditions: [
        {
          type: "Degraded",
          status: "False" as const,
          reason: "AsSpecified",
          message: "",
          lastTransitionTime: "2026-11-20T00:00:00Z",
        },
        {
          type: "Ready",
          status: "True" as const,
          reason: "ReceiverReady",
          message: "",
          lastTransitionTime: "2026-11-20T00:00:00Z",
        },
      ],
    };
    const status = failedStatus(previous, refused, 2, now, "Degraded");
    const ready = status.conditions?.find((c) => c.type === "Ready");
    assert.deepEqual(ready, {
      type: "Ready",
      status: "False",
      reason: "Invalid",
      message: refused.message,
      observedGeneration: 2,
      lastTransitionTime: now.toISOString(),
    });
    assert.equal(status.observedGeneration, 2);
    assert.equal(status.phase, "Degraded");
    assert.equal((status as typeof previous).endpoint, "vault.ns.svc:5722");
    assert.equal(status.conditions?.find((c) => c.type === "Degraded")?.reason, "AsSpecified");
  });

  it("carries the API server's reason and message for a refused request", () => {
    const body = JSON.stringify({
      kind: "Status",
      message: 'Service "vault" is invalid: bad key',
      code: 422,
    });
    const status = failedStatus(undefined, new ApiException(422, "Unprocessable", body, {}), undefined, now);
    const ready = status.conditions?.[0];
    assert.equal(ready?.reason, "Invalid");
    assert.equal(ready?.message, 'Service "vault" is invalid: bad key (HTTP 422)');
    assert.equal(status.observedGeneration, 0);
  });

  it("is not written for a conflict or a vanished object (the watch brings a fresh run)", () => {
    assert.equal(reportsFailure(new ApiException(409, "Conflict", "{}", {})), false);
    assert.equal(reportsFailure(new ApiException(404, "Not Found", "{}", {})), false);
    assert.equal(reportsFailure(refused), true);
    assert.equal(reportsFailure(new Error("socket hang up")), true);
  });
});
