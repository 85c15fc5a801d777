/**
 * The full control plane: with kube-controller-manager, kube-scheduler and kwok, a
 * Deployment and a StatefulSet get Pods that are scheduled to the fake node and become
 * Ready, and garbage collection removes what an owner leaves behind.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AppsV1Api, CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { useTestCluster } from "../cluster/testCluster.ts";

const cluster = useTestCluster({ controllers: true });

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const isReady = (pod: V1Pod) =>
  pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

const podTemplate = (app: string) => ({
  metadata: { labels: { app } },
  spec: { containers: [{ name: "main", image: "offsite.dev/never-pulled:test" }] },
});

describe("a control plane with controllers and kwok", () => {
  it("runs a Deployment to Ready pods on the fake node", async () => {
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    const core = cluster.kc.makeApiClient(CoreV1Api);
    const namespace = cluster.namespace;
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: "web" },
        spec: { replicas: 2, selector: { matchLabels: { app: "web" } }, template: podTemplate("web") },
      },
    });
    const pods = await eventually("two Ready pods", async () => {
      const list = await core.listNamespacedPod({ namespace, labelSelector: "app=web" });
      return list.items.length === 2 && list.items.every(isReady) ? list.items : undefined;
    });
    assert.ok(pods.every((pod) => pod.spec?.nodeName === "kwok-node-0"));
    assert.ok(
      pods.every((pod) => pod.status?.podIP),
      "kwok assigns pod IPs",
    );
    const deployment = await eventually("the Deployment to report 2 available", async () => {
      const d = await apps.readNamespacedDeployment({ name: "web", namespace });
      return d.status?.availableReplicas === 2 ? d : undefined;
    });
    assert.equal(deployment.status?.readyReplicas, 2);

    // Garbage collection: deleting the Deployment removes its ReplicaSet and Pods.
    await apps.deleteNamespacedDeployment({ name: "web", namespace, propagationPolicy: "Background" });
    await eventually("the pods to be garbage collected", async () => {
      const list = await core.listNamespacedPod({ namespace, labelSelector: "app=web" });
      return list.items.length === 0 ? true : undefined;
    });
  });

  it("runs a StatefulSet to a Ready pod", async () => {
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    const namespace = cluster.namespace;
    await apps.createNamespacedStatefulSet({
      namespace,
      body: {
        metadata: { name: "receiver" },
        spec: {
          replicas: 1,
          serviceName: "receiver",
          selector: { matchLabels: { app: "receiver" } },
          template: podTemplate("receiver"),
        },
      },
    });
    const sts = await eventually("the StatefulSet to report 1 ready", async () => {
      const s = await apps.readNamespacedStatefulSet({ name: "receiver", namespace });
      return s.status?.readyReplicas === 1 ? s : undefined;
    });
    assert.equal(sts.status?.replicas, 1);
  });
});
