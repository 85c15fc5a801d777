/**
 * Runs the real `offsite` CLI as child processes for the agent's end-to-end tests: a
 * receiver listening on loopback, and clients (push, compare, restore, certs) against it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before } from "node:test";
import { connect } from "node:tls";
import { FrameDecoder, FrameType } from "../../agent/protocol/frames.ts";
import {
  decodeMessage,
  encodeJson,
  type ManifestEntry,
  type Message,
  PROTOCOL_VERSIONS,
} from "../../agent/protocol/messages.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";

const MAIN = resolve(import.meta.dirname, "../../agent/main.mjs");

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startOffsite(
  args: string[],
  cwd?: string,
  main = MAIN,
): { child: ChildProcess; finished: Promise<Finished> } {
  const child = spawn(process.execPath, [main, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const finished = once(child, "close").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    stdout,
    stderr,
  }));
  return { child, finished };
}

/** `main`: another agent's entry point (an older release, test/agent/olderAgents.ts). */
export function runOffsite(args: string[], cwd?: string, main = MAIN): Promise<Finished> {
  return startOffsite(args, cwd, main).finished;
}

/** The `offsite` CLI as the user `uid` (its group the same number), from `/`: a non-root agent. */
export function runOffsiteAs(uid: number | undefined, args: string[]): Promise<Finished> {
  if (uid === undefined) return runOffsite(args, "/");
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: "/",
    uid,
    gid: uid,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return once(child, "close").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    stdout,
    stderr,
  }));
}

/** The JSON report a client printed on stdout (it prints JSON when stdout is not a terminal). */
export function reportOf<T = Record<string, unknown>>(finished: Finished): T {
  const line = finished.stdout.trim().split("\n").at(-1);
  if (!line) throw new Error(`no report; exit ${finished.code}; stderr:\n${finished.stderr}`);
  return JSON.parse(line) as T;
}

/** `offsite certs` for one site and source: returns the receiver's and the client's credential directories. */
export async function makeStandaloneCerts(
  dir: string,
  site: string,
  source: string,
): Promise<{ receiver: string; client: string }> {
  const made = await runOffsite(["certs", "--out", dir, "--site", site, "--source", source, "--json"]);
  if (made.code !== 0) throw new Error(`offsite certs failed: ${made.stderr}`);
  return { receiver: join(dir, "receiver"), client: join(dir, `source-${source}`) };
}

/** A suite's work directory, certificates for one site and source, and a receiver on them. */
export interface StandaloneReceiver {
  work: string;
  certs: { receiver: string; client: string };
  receiver: ReceiverProcess;
}

/**
 * Registers, in the calling describe(), hooks that make a StandaloneReceiver before its
 * tests and remove it after; read the fields inside the tests, once `before` has run.
 */
export function standaloneReceiverSuite(name: string, site: string, source: string): StandaloneReceiver {
  const suite = {} as StandaloneReceiver;
  before(async () => {
    suite.work = mkdtempSync(join(tmpdir(), `offsite-${name}-`));
    suite.certs = await makeStandaloneCerts(join(suite.work, "certs"), site, source);
    suite.receiver = await startReceiverProcess(join(suite.work, "root"), suite.certs.receiver);
  });
  after(async () => {
    await suite.receiver?.stop();
    if (suite.work) rmSync(suite.work, { recursive: true, force: true });
  });
  return suite;
}

export interface ReceiverProcess {
  port: number;
  child: ChildProcess;
  events: Record<string, unknown>[];
  stop(): Promise<void>;
}

/**
 * Starts `offsite receive` on 127.0.0.1 with a free port. With `tmpfsBytes`, the receiver
 * runs in a mount namespace of its own (unshare, no root needed) whose root directory is a
 * tmpfs of that size: a small disk that fills up, gone when the process ends.
 */
export async function startReceiverProcess(
  root: string,
  certs: string,
  extra: string[] = [],
  tmpfsBytes?: number,
  main = MAIN,
): Promise<ReceiverProcess> {
  const args = [
    main,
    "receive",
    "--root",
    root,
    "--certs",
    certs,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    ...extra,
  ];
  const child =
    tmpfsBytes === undefined
      ? spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
      : spawn(
          "unshare",
          [
            "-rm",
            "sh",
            "-c",
            `mount -t tmpfs -o size=${tmpfsBytes} tmpfs "$0" && exec "$@"`,
            root,
            process.execPath,
            ...args,
          ],
          { stdio: ["ignore", "pipe", "pipe"] },
        );
  const events: Record<string, unknown>[] = [];
  const listening = await listeningEvent(child, events, "the receiver");
  const port = listening.port as number;
  return {
    port,
    child,
    events,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

/**
 * Reads a CLI process's JSON event lines on stderr into `events` (as long as it runs) and
 * resolves with its `listening` event; rejects when it exits before. `what` names it.
 */
export function listeningEvent(
  child: ChildProcess,
  events: Record<string, unknown>[],
  what: string,
): Promise<Record<string, unknown>> {
  let buffered = "";
  return new Promise((resolveEvent, reject) => {
    child.once("exit", (code) => reject(new Error(`${what} exited with ${code} before listening`)));
    child.stderr!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const event = JSON.parse(line) as Record<string, unknown>;
          events.push(event);
          if (event.event === "listening") resolveEvent(event);
        } catch {
          events.push({ event: "unparsed", line });
        }
      }
    });
  });
}

/**
 * A raw session as a hand-written peer: connects with the credentials in `certsDir`,
 * writes `frames` (Hello first), ends its side, and returns every message the receiver
 * sent until it closed (a session still open after `timeoutMs` is cut).
 */
export async function rawSession(
  port: number,
  certsDir: string,
  frames: Buffer[],
  timeoutMs = 10_000,
  /** Keep the client's side open this long (or until the receiver closes): for answers sent mid-stream. */
  holdOpenMs = 0,
): Promise<Message[]> {
  const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ...loadCredentials(certsDir) });
  socket.on("error", () => undefined);
  const decoder = new FrameDecoder();
  socket.on("data", (bytes: Buffer) => decoder.push(bytes));
  await once(socket, "secureConnect");
  for (const frame of frames) socket.write(frame);
  const closed = once(socket, "close");
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  if (holdOpenMs > 0) await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, holdOpenMs))]);
  socket.end();
  await closed;
  clearTimeout(timer);
  const messages: Message[] = [];
  for (let frame = decoder.next(); frame; frame = decoder.next()) messages.push(decodeMessage(frame));
  return messages;
}

/** A push session's Hello for a raw session, offering `versions` (all this agent speaks by default). */
export function pushHello(
  site: string,
  source: string,
  versions: readonly number[] = PROTOCOL_VERSIONS,
): Buffer {
  return encodeJson(FrameType.Hello, { versions: [...versions], role: "push", site, source, client: "test" });
}

/**
 * The receiver's entries as a peer offering `versions` sees them: a raw compare session
 * (Hello, Welcome, Entries..., EntriesEnd), for tests of what older peers are sent.
 */
export async function entriesSeenBy(
  port: number,
  certsDir: string,
  site: string,
  source: string,
  versions: number[],
): Promise<{ version: number; entries: ManifestEntry[] }> {
  const hello = encodeJson(FrameType.Hello, { versions, role: "compare", site, source, client: "test" });
  let version = 0;
  const entries: ManifestEntry[] = [];
  for (const message of await rawSession(port, certsDir, [hello])) {
    if (message.type === FrameType.Welcome) version = message.version;
    if (message.type === FrameType.Entries) entries.push(...message.entries);
    if (message.type === FrameType.Error) throw new Error(`${message.code}: ${message.message}`);
  }
  return { version, entries };
}
