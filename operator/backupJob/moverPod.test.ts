/**
 * The mover pod, with its container's command line run through the agent's own parser:
 * a backup mover reads the claim and nothing else, a restore mover writes it and is the
 * only agent that takes restores.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { parseFlags } from "../../contract/flags.ts";
import { DEFAULT_CONTROL_PORT } from "../../contract/reports.ts";
import { agentFlags, DEFAULT_HEALTH_PORT, ROLE_FLAGS } from "../../contract/roles.ts";
import { agentCommandLineOf } from "../../test/contract/agentCommandLine.ts";
import { AGENT_CONTROL_CERTS_DIR, AGENT_CONTROL_SECRET } from "../agentControl/names.ts";
import {
  desiredMoverPod,
  moverArguments,
  MOVER_CONTAINER,
  RUN_ANNOTATION,
  type MoverPodInputs,
} from "./moverPod.ts";
import { JOB_LABEL } from "./names.ts";

const job = { name: "orders", namespace: "shop", uid: "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44" };

function aMover(overrides: Partial<MoverPodInputs> = {}): V1Pod {
  return desiredMoverPod({
    job,
    runId: "20261202T031500Z",
    image: "ghcr.io/offsite/offsite:0.1.0",
    claimName: "orders-data",
    mountPath: "/var/lib/orders",
    writable: false,
    ...overrides,
  });
}

const containerOf = (pod: V1Pod): V1Container => {
  assert.equal(pod.spec?.containers.length, 1);
  const container = pod.spec.containers[0]!;
  assert.equal(container.name, MOVER_CONTAINER);
  return container;
};

/**
 * The container's args as the agent reads them: through the CLI's parser once the `agent`
 * role is registered in ROLE_FLAGS, else (before then) through the role's flag table.
 */
function agentOptionsOf(container: V1Container): Record<string, unknown> {
  if (Object.hasOwn(ROLE_FLAGS, "agent")) {
    const commandLine = agentCommandLineOf(container);
    assert.equal(commandLine.role, "agent");
    assert.deepEqual(commandLine.positionals, []);
    return commandLine.options;
  }
  assert.equal(container.command, undefined, "the agent is started by its args");
  const args = container.args ?? [];
  assert.equal(args[0], "agent");
  const parsed = parseFlags(agentFlags, args.slice(1), "agent");
  assert.deepEqual(parsed.positionals, []);
  return parsed.options;
}

describe("the mover pod's command line", () => {
  for (const writable of [false, true]) {
    it(`is accepted by the agent for a ${writable ? "restore" : "backup"} mover`, () => {
      const container = containerOf(aMover({ writable }));
      assert.deepEqual(container.args, moverArguments(writable));
      assert.deepEqual(agentOptionsOf(container), {
        controlCerts: AGENT_CONTROL_CERTS_DIR,
        host: "0.0.0.0",
        controlPort: DEFAULT_CONTROL_PORT,
        healthPort: DEFAULT_HEALTH_PORT,
        allowRestore: writable,
        allowStandby: false,
      });
    });
  }

  it("serves control and probes on the ports the pod names, and reads the control Secret where it is mounted", () => {
    const container = containerOf(aMover());
    const options = agentOptionsOf(container);
    const ports: Record<string, number> = Object.fromEntries(
      (container.ports ?? []).map((p): [string, number] => [p.name ?? "", p.containerPort]),
    );
    assert.equal(options.controlPort, ports.control);
    assert.equal(options.healthPort, ports.health);
    assert.notEqual(ports.control, ports.health);
    assert.deepEqual(container.readinessProbe?.httpGet, { path: "/readyz", port: "health" });
    assert.deepEqual(container.livenessProbe?.httpGet, { path: "/healthz", port: "health" });
    const control = container.volumeMounts?.find((m) => m.name === "control");
    assert.deepEqual(control, { name: "control", mountPath: options.controlCerts, readOnly: true });
  });
});

describe("the mover pod", () => {
  it("of a backup mounts the claim read-only and may only read files", () => {
    const pod = aMover();
    const container = containerOf(pod);
    const data = container.volumeMounts?.find((m) => m.name === "data");
    assert.deepEqual(data, { name: "data", mountPath: "/var/lib/orders", readOnly: true });
    const volume = pod.spec?.volumes?.find((v) => v.name === "data");
    assert.deepEqual(volume?.persistentVolumeClaim, { claimName: "orders-data", readOnly: true });
    assert.deepEqual(container.securityContext?.capabilities, { drop: ["ALL"], add: ["DAC_READ_SEARCH"] });
    assert.equal(agentOptionsOf(container).allowRestore, false);
  });

  it("of a restore mounts the claim writable, takes restores, and cannot merely read around permissions", () => {
    const pod = aMover({ writable: true });
    const container = containerOf(pod);
    const data = container.volumeMounts?.find((m) => m.name === "data");
    assert.equal(data?.readOnly, false);
    assert.equal(pod.spec?.volumes?.find((v) => v.name === "data")?.persistentVolumeClaim?.readOnly, false);
    const capabilities = container.securityContext?.capabilities;
    assert.deepEqual(capabilities?.drop, ["ALL"]);
    assert.equal(capabilities?.add?.includes("DAC_READ_SEARCH"), false);
    assert.ok(capabilities?.add?.includes("CHOWN"), "it gives files back their owners");
    assert.ok(capabilities?.add?.includes("DAC_OVERRIDE"), "it writes into directories of any owner");
    assert.equal(agentOptionsOf(container).allowRestore, true);
  });

  it("runs without a service account token, privilege escalation or a writable root", () => {
    for (const writable of [false, true]) {
      const pod = aMover({ writable });
      assert.equal(pod.spec?.automountServiceAccountToken, false);
      assert.equal(pod.spec?.enableServiceLinks, false);
      const security = containerOf(pod).securityContext;
      assert.equal(security?.allowPrivilegeEscalation, false);
      assert.equal(security?.readOnlyRootFilesystem, true);
      assert.equal(security?.privileged, undefined);
      assert.deepEqual(security?.seccompProfile, { type: "RuntimeDefault" });
    }
  });

  it("mounts the namespace's control Secret optionally, so it never waits for it", () => {
    const volume = aMover().spec?.volumes?.find((v) => v.name === "control");
    assert.deepEqual(volume?.secret, { secretName: AGENT_CONTROL_SECRET, optional: true });
  });

  it("runs on the claim's node when given, and carries the subPath", () => {
    assert.equal(aMover({ nodeName: "node-a" }).spec?.nodeName, "node-a");
    assert.equal("nodeName" in (aMover().spec ?? {}), false);
    const data = containerOf(aMover({ subPath: "tenants/a" })).volumeMounts?.find((m) => m.name === "data");
    assert.equal(data?.subPath, "tenants/a");
    assert.equal(
      "subPath" in (containerOf(aMover()).volumeMounts?.find((m) => m.name === "data") ?? {}),
      false,
    );
  });

  it("belongs to its job: name, labels, owner and run", () => {
    const pod = aMover({ image: "registry.local/offsite:dev" });
    assert.equal(pod.metadata?.name, "orders-offsite-mover");
    assert.equal(pod.metadata?.namespace, "shop");
    assert.equal(pod.metadata?.labels?.[JOB_LABEL], "orders");
    assert.equal(pod.metadata?.labels?.["app.kubernetes.io/component"], "mover");
    assert.equal(pod.metadata?.labels?.["app.kubernetes.io/managed-by"], "offsite-operator");
    assert.equal(pod.metadata?.annotations?.[RUN_ANNOTATION], "20261202T031500Z");
    assert.deepEqual(
      pod.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.uid]),
      [["BackupJob", "orders", job.uid]],
    );
    assert.equal(containerOf(pod).image, "registry.local/offsite:dev");
    assert.equal(containerOf(pod).command, undefined);
  });
});
