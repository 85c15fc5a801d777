/**
 * The client's side of the handshake (PROTOCOL.md, "Session"): connect with mutual TLS,
 * send Hello, read Welcome and, for push and compare, the receiver's entries.
 *
 * Every wait of the client is bounded (PROTOCOL.md, "Timeouts"): the connection and TLS
 * handshake by CONNECT_TIMEOUT_MS, every later wait on the receiver — a frame, or room to
 * write — by clientIdleTimeoutMs(). A session that fails here is closed, with an Error
 * frame when the fault is ours to name, so the receiver frees the source at once.
 */
import { TCP_KEEPALIVE_MS } from "../../contract/transport.ts";
import { connect } from "node:tls";
import { durationToMs, msToDuration } from "../../contract/units.ts";
import { FramedConnection, PeerError } from "../protocol/connection.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import {
  encodeJson,
  ENTRIES_CACHE_VERSION,
  type ManifestEntry,
  type MessageOf,
  PROTOCOL_VERSIONS,
} from "../protocol/messages.ts";
import type { CachedEntries } from "../push/receiverStateCache.ts";
import { clientTlsOptions, type TlsCredentials } from "../tlsCredentials.ts";

export interface Endpoint {
  host: string;
  port: number;
  credentials: TlsCredentials;
  /** The name the receiver's certificate must carry, when it is not `host` (a tunnel). */
  serverName?: string | undefined;
}

export interface SessionRequest {
  role: "push" | "compare" | "restore" | "replicate";
  site: string;
  source: string;
  version?: string;
  /** replicate: the pair's epoch. */
  epoch?: number;
  /** Aborting it ends the session at once (the socket is destroyed with the signal's reason). */
  signal?: AbortSignal | undefined;
  /** push: the cached entries of the receiver's version `base` (push/receiverStateCache.ts). */
  cached?: CachedEntries | undefined;
}

export interface Session {
  connection: FramedConnection;
  welcome: MessageOf<typeof FrameType.Welcome>;
  /** push and compare: the receiver's view, by path. */
  entries: Map<string, ManifestEntry>;
  /** push after an interruption: a partly staged large file. */
  partial: { path: string; chunks: [number, string][] } | undefined;
  /**
   * push: where `entries` came from: the receiver, or the cache it named by digest. When a
   * cache was offered and not used: `stale`, the receiver's current version is another;
   * `resumed`, the entries include an interrupted push's staged files; `older-receiver`, it
   * speaks no version 3; `mismatch`, it withheld its entries and the cache did not hash to
   * their digest.
   */
  entriesFrom: EntriesFrom;
}

export type EntriesFrom = "receiver" | "cache" | "stale" | "resumed" | "older-receiver" | "mismatch";

export const CLIENT_NAME = "offsite-agent/0.1.0";

/** TCP connect and TLS handshake. */
export const CONNECT_TIMEOUT_MS = 30_000;
/**
 * A receiver may be silent while it commits a large tree (links, one syncfs, retention):
 * the default bound on any one wait is generous, and OFFSITE_CLIENT_TIMEOUT (a duration)
 * changes it.
 */
export const DEFAULT_CLIENT_IDLE_TIMEOUT_MS = 15 * 60_000;

export function clientIdleTimeoutMs(): number {
  const setting = process.env.OFFSITE_CLIENT_TIMEOUT;
  if (setting === undefined || setting === "") return DEFAULT_CLIENT_IDLE_TIMEOUT_MS;
  let ms: number;
  try {
    ms = durationToMs(setting);
  } catch (error) {
    throw new Error(`OFFSITE_CLIENT_TIMEOUT: ${(error as Error).message}`, { cause: error });
  }
  if (ms < 1) throw new Error(`OFFSITE_CLIENT_TIMEOUT must be at least 1ms, not ${JSON.stringify(setting)}`);
  return Math.round(ms);
}

/** Parses HOST:PORT (IPv6 in brackets), with 5722 when no port is given. */
export function parseEndpoint(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(value);
  const port = Number(match?.[3] ?? 5722);
  if (!match || port < 1 || port > 65535) {
    throw new Error(`${JSON.stringify(value)} is not HOST:PORT (for example offsite.example.com:5722)`);
  }
  return { host: (match[1] ?? match[2])!, port };
}

export async function openSession(endpoint: Endpoint, request: SessionRequest): Promise<Session> {
  const idleTimeoutMs = clientIdleTimeoutMs();
  const where = `${endpoint.host}:${endpoint.port}`;
  const peer = peerName(request);
  const { signal } = request;
  signal?.throwIfAborted();
  const socket = connect({
    host: endpoint.host,
    port: endpoint.port,
    ...clientTlsOptions(endpoint.credentials, endpoint.serverName ?? endpoint.host),
  });
  socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
  if (signal) {
    // Every later wait on the receiver fails with the reason (the job's deadline, a shutdown).
    const onAbort = () => socket.destroy(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("close", () => signal.removeEventListener("abort", onAbort));
  }
  const connectMs = Math.min(CONNECT_TIMEOUT_MS, idleTimeoutMs);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `cannot connect to ${where}: no TLS connection within ${msToDuration(connectMs)} ` +
            `(is the ${peer} running, and is the address right?)`,
        ),
      );
    }, connectMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", (error: Error) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to ${where}: ${error.message}`, { cause: error }));
    });
  });
  socket.setNoDelay(true);
  const connection = new FramedConnection(socket, {
    idleTimeoutMs,
    idleError: (ms) =>
      new ProtocolError(
        "timeout",
        `the ${peer} at ${where} sent (or read) nothing for ${msToDuration(ms)}; ` +
          (request.role === "replicate"
            ? "the session ends (OFFSITE_CLIENT_TIMEOUT sets this bound), and the primary reconnects and compares the trees"
            : "the job stops (OFFSITE_CLIENT_TIMEOUT sets this bound). Run it again: a push resumes where it stopped"),
      ),
  });
  try {
    return await handshake(connection, request).catch((error: unknown) => {
      // A receiver that took the TLS connection answers Hello (Welcome or Error). One that
      // ends it unanswered refused our certificate: in TLS 1.3 the server checks the
      // client's after the client's handshake is done, and Node reports its alert as an end —
      // or, when the alert races the reset that follows it, as ECONNRESET.
      const ended =
        (error instanceof PeerError && error.code === "connection-closed") ||
        (error as NodeJS.ErrnoException).code === "ECONNRESET";
      if (ended && connection.bytesRead === 0)
        throw new PeerError(
          "certificate-refused",
          `the ${peer} at ${where} closed the connection without answering Hello: it did not accept ` +
            "this client certificate (issued by another CA, expired, or no client certificate), or it " +
            `stopped; check the certificate in --certs against the ${peer}'s CA`,
        );
      throw error;
    });
  } catch (error) {
    // Never leave the session open behind an error: the receiver would hold the source.
    if (error instanceof PeerError) await connection.close();
    else await connection.abort((error as ProtocolError).code ?? "bad-message", (error as Error).message);
    throw error;
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(`aborted: ${String(signal.reason)}`);
}

/** Messages name the peer the user runs: a replication session's is a standby. */
function peerName(request: SessionRequest): "standby" | "receiver" {
  return request.role === "replicate" ? "standby" : "receiver";
}

async function handshake(connection: FramedConnection, request: SessionRequest): Promise<Session> {
  const peer = peerName(request);
  await connection.send(
    encodeJson(FrameType.Hello, {
      versions: [...PROTOCOL_VERSIONS],
      role: request.role,
      site: request.site,
      source: request.source,
      // A push names the version whose entries it has cached (PROTOCOL.md, "Receiver state cache").
      ...(request.version
        ? { version: request.version }
        : request.cached
          ? { version: request.cached.base }
          : {}),
      ...(request.epoch !== undefined ? { epoch: request.epoch } : {}),
      client: CLIENT_NAME,
    }),
  );
  // The cached entries are parsed while the receiver opens its side (it reads its base's
  // manifest): Hello goes first. Usually they are the ones it confirms.
  connection.flushNow();
  const cachedEntries = request.cached?.entries();
  const welcome = await connection.expect(FrameType.Welcome);
  if (!(PROTOCOL_VERSIONS as readonly number[]).includes(welcome.version)) {
    throw new ProtocolError(
      "unsupported-version",
      `the ${peer} chose protocol version ${welcome.version}, which this agent did not offer (${PROTOCOL_VERSIONS.join(", ")})`,
    );
  }
  let entriesFrom: EntriesFrom = !request.cached
    ? "receiver"
    : welcome.version < ENTRIES_CACHE_VERSION
      ? "older-receiver"
      : welcome.resumed
        ? "resumed"
        : "stale";
  if (welcome.digest !== undefined) {
    if (request.role !== "push" || !request.cached || welcome.version < ENTRIES_CACHE_VERSION) {
      throw new ProtocolError(
        "bad-message",
        `the ${peer} withheld its entries, which this client did not have cached`,
      );
    }
    const usable = request.cached.base === welcome.base && request.cached.digest === welcome.digest;
    if (usable && cachedEntries)
      return { connection, welcome, entries: cachedEntries, partial: undefined, entriesFrom: "cache" };
    entriesFrom = "mismatch";
    await connection.send(encodeJson(FrameType.EntriesWanted, {}));
  }
  const entries = new Map<string, ManifestEntry>();
  let partial: Session["partial"];
  if (request.role !== "restore") {
    for (;;) {
      const message = await connection.next();
      if (message.type === FrameType.EntriesEnd) break;
      if (message.type === FrameType.Entries) {
        for (const entry of message.entries) entries.set(entry.path, entry);
      } else if (message.type === FrameType.ChunkList) {
        if (message.kind === "partial") {
          if (partial?.path !== message.path) partial = { path: message.path, chunks: [] };
          partial.chunks.push(...message.chunks);
          continue;
        }
        const entry = entries.get(message.path);
        if (entry?.type !== "file") {
          throw new ProtocolError(
            "bad-message",
            `the ${peer} sent chunks for ${JSON.stringify(message.path)}, which is no file`,
          );
        }
        (entry.chunks ??= []).push(...message.chunks);
      } else {
        throw new ProtocolError(
          "unexpected-frame",
          `the ${peer} sent a ${message.type} frame where entries belong`,
        );
      }
    }
  }
  return { connection, welcome, entries, partial, entriesFrom };
}
