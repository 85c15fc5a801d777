import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiException, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import type { ControllerContext, ControllerDefinition, CustomObject, ObjectStatus } from "./controller.ts";
import { reconcileObject, watchedResources } from "./controllerRuntime.ts";
import { EventRecorder } from "./events.ts";
import { lifecycleStep } from "./finalizers.ts";
import { Applier, ReconcileError } from "./kubeApi.ts";
import { OperatorMetrics } from "./metrics.ts";
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

describe("one run of a controller, against a fake API server", () => {
  interface Request {
    method: string;
    url: string;
    body: Record<string, unknown>;
  }

  /** Answers every request with `stored` changed by what was sent, at resourceVersion 2. */
  async function fakeApi(
    stored: CustomObject,
  ): Promise<{ kc: KubeConfig; requests: Request[]; close: () => Promise<void> }> {
    const requests: Request[] = [];
    const server = createServer((request, response) => {
      let text = "";
      request.on("data", (chunk: Buffer) => (text += chunk.toString()));
      request.on("end", () => {
        const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
        requests.push({ method: request.method!, url: request.url!, body });
        response.writeHead(200, { "content-type": "application/json" });
        const metadata = { ...stored.metadata, ...(body.metadata as object), resourceVersion: "2" };
        response.end(JSON.stringify({ ...stored, ...body, metadata }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "fake", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "fake" }],
      contexts: [{ name: "fake", cluster: "fake", user: "fake" }],
      currentContext: "fake",
    });
    return { kc, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  function contextFor(kc: KubeConfig): ControllerContext {
    const logger = pino({ level: "silent" });
    return {
      kc,
      applier: new Applier(kc),
      events: new EventRecorder(kc, "offsite-operator", "test", logger),
      metrics: new OperatorMetrics(),
      logger,
      defaultImage: "offsite/agent:test",
      operatorCa: { certificatePem: "", privateKeyPem: "" },
      operatorNamespace: "offsite-system",
      now: () => new Date("2026-11-21T12:00:00Z"),
      cached: () => undefined,
    };
  }

  it("adds the finalizer, and when the step throws writes Ready=False with its reason and a Warning Event", async () => {
    const object = anObject({ generation: 4, resourceVersion: "1" });
    const api = await fakeApi(object);
    const refused = new ReconcileError("Invalid", "applying Service ns/a failed: bad key! (HTTP 422)");
    const thing: ControllerDefinition = {
      ...controller("Thing", "things", []),
      failurePhase: "Degraded",
      reconcile: () => Promise.reject(refused),
      finalize: () => Promise.resolve("done"),
    };
    try {
      await assert.rejects(reconcileObject(contextFor(api.kc), thing, "ns", "a", object), refused);
      const [finalizer, status, event] = api.requests;
      assert.equal(finalizer?.method, "PATCH");
      assert.deepEqual(finalizer?.body, { metadata: { resourceVersion: "1", finalizers: [FINALIZER] } });
      assert.equal(status?.method, "PUT");
      assert.match(status?.url ?? "", /\/apis\/offsite\.dev\/v1alpha1\/namespaces\/ns\/things\/a\/status$/);
      const written = status?.body.status as ObjectStatus;
      assert.equal(written.phase, "Degraded");
      assert.equal(written.observedGeneration, 4);
      assert.deepEqual(
        written.conditions?.map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]),
        [["Ready", "False", "Invalid", refused.message, 4]],
      );
      assert.equal((status?.body.metadata as { resourceVersion?: string }).resourceVersion, "2");
      assert.equal(event?.method, "POST");
      assert.match(event?.url ?? "", /\/api\/v1\/namespaces\/ns\/events$/);
      assert.deepEqual([event?.body.type, event?.body.reason], ["Warning", "Invalid"]);
    } finally {
      await api.close();
    }
  });

  it("on deletion runs finalize, then removes only its own finalizer", async () => {
    const object = anObject({
      deletionTimestamp: new Date(),
      finalizers: ["other", FINALIZER],
      resourceVersion: "7",
    });
    const api = await fakeApi(object);
    const finalized: string[] = [];
    const thing: ControllerDefinition = {
      ...controller("Thing", "things", []),
      finalize: (_ctx, object) => {
        finalized.push(object.metadata.name!);
        return Promise.resolve("Released what Thing a held.");
      },
    };
    try {
      assert.deepEqual(await reconcileObject(contextFor(api.kc), thing, "ns", "a", object), {});
      assert.deepEqual(finalized, ["a"]);
      // The finalizer goes first; the Event tells of it only once that succeeded.
      assert.deepEqual(
        api.requests.map((r) => [
          r.method,
          r.method === "PATCH" ? r.body : (r.body as { reason: string }).reason,
        ]),
        [
          ["PATCH", { metadata: { resourceVersion: "7", finalizers: ["other"] } }],
          ["POST", "Finalized"],
        ],
      );
    } finally {
      await api.close();
    }
  });
});
