/**
 * `offsite receive`: the offsite receiver. One TLS server; each connection is one job of
 * one source (push, compare or restore), identified by its client certificate. A
 * handshake without a certificate from our CA fails inside TLS, before any frame is read.
 *
 * What an OffsiteServer's spec says takes effect here: retention after each commit, at
 * most `maxConcurrentJobs` jobs at once (one more is refused as `busy` at Hello, before
 * it costs anything), and pushes of `suspendedSources` refused as `suspended` (their
 * versions stay readable by compare and restore).
 */
import { createServer, type Server, type TLSSocket } from "node:tls";
import { TCP_KEEPALIVE_MS } from "../../contract/transport.ts";
import { mkdirSync } from "node:fs";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { FramedConnection } from "../protocol/connection.ts";
import { encodeSignatures } from "../protocol/deltaFrames.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import {
  encodeChunkList,
  BINARY_FRAMES_VERSION,
  BYTE_NAMES_VERSION,
  DELTA_VERSION,
  encodeJson,
  ENTRIES_CACHE_VERSION,
  HARD_LINKS_VERSION,
  type ManifestEntry,
  type Message,
  PROTOCOL_VERSIONS,
  ZEROS_VERSION,
} from "../protocol/messages.ts";
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONCURRENT_JOBS } from "../../contract/roles.ts";
import { msToDuration } from "../../contract/units.ts";
import { peerIdentity, serverTlsOptions, type TlsCredentials } from "../tlsCredentials.ts";
import { commitVersion, emptyTrash } from "./commitVersion.ts";
import { SourceLayout } from "./layout.ts";
import { readManifest, comparePaths } from "./manifestFile.ts";
import { DEFAULT_RETENTION, type RetentionPolicy } from "./retention.ts";
import { StagingArea } from "./staging.ts";
import { sendTree } from "../transfer/sendTree.ts";
import { hasEscapedBytes } from "../protocol/byteNames.ts";
import { TimeSlice } from "../timeSlice.ts";

export interface ReceiverOptions {
  root: string;
  host: string;
  port: number;
  credentials: TlsCredentials;
  retention?: RetentionPolicy;
  /** Jobs served at once (default 16); one more is refused with `busy`. */
  maxConcurrentJobs?: number;
  /** Sources whose pushes are refused with `suspended`. */
  suspendedSources?: string[];
  /**
   * End a session whose client sends nothing (or reads nothing we send) for this long
   * (default 5 minutes), so a silent client cannot hold its source's lock (PROTOCOL.md,
   * "Timeouts").
   */
  idleTimeoutMs?: number | undefined;
  /**
   * The protocol versions this receiver speaks (default PROTOCOL_VERSIONS): narrower only
   * to test how a client meets an older receiver.
   */
  protocolVersions?: readonly number[];
  /** Called with one JSON-able event per session outcome (the CLI logs them). */
  onEvent?: (event: Record<string, unknown>) => void;
}

export interface RunningReceiver {
  port: number;
  /** True while the TLS listener accepts connections (the readiness probe). */
  accepting(): boolean;
  /** Sessions past Hello right now (the control endpoint's receiver report). */
  jobsRunning(): number;
  close(): Promise<void>;
}

const HELLO_TIMEOUT_MS = 30_000;

/** What all sessions of one receiver share: the jobs running, and the sources being pushed. */
interface ReceiverState {
  /** Sessions past Hello (any role), against maxConcurrentJobs. */
  jobs: number;
  /** Source directories with a push in progress (one push per source at a time). */
  pushing: Set<string>;
  /** Pruned versions being deleted after their commits (close waits for them). */
  trashEmptying: Set<Promise<void>>;
}
const ENTRIES_BYTES = 256 * 1024;

export async function startReceiver(options: ReceiverOptions): Promise<RunningReceiver> {
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  if (!Number.isInteger(idleTimeoutMs) || idleTimeoutMs < 1) {
    throw new Error(`--idle-timeout must be at least 1ms, not ${idleTimeoutMs}ms`);
  }
  mkdirSync(options.root, { recursive: true });
  const state: ReceiverState = { jobs: 0, pushing: new Set(), trashEmptying: new Set() };
  const sockets = new Set<TLSSocket>();
  const emit = options.onEvent ?? (() => undefined);
  const server: Server = createServer(serverTlsOptions(options.credentials), (socket) => {
    sockets.add(socket);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    socket.on("close", () => sockets.delete(socket));
    void handleSession(socket, options, state, emit);
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
    jobsRunning: () => state.jobs,
    close: async () => {
      await new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      // A push that returned has its pruned versions gone, in the local store too; a
      // deletion still going after 10 s is left for the next commit (a shutdown is bounded).
      await Promise.race([
        Promise.all(state.trashEmptying),
        new Promise((resolve) => setTimeout(resolve, 10_000).unref()),
      ]);
    },
  };
}

async function handleSession(
  socket: TLSSocket,
  options: ReceiverOptions,
  state: ReceiverState,
  emit: (event: Record<string, unknown>) => void,
): Promise<void> {
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const connection = new FramedConnection(socket, {
    idleTimeoutMs,
    idleError: (ms) =>
      new ProtocolError(
        "idle-timeout",
        `the client sent (or read) nothing for ${msToDuration(ms)} (the receiver's --idle-timeout); ` +
          "the session ends and its source is free for the next job: run the job again",
      ),
  });
  const session = randomUUID();
  const identity = peerIdentity(socket);
  let staging: StagingArea | undefined;
  let lockKey: string | undefined;
  let countedJob = false;
  // push: the client used its cache of the base's entries (the receiver sent none).
  let entriesWithheld = false;
  // Whose session failed, once its Hello named it (for the control endpoint's report).
  let named: { site: string; source: string } | undefined;
  const started = Date.now();
  try {
    // A peer that connects and says nothing is dropped; the timer must not outlive it.
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS).unref();
    const hello = await connection.expect(FrameType.Hello).finally(() => clearTimeout(timer));
    if (identity && identity.site === hello.site && identity.source === hello.source) named = identity;
    // The newest version both speak (PROTOCOL.md, "Versions").
    const spoken = options.protocolVersions ?? PROTOCOL_VERSIONS;
    const protocol = spoken.find((v) => hello.versions.includes(v));
    if (protocol === undefined) {
      throw new ProtocolError(
        "unsupported-version",
        `this receiver speaks protocol versions ${spoken.join(", ")}; the client offered ${hello.versions.join(", ")}`,
      );
    }
    if (!identity || identity.site !== hello.site || identity.source !== hello.source) {
      throw new ProtocolError(
        "forbidden",
        `this client certificate is for source ${identity?.source ?? "(none)"} of site ${identity?.site ?? "(none)"}, ` +
          `not source ${hello.source} of site ${hello.site}; a source may only write under its own GUID`,
      );
    }
    if (hello.role === "push" && options.suspendedSources?.includes(hello.source)) {
      throw new ProtocolError(
        "suspended",
        `source ${hello.source} is suspended on this receiver (spec.suspendedSources of its OffsiteServer); ` +
          "its versions are kept and can be compared and restored; remove it from the list to push again",
      );
    }
    if (hello.role === "replicate") {
      throw new ProtocolError(
        "bad-message",
        "this is an offsite receiver, which keeps versions; a replicating primary connects to a " +
          "standby (`offsite standby`), not to a receiver",
      );
    }
    const limit = options.maxConcurrentJobs ?? DEFAULT_MAX_CONCURRENT_JOBS;
    if (state.jobs >= limit) {
      throw new ProtocolError(
        "busy",
        `the receiver is serving its limit of ${limit} jobs at once (maxConcurrentJobs); retry when one ends`,
      );
    }
    state.jobs++;
    countedJob = true;
    const layout = new SourceLayout(options.root, hello.site, hello.source);
    emit({
      event: "session",
      session,
      role: hello.role,
      site: layout.site,
      source: layout.source,
      peer: socket.remoteAddress,
    });
    const current = layout.current();

    if (hello.role === "push") {
      if (state.pushing.has(layout.dir)) {
        throw new ProtocolError(
          "busy",
          `a job for source ${hello.source} is already running; retry when it ends`,
        );
      }
      // Only the session that took the lock releases it (in finally).
      lockKey = layout.dir;
      state.pushing.add(lockKey);
      staging = new StagingArea(layout, current);
      const resumed = staging.open();
      // The client has the base's entries cached (PROTOCOL.md, "Receiver state cache"): name
      // their digest instead of sending them. Not when staged work changed the view.
      const withhold =
        protocol >= ENTRIES_CACHE_VERSION && !resumed && current !== null && hello.version === current;
      const digest = withhold ? staging.baseDigest() : undefined;
      await connection.send(
        encodeJson(FrameType.Welcome, {
          version: protocol,
          session,
          base: current,
          resumed,
          ...(digest ? { digest } : {}),
        }),
      );
      let first: Message | undefined;
      if (digest) {
        first = await connection.next();
        if (first.type === FrameType.EntriesWanted) first = undefined;
        else entriesWithheld = true;
      }
      if (!entriesWithheld)
        await sendEntries(connection, staging.effectiveEntries(), staging.partialState(), protocol);
      const result = await receivePush(connection, staging, {
        retention: options.retention ?? DEFAULT_RETENTION,
        protocol,
        first,
      });
      // After Committed: the client does not wait for the pruned versions to be deleted.
      // (What a crash left in the trash goes with the next commit's.)
      const emptying = emptyTrash(layout).catch((error: unknown) =>
        emit({ event: "trash", site: layout.site, source: layout.source, problem: (error as Error).message }),
      );
      state.trashEmptying.add(emptying);
      void emptying.finally(() => state.trashEmptying.delete(emptying));
      emit({
        event: "committed",
        session,
        site: layout.site,
        source: layout.source,
        entriesWithheld,
        ...result,
        ms: Date.now() - started,
      });
      return;
    }

    const wanted = hello.version ?? current;
    if (!wanted || !layout.versions().includes(wanted)) {
      throw new ProtocolError(
        "no-such-version",
        wanted
          ? `source ${hello.source} has no version ${wanted}`
          : `source ${hello.source} has no version yet`,
      );
    }
    await connection.send(
      encodeJson(FrameType.Welcome, { version: protocol, session, base: wanted, resumed: false }),
    );
    const entries = readManifest(layout.manifestOf(wanted));
    if (hello.role === "compare") {
      await sendEntries(connection, entries, undefined, protocol);
      await connection.close();
    } else {
      const summary = await sendTree(
        connection,
        layout.treeOf(wanted),
        entries.sort((a, b) => comparePaths(a.path, b.path)),
        { zeros: protocol >= ZEROS_VERSION, hardLinks: protocol >= HARD_LINKS_VERSION },
      );
      await connection.send(
        encodeJson(FrameType.Commit, { files: summary.files, bytes: summary.bytes, filtered: {} }),
      );
      await connection.close();
    }
    emit({
      event: hello.role,
      session,
      site: layout.site,
      source: layout.source,
      version: wanted,
      ms: Date.now() - started,
    });
  } catch (error) {
    const { code, message, path } = describeFailure(error);
    emit({ event: "failed", session, code, message, peer: socket.remoteAddress, ...named });
    // The session is over: free the source before the lingering close, which may wait
    // seconds on a peer that reads nothing. Staging is closed first (synchronously), so
    // the next session of the source finds it complete.
    release();
    await connection.abort(code, message, path);
  } finally {
    release();
  }

  function release(): void {
    staging?.close();
    staging = undefined;
    if (lockKey) state.pushing.delete(lockKey);
    lockKey = undefined;
    if (countedJob) state.jobs--;
    countedJob = false;
  }
}

/**
 * The receiver's view as a version-1 peer can take it (PROTOCOL.md, "Versioning"): no
 * `hardLink` (its schema refuses unknown keys), and no entry whose name or target is not
 * UTF-8, which it could neither scan nor match: left out, so it is neither deleted by an
 * older pusher nor reported by an older compare, and the receiver carries it over.
 */
function* asVersion1(entries: Iterable<ManifestEntry>): Iterable<ManifestEntry> {
  for (const entry of entries) {
    if (hasEscapedBytes(entry.path) || (entry.type === "symlink" && hasEscapedBytes(entry.target))) continue;
    if (entry.type === "file" && entry.hardLink !== undefined) {
      const { hardLink: _, ...plain } = entry;
      yield plain;
    } else yield entry;
  }
}

/**
 * The receiver's view for a push or compare: Entries frames of at most ENTRIES_BYTES of
 * JSON each, every large file's chunk list in ChunkList frames right after the Entries
 * frame that names it, then the partial file's durable chunks, then EntriesEnd.
 */
export async function sendEntries(
  connection: FramedConnection,
  all: Iterable<ManifestEntry>,
  partial: { path: string; chunks: [number, string][] } | undefined,
  protocol: number,
): Promise<void> {
  const entries = protocol >= BYTE_NAMES_VERSION ? all : asVersion1(all);
  let batch: ManifestEntry[] = [];
  let batchBytes = 0;
  let chunkLists: Buffer[] = [];
  let count = 0;
  const flush = async () => {
    await connection.send(encodeJson(FrameType.Entries, { entries: batch }));
    for (const frame of chunkLists) await connection.send(frame);
    batch = [];
    batchBytes = 0;
    chunkLists = [];
  };
  for (const entry of entries) {
    count++;
    if (entry.type === "file" && entry.chunks) {
      const { chunks, ...bare } = entry;
      batch.push(bare);
      chunkLists.push(...encodeChunkList("entry", entry.path, chunks));
      batchBytes += JSON.stringify(bare).length;
    } else {
      batch.push(entry);
      batchBytes += JSON.stringify(entry).length;
    }
    if (batchBytes >= ENTRIES_BYTES || batch.length >= 10_000) await flush();
  }
  if (batch.length > 0) await flush();
  if (partial && partial.chunks.length > 0) {
    for (const frame of encodeChunkList("partial", partial.path, partial.chunks))
      await connection.send(frame);
  }
  await connection.send(encodeJson(FrameType.EntriesEnd, { count }));
}

async function receivePush(
  connection: FramedConnection,
  staging: StagingArea,
  session: {
    retention: RetentionPolicy;
    protocol: number;
    /** The push's first frame, already read (after withheld entries). */
    first: Message | undefined;
  },
) {
  // Every session shares the one loop: a peer whose frames queue up faster than they are
  // handled must not hold up the others (their handshakes, Hellos and commits).
  const slice = new TimeSlice();
  let first = session.first;
  for (;;) {
    let message: Message;
    if (first) {
      message = first;
      first = undefined;
    } else {
      const waits = !connection.hasQueued;
      // About to wait for the peer: journal what is finished first. Queued frames resolve
      // at once, in microtasks: without the slice the loop would never turn.
      if (waits) staging.flushJournal();
      else await slice.yieldIfSpent();
      message = await connection.next();
      if (waits) slice.restart();
    }
    switch (message.type) {
      case FrameType.File:
        staging.putFile(message.header, message.content);
        break;
      case FrameType.Begin:
        staging.begin(message.path, message.mtime, message.mode, message.base, message.resumeAt);
        break;
      case FrameType.Data:
        staging.appendData(message.bytes);
        break;
      case FrameType.HashedData:
        if (session.protocol < BINARY_FRAMES_VERSION) throw versionFrame("HashedData", session.protocol);
        staging.appendHashedData(message.bytes, message.sha256);
        break;
      case FrameType.SignatureRequest:
        if (session.protocol < DELTA_VERSION) throw versionFrame("SignatureRequest", session.protocol);
        // Answered at once, in order; the client reads them while it goes on sending.
        for (const path of message.paths)
          await connection.send(encodeSignatures(path, staging.signatureOf(path)));
        break;
      case FrameType.Patch:
        if (session.protocol < DELTA_VERSION) throw versionFrame("Patch", session.protocol);
        staging.putPatch(message.header, message.blockSize, message.ops);
        break;
      case FrameType.Copy:
        staging.appendCopy(message.offset, message.length, message.sha256);
        break;
      case FrameType.Zeros:
        staging.appendZeros(message.length);
        break;
      case FrameType.Abandon:
        staging.abandon();
        break;
      case FrameType.End:
        staging.end(message.size, message.sha256);
        break;
      case FrameType.Directory:
        staging.putDirectory(message.path, message.mtime, message.mode);
        break;
      case FrameType.Symlink:
        staging.putSymlink(message.path, message.target, message.mtime);
        break;
      case FrameType.Delete:
        staging.delete(message.path);
        break;
      case FrameType.Link:
        staging.link(message.path, message.from, message.mtime, message.mode, message.sha256);
        break;
      case FrameType.HardLink:
        staging.hardLink(message.path, message.to);
        break;
      case FrameType.Commit: {
        const bytesReceived = staging.bytesWritten;
        const result = commitVersion(
          staging,
          { files: message.files, bytes: message.bytes, filtered: message.filtered },
          session.retention,
        );
        await connection.send(
          encodeJson(FrameType.Committed, {
            version: result.version,
            files: result.files,
            bytesReceived,
            pruned: result.pruned,
            ...(session.protocol >= ENTRIES_CACHE_VERSION ? { digest: result.digest } : {}),
          }),
        );
        await connection.close();
        return { ...result, bytesReceived };
      }
      default:
        throw new ProtocolError("unexpected-frame", `a ${message.type} frame has no place in a push`);
    }
  }
}

function versionFrame(name: string, protocol: number): ProtocolError {
  return new ProtocolError(
    "unexpected-frame",
    `a ${name} frame has no place in a version ${protocol} session`,
  );
}

export function describeFailure(
  error: unknown,
  self: "receiver" | "standby" = "receiver",
): { code: string; message: string; path?: string } {
  if (error instanceof ProtocolError)
    return {
      code: error.code,
      message: error.message,
      ...(error.path !== undefined ? { path: error.path } : {}),
    };
  const errno = (error as NodeJS.ErrnoException).code;
  if (errno === "ENOSPC" || errno === "EDQUOT") {
    return {
      code: "disk-full",
      message:
        self === "standby"
          ? "the standby's disk is full; every file in its live tree is still whole. Free space or " +
            "grow the volume: the primary's next session catches up"
          : "the receiver's disk is full; the previous version is intact and what arrived is staged. " +
            "Free space or grow the volume, then run the job again: it resumes",
    };
  }
  if (errno === "ENAMETOOLONG") {
    return {
      code: "bad-path",
      message: `a path is too long for the ${self}'s file system once under its root (${(error as Error).message})`,
    };
  }
  if (error instanceof Error && error.name === "PeerError")
    return { code: "peer-gone", message: error.message };
  return { code: "internal", message: `the ${self} failed: ${(error as Error).message}` };
}
