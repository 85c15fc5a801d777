/**
 * How the BackupJob controller reaches an agent: the control channel's client
 * (agentControl/controlClient.ts) as the tracker's CallAgent. An answer the agent gave
 * (an HTTP error such as a refused restore, a broken stream) becomes a failed result with
 * its code, so the run fails with the agent's reason at once; only a connection that never
 * got an answer (refused, reset, TLS) is retried as one.
 */
import { AGENT_CONTROL_COMMON_NAME, type JobResult } from "../../contract/reports.ts";
import { ControlError, runJob } from "../agentControl/controlClient.ts";
import type { CallAgent } from "./attempts.ts";

export const callAgentOverControlChannel: CallAgent = async (address, request, hooks) => {
  try {
    return await runJob(address, request, {
      operatorCredentials: { cert: hooks.credentials.cert, key: hooks.credentials.key },
      caPem: hooks.credentials.ca,
      expectCommonName: AGENT_CONTROL_COMMON_NAME,
      onProgress: hooks.onProgress,
      signal: hooks.signal,
    });
  } catch (error) {
    if (error instanceof ControlError && (error.kind === "http" || error.kind === "protocol"))
      return failedResult(
        request.jobId,
        error.code ?? (error.status ? `http-${error.status}` : "protocol"),
        error.message,
      );
    throw error;
  }
};

function failedResult(jobId: string, code: string, message: string): JobResult {
  return {
    type: "result",
    jobId,
    at: new Date().toISOString(),
    outcome: "failed",
    code: code.slice(0, 64),
    message: message.slice(0, 4096),
    files: { scanned: 0, changed: 0, deleted: 0, filtered: 0, stopped: 0 },
    bytes: { sent: 0, changed: 0 },
    problems: [],
  };
}
