/**
 * Two operator processes against one API server: exactly one reconciles; killing the
 * leader hands over within the Lease duration; SIGTERM hands over at once; a crash in
 * the middle of reconciling converges to the same objects after a restart.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../../crds/definitions.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import { eventually, startOperator, type OperatorProcess } from "./operatorProcess.ts";

const cluster = useTestCluster({ controllers: true });
const LEASE_MS = 3000;
const running: OperatorProcess[] = [];

async function operatorNamed(identity: string): Promise<OperatorProcess> {
  const op = await startOperator({
    kubeconfig: cluster.kubeconfigPath,
    namespace: cluster.namespace,
    identity,
    leaseDuration: `${LEASE_MS}ms`,
    renewDeadline: "2s",
    retryPeriod: "250ms",
  });
  running.push(op);
  return op;
}

async function createServer(name: string): Promise<void> {
  await cluster.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: cluster.namespace,
    plural: "offsiteservers",
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "OffsiteServer",
      metadata: { name },
      spec: { storage: { size: "1Gi" } },
    },
  });
}

async function isReady(name: string): Promise<boolean> {
  const server = (await cluster.kc
    .makeApiClient(CustomObjectsApi)
    .getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: "offsiteservers",
      name,
    })
    .catch(() => undefined)) as { status?: { conditions?: { type: string; status: string }[] } } | undefined;
  return server?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;
}

const reconciles = async (op: OperatorProcess) =>
  ((await op.metric("offsite_reconcile_total", { kind: "OffsiteServer", result: "success" })) ?? 0) +
  ((await op.metric("offsite_reconcile_total", { kind: "OffsiteServer", result: "error" })) ?? 0);

describe("operator high availability", () => {
  after(async () => {
    await Promise.all(running.map((op) => op.stop("SIGKILL")));
  });

  it("with two processes exactly one leads and reconciles; killing it hands over within the Lease duration", async () => {
    const a = await operatorNamed("op-a");
    const b = await operatorNamed("op-b");
    const leader = await eventually("a leader", async () => {
      const [la, lb] = [
        await a.metric("offsite_leader_is_leader"),
        await b.metric("offsite_leader_is_leader"),
      ];
      if (la === 1 && lb === 0) return a;
      if (lb === 1 && la === 0) return b;
      return undefined;
    });
    const follower = leader === a ? b : a;
    const lease = await cluster.kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: "offsite-operator", namespace: cluster.namespace });
    assert.equal(lease.spec?.holderIdentity, leader.identity);

    for (const name of ["one", "two", "three"]) await createServer(name);
    await eventually(
      "three Ready servers",
      async () =>
        (await isReady("one")) && (await isReady("two")) && (await isReady("three")) ? true : undefined,
      60_000,
      [a, b],
    );
    assert.ok((await reconciles(leader)) > 0, "the leader reconciled");
    assert.equal(await reconciles(follower), 0, "the follower reconciled nothing");
    assert.ok(!follower.logs().includes("watches synced"), "the follower never started its controllers");
    assert.ok(
      follower.logLines().every((l) => l.kind !== "OffsiteServer"),
      "no follower log line is about an OffsiteServer",
    );

    const killedAt = Date.now();
    await leader.stop("SIGKILL");
    await eventually(
      "the follower to lead",
      async () => ((await follower.metric("offsite_leader_is_leader")) === 1 ? true : undefined),
      15_000,
    );
    const handover = Date.now() - killedAt;
    // It must wait for the Lease to expire (no earlier), and not much longer.
    assert.ok(handover <= LEASE_MS + 2000, `took over after ${handover} ms with a ${LEASE_MS} ms Lease`);

    await createServer("four");
    await eventually(
      "the new leader reconciles a new server",
      async () => ((await isReady("four")) ? true : undefined),
      60_000,
      [follower],
    );
    assert.ok((await reconciles(follower)) > 0);
    await follower.stop("SIGTERM");
  });

  it("a leader stopped with SIGTERM releases the Lease, so the standby leads at once", async () => {
    const c = await operatorNamed("op-c");
    await eventually(
      "op-c leads",
      async () => ((await c.metric("offsite_leader_is_leader")) === 1 ? true : undefined),
      15_000,
    );
    const d = await operatorNamed("op-d");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await d.metric("offsite_leader_is_leader"), 0);
    const stoppedAt = Date.now();
    assert.equal(await c.stop("SIGTERM"), 0, "graceful exit");
    assert.ok(c.logs().includes("released the leader Lease"));
    await eventually(
      "op-d leads",
      async () => ((await d.metric("offsite_leader_is_leader")) === 1 ? true : undefined),
      15_000,
    );
    assert.ok(Date.now() - stoppedAt < LEASE_MS, "no wait for the Lease to expire");
    await d.stop("SIGTERM");
  });

  it("killed in the middle of reconciling, a restarted operator converges to the same objects with no duplicates", async () => {
    const names = ["crash-a", "crash-b", "crash-c", "crash-d"];
    const first = await operatorNamed("op-e");
    await eventually(
      "op-e leads",
      async () => ((await first.metric("offsite_leader_is_leader")) === 1 ? true : undefined),
      15_000,
    );
    for (const name of names) await createServer(name);
    // Kill as soon as the first certificate is issued: some servers are half done.
    await eventually(
      "a reconcile in progress",
      () => (first.logs().includes("issued the receiver's serving certificate") ? true : undefined),
      30_000,
      [first],
    );
    await first.stop("SIGKILL");
    const second = await operatorNamed("op-f");
    for (const name of names) {
      await eventually(
        `${name} Ready after the restart`,
        async () => ((await isReady(name)) ? true : undefined),
        60_000,
        [second],
      );
    }
    const namespace = cluster.namespace;
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    const core = cluster.kc.makeApiClient(CoreV1Api);
    for (const name of names) {
      const selector = `offsite.dev/offsiteserver=${name}`;
      assert.equal(
        (await apps.listNamespacedStatefulSet({ namespace, labelSelector: selector })).items.length,
        1,
        `${name}: one StatefulSet`,
      );
      assert.equal(
        (await core.listNamespacedService({ namespace, labelSelector: selector })).items.length,
        1,
        `${name}: one Service`,
      );
      assert.equal(
        (await core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector: selector })).items.length,
        1,
        `${name}: one claim`,
      );
      const secrets = (await core.listNamespacedSecret({ namespace, labelSelector: selector })).items
        .map((s) => s.metadata?.name)
        .sort();
      assert.deepEqual(secrets, [`${name}-ca`, `${name}-tls`]);
      assert.equal(
        (await core.listNamespacedPod({ namespace, labelSelector: selector })).items.length,
        1,
        `${name}: one pod`,
      );
    }
  });
});
