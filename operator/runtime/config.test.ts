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
  });
});
