/**
 * A receiver in the test's own process, with one source's client certificate, whose
 * session event a test can hook. That event fires after the pusher's scan and before it
 * reads any file, so a test that changes live data right then (a file vanishes, becomes
 * unreadable, turns into a link) meets the race exactly, every time.
 */
import { join } from "node:path";
import { startReceiver, type RunningReceiver } from "../../agent/receiver/receiverServer.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";
import { makeStandaloneCerts } from "./agentProcesses.ts";

export interface HookedReceiver {
  receiver: RunningReceiver;
  /** The source's client certificate directory. */
  clientDir: string;
  /** Called once per session, at its Hello; set it before the push and clear it after. */
  onSession: (() => void) | undefined;
}

/** The store is WORK/ROOT_NAME (short names leave room for paths near the kernel's limits). */
export async function startHookedReceiver(
  work: string,
  site: string,
  source: string,
  rootName = "root",
  protocolVersions?: readonly number[],
): Promise<HookedReceiver> {
  const certs = await makeStandaloneCerts(join(work, "certs"), site, source);
  const hooked: HookedReceiver = {
    receiver: undefined as never,
    clientDir: certs.client,
    onSession: undefined,
  };
  hooked.receiver = await startReceiver({
    root: join(work, rootName),
    host: "127.0.0.1",
    port: 0,
    credentials: loadCredentials(certs.receiver),
    ...(protocolVersions ? { protocolVersions } : {}),
    onEvent: (event) => {
      if (event.event === "session") hooked.onSession?.();
    },
  });
  return hooked;
}
