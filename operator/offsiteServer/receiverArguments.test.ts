/**
 * The receiver container's command line, for several OffsiteServer specs, run through
 * the agent's own parser: what the operator renders is what the agent accepts, and every
 * spec field meant for the receiver arrives with its value.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_CONTROL_PORT } from "../../contract/reports.ts";
import { DEFAULT_RETENTION } from "../../contract/retention.ts";
import { DEFAULT_HEALTH_PORT, DEFAULT_IDLE_TIMEOUT_MS } from "../../contract/roles.ts";
import { agentCommandLineOf } from "../../test/contract/agentCommandLine.ts";
import { AGENT_CONTROL_CERTS_DIR, AGENT_CONTROL_SECRET } from "../agentControl/names.ts";
import { RECEIVER_CERTS_DIR, RECEIVER_DATA_DIR, desiredStatefulSet } from "./desiredState.ts";
import { aReceiverContainer, anOffsiteServer } from "./fixtures.ts";

function receiverCommandLine(fields: Record<string, unknown>) {
  const container = aReceiverContainer(fields);
  const mounts = Object.fromEntries((container.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
  return { commandLine: agentCommandLineOf(container), container, mounts };
}

describe("the receiver's command line", () => {
  it("is accepted by the agent for the defaults, with the contract's defaults", () => {
    const { commandLine, mounts } = receiverCommandLine({});
    assert.equal(commandLine.role, "receive");
    assert.deepEqual(commandLine.options, {
      root: RECEIVER_DATA_DIR,
      certs: RECEIVER_CERTS_DIR,
      host: "0.0.0.0",
      port: 5722,
      ...DEFAULT_RETENTION,
      maxConcurrentJobs: 16,
      suspendedSources: [],
      idleTimeout: DEFAULT_IDLE_TIMEOUT_MS,
      healthPort: DEFAULT_HEALTH_PORT,
      controlPort: DEFAULT_CONTROL_PORT,
      controlCerts: AGENT_CONTROL_CERTS_DIR,
    });
    // The paths it names are where the volumes are mounted.
    assert.equal(mounts.data, RECEIVER_DATA_DIR);
    assert.equal(mounts.tls, RECEIVER_CERTS_DIR);
    assert.equal(mounts.control, AGENT_CONTROL_CERTS_DIR);
  });

  it("serves its control endpoint from the namespace's agent control Secret, mounted optional and read-only", () => {
    const server = anOffsiteServer();
    const pod = desiredStatefulSet({
      server: server.identity(),
      spec: server.spec(),
      defaultImage: "offsite/agent:test",
      tlsChecksum: "c1",
    }).spec!.template.spec!;
    const container = pod.containers[0]!;
    assert.deepEqual(
      pod.volumes?.find((v) => v.name === "control")?.secret,
      { secretName: AGENT_CONTROL_SECRET, defaultMode: 0o440, optional: true },
      "a pod never waits for the control Secret",
    );
    assert.equal(container.volumeMounts?.find((m) => m.name === "control")?.readOnly, true);
    assert.deepEqual(
      container.ports?.find((p) => p.name === "control"),
      {
        name: "control",
        containerPort: DEFAULT_CONTROL_PORT,
        protocol: "TCP",
      },
    );
  });

  it("puts its data, probe and control endpoints on three different ports, whatever spec.port is", () => {
    for (const port of [5722, DEFAULT_CONTROL_PORT, DEFAULT_HEALTH_PORT, DEFAULT_HEALTH_PORT + 1, 6000]) {
      const { commandLine, container } = receiverCommandLine({ port });
      const { healthPort, controlPort } = commandLine.options as { healthPort: number; controlPort: number };
      assert.equal(
        new Set([port, healthPort, controlPort]).size,
        3,
        `port ${port}: ${container.args?.join(" ")}`,
      );
      assert.equal(container.ports!.find((p) => p.name === "control")!.containerPort, controlPort);
      assert.equal(commandLine.options.port, port);
      if (port !== DEFAULT_CONTROL_PORT && port !== DEFAULT_HEALTH_PORT)
        assert.equal(controlPort, DEFAULT_CONTROL_PORT, "the default unless something else takes it");
    }
  });

  it("serves its probes on the port the pod's HTTP probes ask, never the receiver's own", () => {
    for (const port of [5722, DEFAULT_HEALTH_PORT]) {
      const { commandLine, container } = receiverCommandLine({ port });
      const health = container.ports!.find((p) => p.name === "health")!;
      assert.equal(commandLine.options.healthPort, health.containerPort);
      assert.notEqual(health.containerPort, port);
      assert.deepEqual(container.readinessProbe?.httpGet, { path: "/readyz", port: "health" });
      assert.deepEqual(container.livenessProbe?.httpGet, { path: "/healthz", port: "health" });
    }
  });

  const specs: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["a port", { port: 6000 }, { port: 6000 }],
    [
      "a full retention",
      { retention: { keepLast: 3, keepDaily: 0, keepWeekly: 2, keepMonthly: 12 } },
      { keepLast: 3, keepDaily: 0, keepWeekly: 2, keepMonthly: 12 },
    ],
    [
      "a partial retention (the rest from the defaults)",
      { retention: { keepLast: 30 } },
      { ...DEFAULT_RETENTION, keepLast: 30 },
    ],
    ["a concurrency limit", { maxConcurrentJobs: 1 }, { maxConcurrentJobs: 1 }],
    ["an idle timeout", { idleTimeout: "1h30m" }, { idleTimeout: 90 * 60_000 }],
    [
      "suspended sources, UID and readable forms",
      { suspendedSources: ["orders-db", "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44"] },
      { suspendedSources: ["orders-db", "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44"] },
    ],
  ];
  for (const [what, fields, expected] of specs) {
    it(`carries ${what} to the agent`, () => {
      const { commandLine, container } = receiverCommandLine(fields);
      for (const [key, value] of Object.entries(expected))
        assert.deepEqual(commandLine.options[key], value, `${key} in ${container.args?.join(" ")}`);
    });
  }

  it("fails the check for an argument the agent does not know", () => {
    assert.throws(
      () => agentCommandLineOf({ name: "receiver", args: ["receive", "--root=/data", "--tls-cert=/x"] }),
      /the agent refuses container receiver's args .*Unknown option '--tls-cert'/,
    );
  });
});
