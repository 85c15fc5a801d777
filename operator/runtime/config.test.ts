import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "./config.ts";

describe("operator configuration", () => {
  it("has working defaults, and flags win over environment variables", () => {
    const defaults = loadConfig([], {});
    assert.equal(defaults.namespace, "offsite-system");
    assert.equal(defaults.leaderElection, true);
    assert.equal(defaults.leaseDuration, 15_000);
    assert.equal(defaults.metricsAddress, ":8080");
    const mixed = loadConfig(["--lease-duration=4s"], {
      OFFSITE_LEASE_DURATION: "9s",
      OFFSITE_RENEW_DEADLINE: "3s",
      OFFSITE_CONCURRENCY: "8",
    });
    assert.equal(mixed.leaseDuration, 4000);
    assert.equal(mixed.concurrency, 8);
  });

  it("serves the injection webhook on :9443 by default, behind the webhook Service; off turns it off", () => {
    const defaults = loadConfig([], {});
    assert.equal(defaults.webhookAddress, ":9443");
    assert.equal(defaults.webhookService, "offsite-operator-webhook");
    assert.equal(defaults.webhookUrl, undefined);
    assert.deepEqual(defaults.webhookHost, []);
    assert.deepEqual(
      [defaults.agentCpuRequest, defaults.agentMemoryRequest, defaults.agentMemoryLimit],
      ["10m", "32Mi", "256Mi"],
    );
    assert.equal(loadConfig(["--webhook-address=off"], {}).webhookAddress, undefined);
    assert.equal(loadConfig([], { OFFSITE_WEBHOOK_ADDRESS: "" }).webhookAddress, undefined);
    const local = loadConfig(
      [
        "--webhook-address=127.0.0.1:9555",
        "--webhook-url=https://127.0.0.1:9555/mutate-pods",
        "--webhook-host=127.0.0.1, localhost",
        "--agent-memory-limit=1Gi",
      ],
      {},
    );
    assert.equal(local.webhookAddress, "127.0.0.1:9555");
    assert.equal(local.webhookUrl, "https://127.0.0.1:9555/mutate-pods");
    assert.deepEqual(local.webhookHost, ["127.0.0.1", "localhost"]);
    assert.equal(local.agentMemoryLimit, "1Gi");
  });

  it("refuses bad values naming the flag and what it takes", () => {
    assert.throws(
      () => loadConfig(["--lease-duration=soon"], {}),
      /--lease-duration: must be a duration like 500ms, 15s, 2m or 1h30m/,
    );
    assert.throws(
      () => loadConfig(["--renew-deadline=20s"], {}),
      /--renew-deadline: --renew-deadline must be shorter than --lease-duration/,
    );
    assert.throws(() => loadConfig([], { OFFSITE_CONCURRENCY: "0" }), /--concurrency/);
    assert.throws(() => loadConfig(["--metrics-address=8080"], {}), /--metrics-address: must be host:port/);
    assert.throws(() => loadConfig(["--no-such-flag=1"], {}), /Unknown option '--no-such-flag'/);
    assert.throws(() => loadConfig(["--webhook-address=9443"], {}), /--webhook-address: must be host:port/);
    assert.throws(
      () => loadConfig(["--webhook-url=http://x/mutate-pods"], {}),
      /--webhook-url: must be an https/,
    );
    assert.throws(
      () => loadConfig(["--agent-cpu-request=lots"], {}),
      /--agent-cpu-request: must be a CPU quantity/,
    );
    assert.throws(
      () => loadConfig(["--agent-memory-limit=big"], {}),
      /--agent-memory-limit: must be a memory/,
    );
    assert.throws(
      () => loadConfig(["--agent-memory-request=1Gi"], {}),
      /--agent-memory-request: --agent-memory-request must not exceed --agent-memory-limit/,
    );
  });
});
