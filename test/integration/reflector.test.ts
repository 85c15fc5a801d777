/**
 * The reflector against a real API server: it survives failing lists (the CRD is not
 * there yet) with back-off, syncs when it appears, reports add/modify/delete, and its
 * periodic relist reports a deletion it never saw as an event.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { pino } from "pino";
import { GROUP, VERSION } from "../../crds/definitions.ts";
import { installCrds } from "../../crds/install.ts";
import { Reflector, type ChangeType } from "../../operator/runtime/reflector.ts";
import { useTestCluster } from "../cluster/testCluster.ts";
import { eventually } from "./operatorProcess.ts";

const cluster = useTestCluster({ crds: false });

describe("Reflector", () => {
  it("retries until the resource exists, then follows adds, changes and deletes, and relists", async () => {
    const custom = cluster.kc.makeApiClient(CustomObjectsApi);
    const changes: [ChangeType, string][] = [];
    let restarts = 0;
    const reflector = new Reflector<KubernetesObject>({
      resource: "offsiteservers",
      kc: cluster.kc,
      path: `/apis/${GROUP}/${VERSION}/offsiteservers`,
      list: () =>
        custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: "offsiteservers",
        }) as Promise<{
          items: KubernetesObject[];
        }>,
      onChange: (object, type) => changes.push([type, object.metadata!.name!]),
      relistEveryMs: 1500,
      logger: pino({ level: "silent" }),
      onRestart: () => restarts++,
    });
    const started = reflector.start();
    await eventually("a failed list", () => (restarts >= 1 ? true : undefined), 10_000);
    assert.equal(reflector.hasSynced, false);
    await installCrds(cluster.kc);
    await started;
    assert.ok(reflector.hasSynced);

    const ref = {
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: "offsiteservers",
      name: "watched",
    };
    await custom.createNamespacedCustomObject({
      ...ref,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "OffsiteServer",
        metadata: { name: "watched" },
        spec: {},
      },
    });
    await eventually(
      "ADDED",
      () => (changes.some(([t, n]) => t === "ADDED" && n === "watched") ? true : undefined),
      10_000,
    );
    await custom.patchNamespacedCustomObject(
      { ...ref, body: { spec: { port: 6000 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await eventually("MODIFIED", () => (changes.some(([t]) => t === "MODIFIED") ? true : undefined), 10_000);
    await custom.deleteNamespacedCustomObject(ref);
    await eventually(
      "DELETED",
      () => (changes.some(([t, n]) => t === "DELETED" && n === "watched") ? true : undefined),
      10_000,
    );
    assert.equal(reflector.cache.size, 0);

    // An object the cache holds but the server does not (a deletion missed while
    // disconnected): the next relist reports it deleted.
    const activityBefore = reflector.lastActivityAt;
    reflector.cache.set(`${cluster.namespace}/ghost`, {
      metadata: { name: "ghost", namespace: cluster.namespace },
    });
    await eventually(
      "the relist to report the ghost deleted",
      () => (changes.some(([t, n]) => t === "DELETED" && n === "ghost") ? true : undefined),
      10_000,
    );
    assert.ok(reflector.lastActivityAt > activityBefore, "a relist counts as a sign of life");
    await reflector.stop();
  });
});
