import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ReceiverReport } from "../../contract/reports.ts";
import { createCertificateAuthority } from "../../pki/certificates.ts";
import { issueOperatorControlCertificate } from "../../pki/controlIdentities.ts";
import { MIN_POLL_INTERVAL_MS, ReceiverPoller, pollReceiver, type ReceiverPoll } from "./receiverPoll.ts";

const report = (n: number): ReceiverReport => ({
  reportedAt: new Date(n).toISOString(),
  volume: { totalBytes: 100, usedBytes: n },
  jobsRunning: 0,
  sources: [],
});

describe("polling the receiver", () => {
  const credentials = () => Promise.resolve({ cert: "c", key: "k", caPem: "ca" });
  const address = { host: "10.0.0.7", port: 5723 };

  it("reuses a poll younger than the minimum interval for the same pod, so its own status write does not poll again", async () => {
    let asked = 0;
    const poller = new ReceiverPoller(() => Promise.resolve({ ok: true, report: report(++asked) }));
    const first = await poller.poll("ns/vault", "uid-1", address, credentials, 1_000_000);
    const again = await poller.poll(
      "ns/vault",
      "uid-1",
      address,
      credentials,
      1_000_000 + MIN_POLL_INTERVAL_MS - 1,
    );
    assert.equal(asked, 1);
    assert.deepEqual(again, first);
    // Later, another pod, another address, another server: asked again.
    await poller.poll("ns/vault", "uid-1", address, credentials, 1_000_000 + MIN_POLL_INTERVAL_MS);
    assert.equal(asked, 2);
    const at = 1_000_000 + MIN_POLL_INTERVAL_MS + 1;
    await poller.poll("ns/vault", "uid-2", address, credentials, at);
    await poller.poll("ns/vault", "uid-2", { ...address, host: "10.0.0.8" }, credentials, at);
    await poller.poll("ns/other", "uid-2", { ...address, host: "10.0.0.8" }, credentials, at);
    assert.equal(asked, 5);
    poller.forget("ns/other");
    await poller.poll("ns/other", "uid-2", { ...address, host: "10.0.0.8" }, credentials, at);
    assert.equal(asked, 6);
  });

  it("turns a receiver that is not there into a reason and a message, never a throw", async () => {
    // A port nothing listens on: connection refused at once.
    const ca = await createCertificateAuthority("test operator CA", 3600_000);
    const operator = await issueOperatorControlCertificate(ca, 3600_000);
    const poll: ReceiverPoll = await pollReceiver(
      { host: "127.0.0.1", port: 1 },
      { cert: operator.certificatePem, key: operator.privateKeyPem, caPem: ca.certificatePem },
    );
    assert.equal(poll.ok, false);
    assert.ok(!poll.ok);
    assert.equal(poll.reason, "ReceiverUnreachable");
    assert.match(poll.message, /cannot connect to the agent at 127\.0\.0\.1:1: .*ECONNREFUSED/);
  });
});
