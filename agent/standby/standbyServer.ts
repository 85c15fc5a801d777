/**
 * `offsite standby`: the standby side of a replication pair. One TLS server, one primary
 * session at a time. A session (PROTOCOL.md,
 * "Replication"): Hello with role `replicate` and the pair's epoch; Welcome; the live
 * tree's Entries, so the primary sends only what differs; then changes for as long as the
 * pair lives, each batch closed by Flush, answered by Applied once it is durable. A new
 * session of the pair (at its epoch or a newer one) replaces the running one.
 *
 * The standby belongs to one pair: the first primary's site and source (its certificate's
 * O and CN), or `pair` when given, are recorded in `.offsite/standby.json` with the highest
 * epoch seen; another pair's certificate is `forbidden`, an older epoch `stale-epoch` (a
 * demoted primary that comes back must not write over what the promoted one wrote).
 */
import { createServer, type Server, type TLSSocket } from "node:tls";
import { randomUUID } from "node:crypto";
import {
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
  fsyncSync,
} from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { TCP_KEEPALIVE_MS } from "../../contract/transport.ts";
import { DEFAULT_IDLE_TIMEOUT_MS } from "../../contract/roles.ts";
import { msToDuration } from "../../contract/units.ts";
import { FramedConnection } from "../protocol/connection.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import { encodeJson, PROTOCOL_VERSIONS, REPLICATION_VERSION } from "../protocol/messages.ts";
import { describeFailure, sendEntries } from "../receiver/receiverServer.ts";
import { peerIdentity, serverTlsOptions, type TlsCredentials } from "../tlsCredentials.ts";
import { TimeSlice } from "../timeSlice.ts";
import { LiveEntries } from "./liveEntries.ts";
import { LiveTree, STATE_DIR } from "./liveTree.ts";

export interface StandbyOptions {
  root: string;
  host: string;
  port: number;
  credentials: TlsCredentials;
  /** The pair's source GUID; the first primary's when absent. */
  pair?: string | undefined;
  /** The standby's own content firewall (on by default): executables and scripts are kept out. */
  firewall?: boolean;
  idleTimeoutMs?: number | undefined;
  onEvent?: (event: Record<string, unknown>) => void;
  /** After each batch is durable (Applied sent), with the files its firewall stopped. */
  onApplied?: (refused: { path: string; reason: string }[]) => void;
}

export interface RunningStandby {
  port: number;
  accepting(): boolean;
  /** Whether a primary is connected now. */
  connected(): boolean;
  close(): Promise<void>;
}

interface StandbyState {
  site?: string;
  source?: string;
  epoch: number;
}

const HELLO_TIMEOUT_MS = 30_000;
/** How often the hash cache is written while a session runs (it is a cache: losing it costs hashing). */
const CACHE_SAVE_MS = 30_000;

export async function startStandby(options: StandbyOptions): Promise<RunningStandby> {
  mkdirSync(join(options.root, STATE_DIR), { recursive: true, mode: 0o700 });
  const sockets = new Set<TLSSocket>();
  /** Each session's end, for close(). */
  const sessions = new Set<Promise<void>>();
  const emit = options.onEvent ?? (() => undefined);
  /**
   * The session that applies changes now. A new primary session that passes Hello's checks
   * takes over from it (ending it first, so two never write at once): the old one is most
   * often half-open, its primary gone without a close, and must not keep the pair out.
   */
  let active: { socket: TLSSocket; done: Promise<void> } | undefined;
  const takeOver = async (socket: TLSSocket, done: Promise<void>): Promise<void> => {
    while (active && active.socket !== socket) {
      const previous = active;
      emit({ event: "session-replaced", peer: previous.socket.remoteAddress });
      previous.socket.destroy();
      await previous.done;
    }
    active = { socket, done };
  };
  const server: Server = createServer(serverTlsOptions(options.credentials), (socket) => {
    sockets.add(socket);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    socket.on("close", () => sockets.delete(socket));
    void (async () => {
      const connection = new FramedConnection(socket, {
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        idleError: (ms) =>
          new ProtocolError(
            "idle-timeout",
            `the primary sent nothing for ${msToDuration(ms)}; the session ends, and the primary reconnects`,
          ),
      });
      let finished!: () => void;
      const done = new Promise<void>((resolve) => (finished = resolve));
      sessions.add(done);
      void done.then(() => sessions.delete(done));
      try {
        await serveSession(connection, socket, options, emit, () => takeOver(socket, done));
      } catch (error) {
        const { code, message } = describeFailure(error, "standby");
        emit({ event: "failed", code, message, peer: socket.remoteAddress });
        await connection.abort(code, message);
      } finally {
        if (active?.socket === socket) active = undefined;
        finished();
      }
    })();
  });
  server.on("tlsClientError", (error, socket) => {
    emit({ event: "refused", peer: socket.remoteAddress, reason: error.message });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    accepting: () => server.listening,
    connected: () => active !== undefined,
    // Resolves once every session has ended (its hash cache saved, its partial files
    // cleared): a standby started again on the same root never writes beside one still going.
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await Promise.all([closed, ...sessions]);
    },
  };
}

async function serveSession(
  connection: FramedConnection,
  socket: TLSSocket,
  options: StandbyOptions,
  emit: (event: Record<string, unknown>) => void,
  takeOver: () => Promise<void>,
): Promise<void> {
  const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS).unref();
  const hello = await connection.expect(FrameType.Hello).finally(() => clearTimeout(timer));
  if (hello.role !== "replicate") {
    throw new ProtocolError(
      "bad-message",
      `this is a standby, which keeps a live copy for its primary; a ${hello.role} job goes to an offsite receiver`,
    );
  }
  const protocol = PROTOCOL_VERSIONS.find((v) => hello.versions.includes(v) && v >= REPLICATION_VERSION);
  if (protocol === undefined) {
    throw new ProtocolError(
      "unsupported-version",
      `replication needs protocol version ${REPLICATION_VERSION}; the primary offered ${hello.versions.join(", ")}`,
    );
  }
  const identity = peerIdentity(socket);
  if (!identity || identity.site !== hello.site || identity.source !== hello.source) {
    throw new ProtocolError(
      "forbidden",
      `this client certificate is for source ${identity?.source ?? "(none)"} of site ${identity?.site ?? "(none)"}, ` +
        `not ${hello.source} of site ${hello.site}`,
    );
  }
  const stateFile = join(options.root, STATE_DIR, "standby.json");
  const state = readState(stateFile);
  const pair = options.pair ?? state.source;
  if (
    (pair !== undefined && pair !== hello.source) ||
    (state.site !== undefined && state.site !== hello.site)
  ) {
    throw new ProtocolError(
      "forbidden",
      `this standby belongs to pair ${pair} of site ${state.site ?? "(any)"}, not ${hello.source} of site ${hello.site}; ` +
        "a standby keeps one pair's tree and never takes another's changes",
    );
  }
  const epoch = hello.epoch ?? 0;
  if (epoch < state.epoch) {
    throw new ProtocolError(
      "stale-epoch",
      `the primary speaks for epoch ${epoch}, but this standby has seen epoch ${state.epoch}: a newer primary ` +
        "took over, so this one may not write here; it must resync as the standby",
    );
  }
  await takeOver();
  // Read again: the session it replaced may have raised the epoch meanwhile.
  if (epoch < readState(stateFile).epoch) {
    throw new ProtocolError(
      "stale-epoch",
      `epoch ${epoch} is older than this standby's; resync as the standby`,
    );
  }
  writeState(stateFile, { site: hello.site, source: hello.source, epoch });

  const session = randomUUID();
  const liveEntries = new LiveEntries(options.root);
  const tree = new LiveTree(options.root, {
    firewall: options.firewall ?? true,
    onWritten: (file) => liveEntries.written(file),
    onRemoved: (path) => liveEntries.removed(path),
  });
  try {
    await connection.send(
      encodeJson(FrameType.Welcome, { version: protocol, session, base: null, resumed: false }),
    );
    // A session that another replaced (its socket destroyed) stops listing within a slice.
    const { entries } = await liveEntries.scan(() => !socket.destroyed);
    await sendEntries(connection, entries, undefined, protocol);
    emit({
      event: "session",
      session,
      site: hello.site,
      source: hello.source,
      epoch,
      entries: entries.length,
    });
    await applyChanges(connection, tree, liveEntries, emit, options.onApplied);
  } finally {
    tree.close();
    liveEntries.save();
  }
}

async function applyChanges(
  connection: FramedConnection,
  tree: LiveTree,
  liveEntries: LiveEntries,
  emit: (event: Record<string, unknown>) => void,
  onApplied: StandbyOptions["onApplied"],
): Promise<void> {
  const slice = new TimeSlice();
  let savedAt = Date.now();
  for (;;) {
    const waits = !connection.hasQueued;
    if (!waits) await slice.yieldIfSpent();
    const message = await connection.next();
    if (waits) slice.restart();
    switch (message.type) {
      case FrameType.File:
        tree.putFile(message.header, message.content);
        break;
      case FrameType.Begin:
        if (message.resumeAt !== undefined) {
          throw new ProtocolError("unexpected-frame", "a standby offers no partial file to resume");
        }
        tree.begin(message.path, message.mtime, message.mode, message.base);
        break;
      case FrameType.Data:
        tree.appendData(message.bytes);
        break;
      case FrameType.Copy:
        tree.appendCopy(message.offset, message.length, message.sha256);
        break;
      case FrameType.Zeros:
        tree.appendZeros(message.length);
        break;
      case FrameType.Abandon:
        tree.abandon();
        break;
      case FrameType.End:
        tree.end(message.size, message.sha256);
        break;
      case FrameType.Directory:
        tree.directory(message.path, message.mtime, message.mode);
        break;
      case FrameType.Symlink:
        tree.symlink(message.path, message.target, message.mtime);
        break;
      case FrameType.Delete:
        tree.delete(message.path);
        break;
      case FrameType.Link:
        tree.link(message.path, message.from, message.mtime, message.mode, message.sha256);
        break;
      case FrameType.Rename:
        tree.rename(message.from, message.to);
        break;
      case FrameType.Flush: {
        const refused = tree.flush();
        for (const file of refused) emit({ event: "refused-file", ...file });
        if (Date.now() - savedAt > CACHE_SAVE_MS) {
          liveEntries.save();
          savedAt = Date.now();
        }
        await connection.send(encodeJson(FrameType.Applied, { seq: message.seq, refused }));
        onApplied?.(refused);
        break;
      }
      default:
        throw new ProtocolError(
          "unexpected-frame",
          `a ${message.type} frame has no place in a replication session`,
        );
    }
  }
}

function readState(file: string): StandbyState {
  try {
    const state = JSON.parse(readFileSync(file, "utf8")) as StandbyState;
    return { ...state, epoch: state.epoch ?? 0 };
  } catch {
    return { epoch: 0 };
  }
}

function writeState(file: string, state: StandbyState): void {
  const temporary = `${file}.tmp`;
  const fd = openSync(
    temporary,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeSync(fd, JSON.stringify(state));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, file);
}
