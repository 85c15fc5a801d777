/**
 * The injection decision for the pods of a ReplicationPair's workloads: a standby's agent
 * may write (writable mounts, --allow-standby, the capabilities to write over the app's
 * files), a primary's only reads and keeps its journal in an emptyDir; a pod of neither side
 * and of no BackupJob is left alone.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SETTINGS, aJob, aPod, sidecarCommandLine } from "./fixtures.ts";
import { AGENT_STATE_DIR, STATE_VOLUME, injectionFor, type InjectionPairSide } from "./sidecarInjection.ts";

const sides: InjectionPairSide[] = [
  { pair: "shop-pair", side: "primary", selector: { matchLabels: { app: "shop", side: "a" } } },
  { pair: "shop-pair", side: "standby", selector: { matchLabels: { app: "shop", side: "b" } } },
];
const podOf = (side: string) => aPod({ labels: { app: "shop", side, "offsite.dev/inject": "true" } });

describe("sidecar injection for a ReplicationPair", () => {
  it("gives the standby's agent writable data mounts and the standby role", () => {
    const decision = injectionFor(podOf("b"), [], SETTINGS, sides);
    assert.ok(decision.inject);
    assert.deepEqual(decision.pairs, ["shop-pair/standby"]);
    const uploads = decision.container.volumeMounts!.find((m) => m.mountPath === "/var/www/uploads")!;
    assert.equal(uploads.readOnly, undefined);
    assert.equal(sidecarCommandLine(decision.container).options.allowStandby, true);
    assert.deepEqual(decision.container.securityContext?.capabilities?.add, ["DAC_OVERRIDE", "FOWNER"]);
    assert.equal(decision.container.securityContext?.readOnlyRootFilesystem, true);
  });

  it("keeps the primary's agent a reader, with its journal in an emptyDir of its own", () => {
    const decision = injectionFor(podOf("a"), [], SETTINGS, sides);
    assert.ok(decision.inject);
    assert.deepEqual(decision.pairs, ["shop-pair/primary"]);
    const uploads = decision.container.volumeMounts!.find((m) => m.mountPath === "/var/www/uploads")!;
    assert.equal(uploads.readOnly, true);
    assert.equal(sidecarCommandLine(decision.container).options.allowStandby, false);
    assert.ok(
      decision.container.volumeMounts!.some(
        (m) => m.name === STATE_VOLUME && m.mountPath === AGENT_STATE_DIR,
      ),
    );
    assert.ok(decision.volumes.some((v) => v.name === STATE_VOLUME && v.emptyDir));
  });

  it("injects one agent for a pod both backed up and replicated, as the pair's side needs", () => {
    const decision = injectionFor(
      podOf("b"),
      [aJob("nightly", { matchLabels: { app: "shop" } })],
      SETTINGS,
      sides,
    );
    assert.ok(decision.inject);
    assert.deepEqual([decision.jobs, decision.pairs], [["nightly"], ["shop-pair/standby"]]);
    assert.equal(decision.patch.filter((op) => op.path.startsWith("/spec/initContainers")).length, 1);
  });

  it("leaves a pod of neither side and of no BackupJob alone", () => {
    const decision = injectionFor(podOf("c"), [], SETTINGS, sides);
    assert.equal(decision.inject, false);
  });
});
