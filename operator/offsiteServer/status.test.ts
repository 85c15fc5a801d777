import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ReceiverReport } from "../../contract/reports.ts";
import { computeStatus, lastWords, type ObservedServer } from "./status.ts";
import { aClaim, aPod, aService, aStatefulSet, anOffsiteServer } from "./fixtures.ts";
import { pollablePodIp } from "./receiverPoll.ts";

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
    pod: aPod().build(),
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
    const starting = { statefulSet: aStatefulSet(0), pod: aPod().notReadyYet().build() };
    const first = computeStatus(observe(starting));
    assert.equal(first.phase, "Provisioning");
    assert.equal(condition(first, "Ready")?.reason, "ReceiverNotReady");
    assert.match(condition(first, "Ready")?.message ?? "", /readiness probe has not passed yet.*port 5722/);
    const later = computeStatus(
      observe({ ...starting, previous: first, now: new Date(now.getTime() + 60_000) }),
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

  describe("readiness from the receiver pod", () => {
    const ready = (o: Partial<ObservedServer>) => condition(computeStatus(observe(o)), "Ready")!;

    it("is Ready=True only when the pod is Running and its Ready condition is True", () => {
      assert.equal(ready({ pod: aPod().build() }).status, "True");
      assert.equal(ready({ pod: aPod().build() }).reason, "ReceiverReady");
      // The StatefulSet's count alone is not enough, nor is a pod on its way out.
      assert.equal(ready({ pod: aPod().notReadyYet().build() }).status, "False");
      const leaving = ready({ pod: aPod().terminating().build() });
      assert.deepEqual([leaving.status, leaving.reason], ["False", "ReceiverNotReady"]);
      assert.match(leaving.message, /terminating/);
      // A pod of another server that happens to have the name is not ours.
      assert.equal(ready({ pod: aPod("other").build() }).status, "False");
    });

    it("reports a crash-looping receiver as CrashLoopBackOff with its exit code and last words", () => {
      const agentLine = JSON.stringify({
        event: "error",
        message:
          "Unknown option '--tls-cert'. To specify a positional argument starting with a '-', place it at the end\n(offsite --help shows how it is used)",
      });
      const status = computeStatus(
        observe({
          statefulSet: aStatefulSet(0),
          pod: aPod()
            .crashLooping({ exitCode: 2, message: `${agentLine}\n`, restarts: 4 })
            .build(),
        }),
      );
      const crash = condition(status, "Ready")!;
      assert.equal(crash.status, "False");
      assert.equal(crash.reason, "CrashLoopBackOff");
      assert.match(crash.message, /exited with code 2/);
      assert.match(crash.message, /Unknown option '--tls-cert'/);
      assert.match(crash.message, /restarted 4 times/);
      assert.match(crash.message, /kubectl logs -n backups vault-0 -c receiver --previous/);
      assert.doesNotMatch(crash.message, /\n|"event"/, "one line, the agent's message without its JSON");
      assert.equal(status.phase, "Degraded");
      assert.equal(status.endpoint, "vault.backups.svc:5722", "the endpoint is still where sources go");
    });

    it("takes the last line of a termination message that is not the agent's JSON, and bounds it", () => {
      assert.equal(lastWords("starting\npanic: out of cheese\n\n"), "panic: out of cheese");
      assert.equal(lastWords(undefined), undefined);
      assert.equal(lastWords("x".repeat(5000))?.length, 1024);
      const plain = ready({ pod: aPod().crashLooping({ exitCode: 137 }).build() });
      assert.equal(plain.reason, "CrashLoopBackOff");
      assert.match(plain.message, /its last run exited with code 137 \(Error\)\. It restarted 3 times\./);
    });

    it("reports an image that cannot be pulled with the container's reason and the image to check", () => {
      const pull = ready({
        pod: aPod().waiting("ImagePullBackOff", 'Back-off pulling image "offsite/agent:test"').build(),
      });
      assert.deepEqual([pull.status, pull.reason], ["False", "ImagePullBackOff"]);
      assert.match(pull.message, /Back-off pulling image "offsite\/agent:test"/);
      assert.match(pull.message, /Check the image offsite\/agent:test \(spec\.image/);
      const never = ready({ pod: aPod().waiting("ErrImageNeverPull").build() });
      assert.equal(never.reason, "ErrImageNeverPull");
      const config = ready({
        pod: aPod().waiting("CreateContainerConfigError", 'secret "vault-tls" not found').build(),
      });
      assert.equal(config.reason, "CreateContainerConfigError");
      assert.match(config.message, /secret "vault-tls" not found.*kubectl describe pod -n backups vault-0/);
      // Creating the container is a wait, not a failure.
      const creating = computeStatus(observe({ pod: aPod().waiting("ContainerCreating").build() }));
      assert.equal(condition(creating, "Ready")?.reason, "ReceiverNotReady");
      assert.equal(creating.phase, "Provisioning");
    });

    it("reports an unschedulable pod with the scheduler's reason and message", () => {
      const status = computeStatus(
        observe({
          statefulSet: aStatefulSet(0),
          pod: aPod()
            .unschedulable("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
            .build(),
        }),
      );
      const pending = condition(status, "Ready")!;
      assert.deepEqual([pending.status, pending.reason], ["False", "Unschedulable"]);
      assert.match(
        pending.message,
        /cannot be scheduled: 0\/1 nodes are available: .*affinity\/selector\. Check/,
      );
      assert.match(pending.message, /spec\.nodeSelector.*data claim vault-data/);
      assert.equal(status.phase, "Provisioning");
    });

    it("waits for a pod that does not exist, whatever the StatefulSet says", () => {
      const absent = computeStatus(observe({ statefulSet: aStatefulSet(0), pod: undefined }));
      const waiting = condition(absent, "Ready")!;
      assert.deepEqual([waiting.status, waiting.reason], ["False", "ReceiverNotReady"]);
      assert.equal(
        waiting.message,
        "Waiting for pod vault-0 to be created; StatefulSet vault has 0 of 1 replicas ready.",
      );
      assert.equal(absent.phase, "Provisioning");
      // A stale StatefulSet count does not make a missing pod ready.
      assert.equal(condition(computeStatus(observe({ pod: undefined })), "Ready")?.status, "False");
      const nothing = computeStatus(observe({ statefulSet: undefined, pod: undefined }));
      assert.equal(nothing.phase, "Pending");
    });
  });

  describe("check-ins and usage from the receiver's report", () => {
    const SITE = "5f0c9a7e-1b2d-4e3f-8a9b-0c1d2e3f4a5b";
    const report: ReceiverReport = {
      reportedAt: "2026-11-21T11:59:58Z",
      volume: { totalBytes: 10_000_000_000, usedBytes: 2_500_000_000 },
      jobsRunning: 0,
      sources: [
        {
          site: SITE,
          source: "orders",
          lastSessionAt: "2026-11-21T11:00:00Z",
          lastOutcome: "committed",
          versions: 4,
          latestVersion: "20261121T110000Z",
          bytesStored: 123_456,
        },
      ],
    };
    const expectedSources = [
      { site: SITE, source: "orders", name: "apps/orders" },
      { site: SITE, source: "billing", name: "apps/billing" },
    ];

    it("lists the reported and the expected sources, takes used bytes, and says SourcesReported", () => {
      const status = computeStatus(
        observe({ receiverPoll: { ok: true, report }, expectedSources, controlAddress: "10.0.0.7:5723" }),
      );
      assert.deepEqual(status.sources, [
        { site: SITE, source: "billing", name: "apps/billing", state: "NeverCheckedIn" },
        {
          site: SITE,
          source: "orders",
          name: "apps/orders",
          state: "Online",
          lastCheckIn: "2026-11-21T11:00:00Z",
          versions: 4,
          latestVersion: "20261121T110000Z",
          bytesStored: 123_456,
        },
      ]);
      assert.deepEqual(status.capacity, {
        totalBytes: 10 * 2 ** 30,
        usedBytes: 2_500_000_000,
        reportedAt: "2026-11-21T11:59:58Z",
      });
      const reported = condition(status, "SourcesReported")!;
      assert.deepEqual([reported.status, reported.reason], ["True", "ReceiverReported"]);
      assert.match(reported.message, /1 sources and 2500000000 of 10000000000 bytes used/);
    });

    it("keeps the last report's sources and capacity when a poll fails, and says why", () => {
      const good = computeStatus(observe({ receiverPoll: { ok: true, report }, expectedSources }));
      const later = new Date(now.getTime() + 60_000);
      const failed = computeStatus(
        observe({
          previous: good,
          now: later,
          expectedSources,
          controlAddress: "10.0.0.7:5723",
          receiverPoll: {
            ok: false,
            reason: "ReceiverUnreachable",
            message: "cannot connect to the agent at 10.0.0.7:5723: connect ECONNREFUSED",
          },
        }),
      );
      assert.deepEqual(failed.sources, good.sources);
      assert.deepEqual(failed.capacity, good.capacity);
      const condition_ = condition(failed, "SourcesReported")!;
      assert.deepEqual([condition_.status, condition_.reason], ["False", "ReceiverUnreachable"]);
      assert.equal(condition_.lastTransitionTime, later.toISOString());
      assert.match(condition_.message, /at 10\.0\.0\.7:5723 failed: cannot connect .*ECONNREFUSED\./);
      assert.match(condition_.message, /keep the report of 2026-11-21T11:59:58Z/);
      assert.match(condition_.message, /Secret offsite-agent-control of namespace backups/);
      // A day on without an answer: the kept check-in is judged again (Offline), never dropped.
      const dayLater = computeStatus(
        observe({ previous: failed, now: new Date(now.getTime() + 26 * 3600_000), expectedSources }),
      );
      assert.equal(dayLater.sources?.find((s) => s.source === "orders")?.state, "Offline");
      assert.equal(dayLater.sources?.length, 2);
      assert.equal(condition(dayLater, "SourcesReported")?.reason, "ReceiverNotReady");
    });

    it("marks suspended sources, and asks only a receiver that is Running and Ready", () => {
      const status = computeStatus(
        observe(
          { receiverPoll: { ok: true, report }, expectedSources },
          anOffsiteServer().with({ suspendedSources: ["orders"] }),
        ),
      );
      assert.equal(status.sources?.find((s) => s.source === "orders")?.state, "Suspended");
      const ready = aPod().build();
      assert.equal(pollablePodIp({ ...ready, status: { ...ready.status, podIP: "10.0.0.7" } }), "10.0.0.7");
      assert.equal(pollablePodIp(ready), undefined, "no IP yet");
      for (const pod of [aPod().notReadyYet().build(), aPod().terminating().build(), undefined])
        assert.equal(
          pollablePodIp(pod && { ...pod, status: { ...pod.status, podIP: "10.0.0.7" } }),
          undefined,
        );
    });
  });
});
