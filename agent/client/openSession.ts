/**
 * The client's side of the handshake (PROTOCOL.md, "Session"): connect with mutual TLS,
 * send Hello, read Welcome and, for push and compare, the receiver's entries.
 */
import { connect } from "node:tls";
import { FramedConnection } from "../protocol/connection.ts";
import { FrameType } from "../protocol/frames.ts";
import { encodeJson, type ManifestEntry, type MessageOf, PROTOCOL_VERSION } from "../protocol/messages.ts";
import { clientTlsOptions, type TlsCredentials } from "../tlsCredentials.ts";

export interface Endpoint {
  host: string;
  port: number;
  credentials: TlsCredentials;
}

export interface SessionRequest {
  role: "push" | "compare" | "restore";
  site: string;
  source: string;
  version?: string;
}

export interface Session {
  connection: FramedConnection;
  welcome: MessageOf<typeof FrameType.Welcome>;
  /** push and compare: the receiver's view, by path. */
  entries: Map<string, ManifestEntry>;
  /** push after an interruption: a partly staged large file. */
  partial: { path: string; chunks: [number, string][] } | undefined;
}

export const CLIENT_NAME = "offsite-agent/0.1.0";

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
  const socket = connect({
    host: endpoint.host,
    port: endpoint.port,
    ...clientTlsOptions(endpoint.credentials, endpoint.host),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", (error: Error) =>
      reject(
        new Error(`cannot connect to ${endpoint.host}:${endpoint.port}: ${error.message}`, { cause: error }),
      ),
    );
  });
  socket.setNoDelay(true);
  const connection = new FramedConnection(socket);
  await connection.send(
    encodeJson(FrameType.Hello, {
      versions: [PROTOCOL_VERSION],
      role: request.role,
      site: request.site,
      source: request.source,
      ...(request.version ? { version: request.version } : {}),
      client: CLIENT_NAME,
    }),
  );
  const welcome = await connection.expect(FrameType.Welcome);
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
        if (entry?.type !== "file")
          throw new Error(`the receiver sent chunks for ${message.path}, which is no file`);
        (entry.chunks ??= []).push(...message.chunks);
      } else {
        throw new Error(`the receiver sent a ${message.type} frame where entries belong`);
      }
    }
  }
  return { connection, welcome, entries, partial };
}
