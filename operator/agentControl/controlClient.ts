/**
 * The operator's side of the control channel (agent/CONTROL.md): it calls an agent's
 * control endpoint with its own client certificate (CN = O = offsite-operator, from the
 * operator's CA) and reads back what the agent says, every message validated with the
 * contract's schemas (contract/reports.ts).
 *
 * The subtle point is how the agent is verified. The operator reaches agents by pod IP,
 * which no certificate could name, so the server certificate is checked by its chain to
 * `caPem` (the operator's CA) and by its CN (`expectCommonName`, offsite-agent), never by
 * host name. Nothing here imports the agent's code: the operator's image carries only
 * contract/, pki/ and operator/.
 */
import { request as httpsRequest, type RequestOptions } from "node:https";
import type { IncomingMessage } from "node:http";
import type { PeerCertificate } from "node:tls";
import {
  CONTROL_API_VERSION,
  jobEvent,
  receiverReport,
  type JobProgress,
  type JobRequest,
  type JobResult,
  type ReceiverReport,
  replicationReport,
  type ReplicationReport,
  type ReplicationRequest,
} from "../../contract/reports.ts";
import { TCP_KEEPALIVE_MS } from "../../contract/transport.ts";

/** The data session's TLS settings (agent/tlsCredentials.ts), which the control endpoint serves with. */
const TLS_SETTINGS = {
  minVersion: "TLSv1.3",
  maxVersion: "TLSv1.3",
  ciphersuites: "TLS_AES_256_GCM_SHA384",
} as const;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Error bodies and reports are read up to this size. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

export interface AgentAddress {
  host: string;
  port: number;
}

export interface ControlClientOptions {
  /** The operator's control client certificate and key (PEM). */
  operatorCredentials: { cert: string; key: string };
  /** The CA the agent's serving certificate must chain to (the operator's CA), PEM. */
  caPem: string;
  /** The CN the agent's serving certificate must carry (AGENT_CONTROL_COMMON_NAME). */
  expectCommonName: string;
  /** Aborts the call (and, for runJob, only the stream: the job goes on on the agent). */
  signal?: AbortSignal;
  /** TCP connect and TLS handshake (default 10 s). */
  connectTimeoutMs?: number;
}

export interface RunJobOptions extends ControlClientOptions {
  /** Each progress line, validated. */
  onProgress?: (progress: JobProgress) => void;
}

/**
 * What went wrong talking to an agent. kind: `connect` (refused, timed out, unknown
 * host), `tls` (the handshake failed either way, or the agent's certificate is not the
 * expected identity), `http` (the agent answered with an error status; `status`, and
 * `code` and `body` from its JSON error), `protocol` (an answer that breaks the contract:
 * a line that does not parse, a stream that ends without a result), `aborted`.
 */
export class ControlError extends Error {
  readonly kind: "connect" | "tls" | "http" | "protocol" | "aborted";
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly body: unknown;
  constructor(
    kind: ControlError["kind"],
    message: string,
    details: { status?: number; code?: string; body?: unknown; cause?: unknown } = {},
  ) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = "ControlError";
    this.kind = kind;
    this.status = details.status;
    this.code = details.code;
    this.body = details.body;
  }
}

/**
 * POST /v1/jobs: runs `request` on the agent (or attaches to the run with its jobId) and
 * resolves with its result once the stream ends with it.
 */
export function runJob(
  address: AgentAddress,
  request: JobRequest,
  options: RunJobOptions,
): Promise<JobResult> {
  return streamResult(address, "POST", "/jobs", JSON.stringify(request), options);
}

/** GET /v1/jobs/{jobId}: attaches to a run the agent knows (404, as ControlError `http`, when it does not). */
export function attachJob(address: AgentAddress, jobId: string, options: RunJobOptions): Promise<JobResult> {
  return streamResult(address, "GET", `/jobs/${encodeURIComponent(jobId)}`, undefined, options);
}

/** GET /v1/jobs/{jobId}/report: the role's full report of a finished job (JSON, as the agent's CLI prints it). */
export async function fetchReport(
  address: AgentAddress,
  jobId: string,
  options: ControlClientOptions,
): Promise<Record<string, unknown>> {
  const response = await call(
    address,
    "GET",
    `/jobs/${encodeURIComponent(jobId)}/report`,
    undefined,
    options,
  );
  const body = await readJson(response, address, options.signal);
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new ControlError("protocol", `${where(address)}: the report is not a JSON object`);
  return body as Record<string, unknown>;
}

/** GET /v1/receiver: a receiver's check-in and usage report, validated. */
export async function fetchReceiverReport(
  address: AgentAddress,
  options: ControlClientOptions,
): Promise<ReceiverReport> {
  const response = await call(address, "GET", "/receiver", undefined, options);
  const body = await readJson(response, address, options.signal);
  const parsed = receiverReport.safeParse(body);
  if (!parsed.success)
    throw new ControlError(
      "protocol",
      `${where(address)}: the receiver's report does not fit the contract: ${parsed.error.message}`,
      { body },
    );
  return parsed.data;
}

/**
 * PUT /v1/replication: tells the agent its role in a pair (the same request again changes
 * nothing on the agent); resolves with its report once it took the role.
 */
export async function putReplication(
  address: AgentAddress,
  request: ReplicationRequest,
  options: ControlClientOptions,
): Promise<{ restarted: boolean; report: ReplicationReport }> {
  const response = await call(address, "PUT", "/replication", JSON.stringify(request), options);
  const body = (await readJson(response, address, options.signal)) as {
    restarted?: unknown;
    report?: unknown;
  };
  const parsed = replicationReport.safeParse(body?.report);
  if (!parsed.success || typeof body.restarted !== "boolean")
    throw new ControlError(
      "protocol",
      `${where(address)}: the replication answer does not fit the contract`,
      {
        body,
      },
    );
  return { restarted: body.restarted, report: parsed.data };
}

/** DELETE /v1/replication: the agent stops its replication role; resolves with its report. */
export function deleteReplication(
  address: AgentAddress,
  options: ControlClientOptions,
): Promise<ReplicationReport> {
  return replicationCall(address, "DELETE", options);
}

/** GET /v1/replication: what the agent's replication role is doing, validated. */
export function fetchReplicationReport(
  address: AgentAddress,
  options: ControlClientOptions,
): Promise<ReplicationReport> {
  return replicationCall(address, "GET", options);
}

async function replicationCall(
  address: AgentAddress,
  method: "GET" | "DELETE",
  options: ControlClientOptions,
): Promise<ReplicationReport> {
  const response = await call(address, method, "/replication", undefined, options);
  const body = await readJson(response, address, options.signal);
  const parsed = replicationReport.safeParse(body);
  if (!parsed.success)
    throw new ControlError(
      "protocol",
      `${where(address)}: the replication report does not fit the contract`,
      {
        body,
      },
    );
  return parsed.data;
}

const where = (address: AgentAddress) =>
  address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;

/** The chain is verified by TLS against caPem; this checks who the certificate names. */
function checkAgentIdentity(expectCommonName: string) {
  return (_host: string, certificate: PeerCertificate): Error | undefined => {
    const commonName = certificate.subject?.CN;
    if (commonName === expectCommonName) return undefined;
    const error = new Error(
      `the agent's certificate is for CN=${String(commonName)}, not ${expectCommonName}; ` +
        "something else answers at this address, or its control certificate was not issued by the operator",
    ) as NodeJS.ErrnoException;
    error.code = "ERR_CONTROL_PEER_IDENTITY";
    return error;
  };
}

const CONNECT_FAILURE = new Set([
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNRESET",
  "EPIPE",
]);
const TLS_FAILURE =
  /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|ERR_CONTROL_PEER_IDENTITY)/;

function transportError(error: Error, address: AgentAddress, handshakeDone: boolean): ControlError {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  if (error.name === "AbortError")
    return new ControlError("aborted", `${where(address)}: aborted`, { cause: error });
  if (TLS_FAILURE.test(code))
    return new ControlError(
      "tls",
      `TLS with the agent at ${where(address)} failed: ${error.message} (${code})`,
      {
        cause: error,
        code,
      },
    );
  // A reset before the handshake completed is the agent refusing TLS (no usable credentials yet).
  if (!handshakeDone && code === "ECONNRESET")
    return new ControlError(
      "tls",
      `the agent at ${where(address)} closed the connection before TLS completed (${error.message}); ` +
        "its control credentials may be missing, or it refused this client certificate",
      { cause: error, code },
    );
  if (CONNECT_FAILURE.has(code))
    return new ControlError("connect", `cannot connect to the agent at ${where(address)}: ${error.message}`, {
      cause: error,
      code,
    });
  return new ControlError("connect", `talking to the agent at ${where(address)} failed: ${error.message}`, {
    cause: error,
    code,
  });
}

/** One request; resolves with a 200 response, rejects with a ControlError for anything else. */
function call(
  address: AgentAddress,
  method: "GET" | "POST" | "PUT" | "DELETE",
  path: string,
  body: string | undefined,
  options: ControlClientOptions,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const settings: RequestOptions = {
      ...TLS_SETTINGS,
      host: address.host,
      port: address.port,
      method,
      path: `/${CONTROL_API_VERSION}${path}`,
      agent: false,
      ca: options.caPem,
      cert: options.operatorCredentials.cert,
      key: options.operatorCredentials.key,
      rejectUnauthorized: true,
      checkServerIdentity: checkAgentIdentity(options.expectCommonName),
      headers: {
        accept: "application/x-ndjson, application/json",
        ...(body !== undefined
          ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
          : {}),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    };
    let handshakeDone = false;
    const request = httpsRequest(settings, (response) => {
      clearTimeout(timer);
      if (response.statusCode === 200) return resolve(response);
      void readJson(response, address, options.signal, true).then(
        (errorBody) => {
          const { code, message } = (errorBody ?? {}) as { code?: unknown; message?: unknown };
          reject(
            new ControlError(
              "http",
              `the agent at ${where(address)} answered ${response.statusCode}` +
                (typeof code === "string" ? ` ${code}` : "") +
                (typeof message === "string" ? `: ${message}` : ""),
              {
                status: response.statusCode!,
                ...(typeof code === "string" ? { code } : {}),
                body: errorBody,
              },
            ),
          );
        },
        (error: unknown) => reject(error as Error),
      );
    });
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const timer = setTimeout(() => {
      request.destroy(
        Object.assign(new Error(`no TLS connection within ${timeoutMs} ms`), { code: "ETIMEDOUT" }),
      );
    }, timeoutMs);
    request.on("socket", (socket) => {
      socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
      socket.once("secureConnect", () => {
        handshakeDone = true;
        clearTimeout(timer);
      });
    });
    request.on("error", (error) => {
      clearTimeout(timer);
      reject(transportError(error, address, handshakeDone));
    });
    request.end(body);
  });
}

/** The whole body as JSON; with `lenient`, a body that is not JSON gives its text. */
async function readJson(
  response: IncomingMessage,
  address: AgentAddress,
  signal: AbortSignal | undefined,
  lenient = false,
): Promise<unknown> {
  const parts: Buffer[] = [];
  let length = 0;
  try {
    for await (const part of response as AsyncIterable<Buffer>) {
      length += part.length;
      if (length > MAX_BODY_BYTES)
        throw new ControlError(
          "protocol",
          `${where(address)}: an answer larger than ${MAX_BODY_BYTES} bytes`,
        );
      parts.push(part);
    }
  } catch (error) {
    if (error instanceof ControlError) throw error;
    throw signal?.aborted
      ? new ControlError("aborted", `${where(address)}: aborted`, { cause: error })
      : transportError(error as Error, address, true);
  }
  const text = Buffer.concat(parts).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (error) {
    if (lenient) return text === "" ? undefined : { message: text.slice(0, 4096) };
    throw new ControlError(
      "protocol",
      `${where(address)}: the answer is not JSON: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

async function streamResult(
  address: AgentAddress,
  method: "GET" | "POST" | "PUT" | "DELETE",
  path: string,
  body: string | undefined,
  options: RunJobOptions,
): Promise<JobResult> {
  const response = await call(address, method, path, body, options);
  let buffered = "";
  let lineNumber = 0;
  const take = (line: string): JobResult | undefined => {
    lineNumber++;
    if (line.trim() === "") return undefined;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (error) {
      throw new ControlError(
        "protocol",
        `${where(address)}: line ${lineNumber} of the job stream is not JSON (${(error as Error).message}): ` +
          JSON.stringify(line.slice(0, 200)),
      );
    }
    const parsed = jobEvent.safeParse(json);
    if (!parsed.success)
      throw new ControlError(
        "protocol",
        `${where(address)}: line ${lineNumber} of the job stream does not fit the contract: ${parsed.error.message}`,
        { body: json },
      );
    if (parsed.data.type === "result") return parsed.data;
    options.onProgress?.(parsed.data);
    return undefined;
  };
  try {
    for await (const part of response as AsyncIterable<Buffer>) {
      buffered += part.toString("utf8");
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const result = take(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        if (result) {
          response.destroy();
          return result;
        }
      }
      if (buffered.length > 1024 * 1024)
        throw new ControlError("protocol", `${where(address)}: a job stream line longer than 1 MiB`);
    }
  } catch (error) {
    if (error instanceof ControlError) throw error;
    throw options.signal?.aborted
      ? new ControlError("aborted", `${where(address)}: aborted (the job goes on on the agent)`, {
          cause: error,
        })
      : transportError(error as Error, address, true);
  }
  const last = take(buffered);
  if (last) return last;
  throw new ControlError(
    "protocol",
    `${where(address)}: the job stream ended without a result (the connection was lost, or the agent ` +
      "restarted); call again with the same jobId to attach to the run, or to run it again",
  );
}
