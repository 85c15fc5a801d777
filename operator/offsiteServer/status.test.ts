import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { computeStatus, type ObservedServer } from "./status.ts";
import { aClaim, aService, aStatefulSet, anOffsiteServer } from "./fixtures.ts";

const now = new Date("2026-11-21T12:00:00Z");

function observe(overrides: Partial<ObservedServer> = {}, server = anOffsiteServer()): ObservedServer {
  return {
    name: "vault",
    namespace: "backups",
    generation: 3,
    annotations: {},
    spec: server.spec(),
    previous: undefined,
    statefulSet: aStatefulSet(1),
    service: aService(),
    claim: aClaim("10Gi", undefined, "10Gi"),
    nodeAddress: undefined,
    certificateNotAfter: new Date("2027-02-19T12:00:00Z"),
    problems: [],
    now,
    ...overrides,
  };
}

const condition = (status: ReturnType<typeof computeStatus>, type: string) =>
  status.conditions?.find((c) => c.type === type);

describe("OffsiteServer status", () => {
  it("is Ready with the in-cluster endpoint once the receiver pod is ready", () => {
    const status = computeStatus(observe());
    assert.equal(status.phase, "Ready");
    assert.equal(status.endpoint, "vault.backups.svc:5722");
    assert.equal(condition(status, "Ready")?.status, "True");
    assert.equal(condition(status, "Ready")?.observedGeneration, 3);
    assert.equal(status.observedGeneration, 3);
    assert.equal(status.capacity?.totalBytes, 10 * 2 ** 30);
    assert.equal(status.certificateNotAfter, "2027-02-19T12:00:00Z");
  });

  it("waits for the pod, and keeps lastTransitionTime while nothing changes", () => {
    const first = computeStatus(observe({ statefulSet: aStatefulSet(0) }));
    assert.equal(first.phase, "Provisioning");
    assert.equal(condition(first, "Ready")?.reason, "ReceiverNotReady");
    const later = computeStatus(
      observe({ statefulSet: aStatefulSet(0), previous: first, now: new Date(now.getTime() + 60_000) }),
    );
    assert.equal(
      condition(later, "Ready")?.lastTransitionTime,
      condition(first, "Ready")?.lastTransitionTime,
    );
    const ready = computeStatus(observe({ previous: later, now: new Date(now.getTime() + 120_000) }));
    assert.notEqual(
      condition(ready, "Ready")?.lastTransitionTime,
      condition(first, "Ready")?.lastTransitionTime,
    );
  });

  it("publishes NodePort and LoadBalancer endpoints, or says what is missing", () => {
    const nodePort = anOffsiteServer().withService({ type: "NodePort" });
    assert.equal(
      computeStatus(observe({ service: aService(31000), nodeAddress: "192.0.2.10" }, nodePort)).endpoint,
      "192.0.2.10:31000",
    );
    const lb = anOffsiteServer().withService({ type: "LoadBalancer" });
    const pending = computeStatus(observe({}, lb));
    assert.equal(pending.endpoint, undefined);
    assert.equal(condition(pending, "Ready")?.reason, "LoadBalancerPending");
    assert.equal(
      computeStatus(observe({ service: aService(undefined, { hostname: "lb.example" }) }, lb)).endpoint,
      "lb.example:5722",
    );
    const pinned = anOffsiteServer().withService({
      type: "LoadBalancer",
      externalAddress: "vault.example.com",
    });
    assert.equal(computeStatus(observe({}, pinned)).endpoint, "vault.example.com:5722");
  });

  it("reports spec problems as Degraded without losing readiness", () => {
    const status = computeStatus(
      observe({ problems: [{ reason: "StorageShrinkRefused", message: "cannot shrink" }] }),
    );
    assert.equal(status.phase, "Degraded");
    assert.equal(condition(status, "Degraded")?.status, "True");
    assert.equal(condition(status, "Degraded")?.reason, "StorageShrinkRefused");
    assert.equal(condition(status, "Ready")?.status, "True");
  });

  it("is Suspended when suspended, and Progressing while a rollout runs", () => {
    const suspended = computeStatus(observe({ statefulSet: aStatefulSet(0) }, anOffsiteServer().suspended()));
    assert.equal(suspended.phase, "Suspended");
    assert.equal(condition(suspended, "Ready")?.reason, "Suspended");
    const rolling = computeStatus(observe({ statefulSet: aStatefulSet(1, { updating: true }) }));
    assert.equal(condition(rolling, "Progressing")?.status, "True");
  });
});
