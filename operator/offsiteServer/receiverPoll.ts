/**
 * Asking the receiver for its check-ins and usage: GET /v1/receiver on its control port
 * (agent/CONTROL.md), reached by pod IP with the operator's control client certificate,
 * the receiver verified by its chain to the operator's CA and its CN. The answer, or what
 * went wrong, as a value: a failed poll is a status condition, never a failed reconcile
 * (status keeps the last report; the receiver may come back at the next poll).
 *
 * The subtle point: every report is news (its reportedAt, the volume's used bytes), so
 * the status it makes is written, and that write is itself a change of the OffsiteServer
 * that queues a reconcile. Asking again then would loop as fast as the receiver answers;
 * ReceiverPoller answers a reconcile that comes within MIN_POLL_INTERVAL_MS of the last
 * poll of the same pod with that poll, so the status comes out the same and is not written.
 */
import { AGENT_CONTROL_COMMON_NAME, type ReceiverReport } from "../../contract/reports.ts";
import { ControlError, fetchReceiverReport, type AgentAddress } from "../agentControl/controlClient.ts";
import type { V1Pod } from "@kubernetes/client-node";

export type ReceiverPoll =
  { ok: true; report: ReceiverReport } | { ok: false; reason: string; message: string };

export interface PollCredentials {
  /** The operator's control client certificate and key (PEM). */
  cert: string;
  key: string;
  /** The operator's CA, which the receiver's control certificate must chain to (PEM). */
  caPem: string;
}

const CONNECT_TIMEOUT_MS = 5_000;
/** The whole call, the report included: a receiver that stalls mid-answer is a failed poll. */
const CALL_TIMEOUT_MS = 30_000;

const REASONS: Record<ControlError["kind"], string> = {
  connect: "ReceiverUnreachable",
  tls: "ControlTlsFailed",
  http: "ReceiverRefused",
  protocol: "ReportInvalid",
  aborted: "ReportTimedOut",
};

export async function pollReceiver(
  address: AgentAddress,
  credentials: PollCredentials,
  options: { callTimeoutMs?: number } = {},
): Promise<ReceiverPoll> {
  try {
    const report = await fetchReceiverReport(address, {
      operatorCredentials: { cert: credentials.cert, key: credentials.key },
      caPem: credentials.caPem,
      expectCommonName: AGENT_CONTROL_COMMON_NAME,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      signal: AbortSignal.timeout(options.callTimeoutMs ?? CALL_TIMEOUT_MS),
    });
    return { ok: true, report };
  } catch (error) {
    if (error instanceof ControlError) {
      const message =
        error.kind === "aborted"
          ? `the receiver's control endpoint at ${address.host}:${address.port} did not answer within ${(options.callTimeoutMs ?? CALL_TIMEOUT_MS) / 1000} s`
          : error.message;
      return { ok: false, reason: REASONS[error.kind], message };
    }
    return {
      ok: false,
      reason: "ReportFailed",
      message: `asking the receiver at ${address.host}:${address.port} failed: ${(error as Error).message}`,
    };
  }
}

/** The receiver pod's IP, when it is Running, Ready and not being deleted: only then is it asked. */
export function pollablePodIp(pod: V1Pod | undefined): string | undefined {
  if (!pod || pod.metadata?.deletionTimestamp || pod.status?.phase !== "Running") return undefined;
  if (pod.status.conditions?.find((c) => c.type === "Ready")?.status !== "True") return undefined;
  return pod.status.podIP || undefined;
}

/** A reconcile this soon after a poll of the same receiver pod reuses its answer. */
export const MIN_POLL_INTERVAL_MS = 10_000;

export interface PollOutcome {
  poll: ReceiverPoll;
  /** When it was asked (ms since the epoch). */
  at: number;
}

/** Polls per OffsiteServer (namespace/name), at most once per MIN_POLL_INTERVAL_MS for the same pod. */
export class ReceiverPoller {
  private readonly last = new Map<string, PollOutcome & { target: string }>();
  private readonly ask: typeof pollReceiver;
  private readonly minIntervalMs: number;

  constructor(ask: typeof pollReceiver = pollReceiver, minIntervalMs = MIN_POLL_INTERVAL_MS) {
    this.ask = ask;
    this.minIntervalMs = minIntervalMs;
  }

  /**
   * The receiver's answer: a new poll, or the last one when it is younger than the minimum
   * interval and went to the same pod (`podUid`) at the same address.
   */
  async poll(
    key: string,
    podUid: string | undefined,
    address: AgentAddress,
    credentials: () => Promise<PollCredentials>,
    now: number,
  ): Promise<PollOutcome> {
    const target = `${podUid ?? ""}@${address.host}:${address.port}`;
    const last = this.last.get(key);
    if (last && last.target === target && now - last.at >= 0 && now - last.at < this.minIntervalMs)
      return { poll: last.poll, at: last.at };
    const poll = await this.ask(address, await credentials());
    this.last.set(key, { poll, at: now, target });
    return { poll, at: now };
  }

  forget(key: string): void {
    this.last.delete(key);
  }
}
