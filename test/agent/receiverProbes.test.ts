/**
 * The receiver's probes (`--health-port`), as the kubelet meets them: /readyz and /healthz
 * answer while it works; a receiver that hangs (SIGSTOP: its event loop stops, though the
 * kernel still accepts TCP connections on both ports) stops answering, so an HTTP liveness
 * probe fails where a TCP probe would pass; it answers again once it runs.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "../cluster/controlPlane.ts";
import { makeStandaloneCerts, startReceiverProcess, type ReceiverProcess } from "./agentProcesses.ts";

const probe = (port: number, path: string) =>
  fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1500) }).then(
    (response) => response.status,
    () => "no answer" as const,
  );

const tcpAccepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

describe("the receiver's probes", () => {
  let work: string;
  let receiver: ReceiverProcess;
  let healthPort: number;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-probes-"));
    const certs = await makeStandaloneCerts(join(work, "certs"), "probe-site", "probe-source");
    healthPort = await freePort();
    receiver = await startReceiverProcess(join(work, "root"), certs.receiver, [
      "--health-port",
      String(healthPort),
    ]);
  });

  after(async () => {
    receiver.child.kill("SIGCONT");
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("answers /readyz and /healthz while it works, and not at all while it hangs", async () => {
    const listening = receiver.events.find((e) => e.event === "listening");
    assert.equal(listening?.healthPort, healthPort);
    assert.equal(await probe(healthPort, "/readyz"), 200);
    assert.equal(await probe(healthPort, "/healthz"), 200);
    assert.equal(await probe(healthPort, "/metrics"), 404);

    receiver.child.kill("SIGSTOP");
    try {
      assert.equal(await tcpAccepts(receiver.port), true, "a TCP probe still passes: the kernel accepts");
      assert.equal(await probe(healthPort, "/healthz"), "no answer", "an HTTP probe fails");
    } finally {
      receiver.child.kill("SIGCONT");
    }
    assert.equal(await probe(healthPort, "/healthz"), 200);
  });
});
