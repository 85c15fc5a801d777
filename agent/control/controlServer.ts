/**
 * The control endpoint's server (agent/CONTROL.md), shared by `offsite agent` and
 * `offsite receive --control-port`: HTTPS (HTTP/1.1) over TLS 1.3 with the data session's
 * settings, a client certificate from ca.crt of the credentials directory required, and
 * then exactly the operator's subject (CN = O = offsite-operator) — any other certificate
 * from that CA gets 403 before its request is looked at.
 *
 * The subtle point is the credentials directory: it is a Kubernetes Secret mounted
 * `optional` (Kubernetes swaps the `..data` symlink to update it), so it may be missing
 * when the process starts, appear later and change at any time. The process must never
 * exit over it (a sidecar that crash-loops takes the application pod down with it), so:
 *
 * - the files are read again for every new TCP connection (before its TLS handshake,
 *   synchronously: three small files) and every RELOAD_MS, and a change installs a new
 *   secure context, which only new connections use;
 * - while they are missing or unusable (unreadable, a key that does not match its
 *   certificate) every connection is closed before TLS, readiness says why, and the
 *   state is logged once per change;
 * - a half-swapped directory (new certificate, old key) is read again at once.
 */
import { createHash, X509Certificate } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { createSecureContext, type TLSSocket } from "node:tls";
import { CONTROL_API_VERSION, OPERATOR_CONTROL_IDENTITY } from "../../contract/reports.ts";
import { TCP_KEEPALIVE_MS } from "../../contract/transport.ts";
import { loadCredentials, PROTOCOL_SETTINGS, type TlsCredentials } from "../tlsCredentials.ts";

/** How often the directory is read while no connection comes (readiness, logs). */
export const RELOAD_MS = 1000;
/** A request body larger than this is refused (a job request is at most a few MiB). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface ControlServerOptions {
  host: string;
  port: number;
  /** The credentials directory: tls.crt, tls.key (this endpoint's certificate), ca.crt (the operator's CA). */
  certsDir: string;
  /** Routes a request of the operator under /v1/ (the identity and the version are checked before). */
  handle: (request: IncomingMessage, response: ServerResponse, path: string) => void | Promise<void>;
  /** One JSON-able event per change of the credentials' state, and per refused client. */
  onEvent: (event: Record<string, unknown>) => void;
}

export interface ControlServer {
  port: number;
  /** True while the credentials are usable, so TLS connections are served. */
  ready(): boolean;
  /** Why not, when not. */
  notReadyReason(): string | undefined;
  /**
   * Stops accepting, ends idle connections, waits for `beforeEnd` (streams still open get
   * their last lines meanwhile), then ends every connection.
   */
  close(beforeEnd?: () => Promise<void>): Promise<void>;
}

type CredentialState =
  { usable: true; digest: string; credentials: TlsCredentials } | { usable: false; reason: string };

/** Reads and checks the directory (unless it holds `known`, checked before); never throws. */
function readState(dir: string, known: string | undefined): CredentialState {
  let credentials: TlsCredentials;
  try {
    credentials = loadCredentials(dir);
  } catch (error) {
    return { usable: false, reason: (error as Error).message };
  }
  const digest = createHash("sha256")
    .update(credentials.ca)
    .update("\0")
    .update(credentials.cert)
    .update("\0")
    .update(credentials.key)
    .digest("hex");
  if (digest === known) return { usable: true, digest, credentials };
  try {
    createSecureContext({ ...PROTOCOL_SETTINGS, ...credentials });
  } catch (error) {
    return {
      usable: false,
      reason:
        `the credentials in ${dir} cannot be used (${(error as Error).message}); ` +
        "tls.crt and tls.key must be a PEM certificate and its key, ca.crt the operator's CA",
    };
  }
  return { usable: true, digest, credentials };
}

export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { certsDir, onEvent } = options;
  const server = createHttpsServer(
    { ...PROTOCOL_SETTINGS, requestCert: true, rejectUnauthorized: true },
    (request, response) => void serve(request, response, options),
  );
  server.on("secureConnection", (socket: TLSSocket) => socket.setKeepAlive(true, TCP_KEEPALIVE_MS));
  let state: CredentialState = { usable: false, reason: `${certsDir} has not been read yet` };
  let installed: string | undefined;
  let logged: string | undefined;

  const refresh = () => {
    let next = readState(certsDir, installed);
    // Kubernetes swaps the whole directory at once, but a read may straddle the swap.
    if (!next.usable) next = readState(certsDir, installed);
    state = next;
    if (next.usable && installed !== next.digest) {
      server.setSecureContext({ ...PROTOCOL_SETTINGS, ...next.credentials });
      installed = next.digest;
    }
    const key = next.usable ? `usable:${next.digest}` : `unusable:${next.reason}`;
    if (key === logged) return;
    logged = key;
    if (next.usable) {
      const certificate = new X509Certificate(next.credentials.cert);
      onEvent({
        event: "control-credentials",
        state: "loaded",
        dir: certsDir,
        subject: certificate.subject.replace(/\n/g, ", "),
        notAfter: certificate.validToDate.toISOString(),
      });
    } else
      onEvent({ event: "control-credentials", state: "unavailable", dir: certsDir, reason: next.reason });
  };

  // Before the TLS layer's own listener: the handshake of this connection uses what is read here.
  server.prependListener("connection", (socket: Socket) => {
    refresh();
    if (!state.usable) socket.destroy();
  });
  server.on("tlsClientError", (error, socket) => {
    if (state.usable)
      onEvent({ event: "control-refused", peer: socket.remoteAddress, reason: error.message });
  });
  refresh();
  const timer = setInterval(refresh, RELOAD_MS).unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => onEvent({ event: "control-error", message: error.message }));
  return {
    port: (server.address() as AddressInfo).port,
    ready: () => state.usable && server.listening,
    notReadyReason: () =>
      !server.listening ? "the control endpoint is closed" : state.usable ? undefined : state.reason,
    close: async (beforeEnd) => {
      clearInterval(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await beforeEnd?.();
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The identity rule: a verified certificate whose subject is exactly the operator's. */
function isOperator(socket: TLSSocket): boolean {
  if (!socket.authorized) return false;
  const subject = socket.getPeerCertificate().subject as Record<string, unknown> | undefined;
  if (!subject) return false;
  const keys = Object.keys(subject).sort();
  return (
    keys.length === 2 &&
    keys[0] === "CN" &&
    keys[1] === "O" &&
    subject.CN === OPERATOR_CONTROL_IDENTITY.commonName &&
    subject.O === OPERATOR_CONTROL_IDENTITY.organization
  );
}

async function serve(request: IncomingMessage, response: ServerResponse, options: ControlServerOptions) {
  try {
    if (!isOperator(request.socket as TLSSocket)) {
      const subject = (request.socket as TLSSocket).getPeerCertificate().subject;
      return sendJson(response, 403, {
        code: "forbidden",
        message:
          `this endpoint takes requests from the operator's control certificate only ` +
          `(CN=${OPERATOR_CONTROL_IDENTITY.commonName}, O=${OPERATOR_CONTROL_IDENTITY.organization}), ` +
          `not CN=${String(subject?.CN)}, O=${String(subject?.O)}`,
      });
    }
    const path = new URL(request.url ?? "/", "https://agent").pathname;
    if (!path.startsWith(`/${CONTROL_API_VERSION}/`)) {
      return sendJson(response, 404, {
        code: "unknown-version",
        message: `${path}: this agent speaks control API ${CONTROL_API_VERSION} (paths /${CONTROL_API_VERSION}/...)`,
        versions: [CONTROL_API_VERSION],
      });
    }
    await options.handle(request, response, path.slice(CONTROL_API_VERSION.length + 1));
  } catch (error) {
    options.onEvent({ event: "control-error", url: request.url, message: (error as Error).message });
    if (!response.headersSent)
      sendJson(response, 500, { code: "internal", message: `the agent failed: ${(error as Error).message}` });
    else response.destroy();
  }
}

/** Answers with a JSON body. */
export function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  response.end(text);
}

/** 404 for a path under /v1/ that names nothing. */
export function notFound(response: ServerResponse, message: string): void {
  sendJson(response, 404, { code: "not-found", message, versions: [CONTROL_API_VERSION] });
}

/** 405, naming the methods the path takes. */
export function methodNotAllowed(response: ServerResponse, allowed: string[]): void {
  response.setHeader("allow", allowed.join(", "));
  sendJson(response, 405, { code: "method-not-allowed", message: `use ${allowed.join(" or ")}` });
}

/** The request's body, at most MAX_BODY_BYTES; undefined after answering 413 to a larger one. */
export async function readBody(
  request: IncomingMessage,
  response: ServerResponse,
): Promise<string | undefined> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const part of request as AsyncIterable<Buffer>) {
    length += part.length;
    if (length > MAX_BODY_BYTES) {
      response.setHeader("connection", "close");
      sendJson(response, 413, {
        code: "too-large",
        message: `a request body is at most ${MAX_BODY_BYTES} bytes`,
      });
      return undefined;
    }
    parts.push(part);
  }
  return Buffer.concat(parts).toString("utf8");
}
