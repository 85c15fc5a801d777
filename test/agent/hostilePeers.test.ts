/**
 * A receiver process facing hostile and broken peers over real TLS on loopback: bad
 * paths, bad frames, garbage, wrong certificates, a source posing as another, a full
 * disk. Each is refused with a clear error, nothing is written outside the root, and the
 * previous version stays current and restorable.
 *
 * Long on purpose (past ~400 lines): one case per attack, each written out as the
 * attacker would send it, so a reader sees every hostile input in one place.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, type TLSSocket } from "node:tls";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import { chunkLengths } from "../../agent/chunking/fastCdc.ts";
import { encodeFrame, FrameDecoder, FrameType } from "../../agent/protocol/frames.ts";
import { decodeMessage, encodeFile, encodeJson, type Message } from "../../agent/protocol/messages.ts";
import { sha256Hex } from "./testSupport.ts";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";

const SITE = "11111111-2222-4333-8444-555555555555";
const SOURCE = "66666666-7777-4888-8999-aaaaaaaaaaaa";
const OTHER_SOURCE = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff";
const YEAR = 365 * 86_400_000;

interface Credentials {
  ca: string;
  cert: string;
  key: string;
}

async function clientOf(ca: CertificateAndKey, source: string): Promise<Credentials> {
  const client = await issueCertificate(ca, {
    commonName: source,
    organizations: [SITE],
    usage: "client",
    validForMs: YEAR,
  });
  return { ca: ca.certificatePem, cert: client.certificatePem, key: client.privateKeyPem };
}

/** Connects with the given credentials; resolves with the socket or rejects with the TLS error. */
async function connectAs(port: number, credentials: Credentials): Promise<TLSSocket> {
  const socket = connect({
    host: "127.0.0.1",
    port,
    ...credentials,
    servername: "localhost",
    minVersion: "TLSv1.3",
  });
  await once(socket, "secureConnect");
  return socket;
}

/** Sends raw bytes, then collects what the receiver answers until it closes the connection. */
async function exchange(
  socket: TLSSocket,
  ...writes: Buffer[]
): Promise<{ messages: Message[]; error?: Extract<Message, { type: 0x7f }> }> {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  socket.on("data", (bytes: Buffer) => decoder.push(bytes));
  socket.on("error", () => undefined);
  for (const bytes of writes) socket.write(bytes);
  await once(socket, "close");
  for (let frame = decoder.next(); frame; frame = decoder.next()) messages.push(decodeMessage(frame));
  const error = messages.find((m): m is Extract<Message, { type: 0x7f }> => m.type === FrameType.Error);
  return { messages, ...(error ? { error } : {}) };
}

const hello = (source = SOURCE) =>
  encodeJson(FrameType.Hello, { versions: [1], role: "push", site: SITE, source, client: "hostile-test" });

function fileFrame(path: string, content: string): Buffer {
  const bytes = Buffer.from(content);
  return encodeFile({ path, size: bytes.length, mtime: 0, mode: 0o644, sha256: sha256Hex(bytes) }, bytes);
}

function listAll(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

describe("a receiver facing hostile peers", () => {
  let work: string;
  let root: string;
  let ca: CertificateAndKey;
  let good: Credentials;
  let receiver: ReceiverProcess;
  let firstVersion: string;
  const outside = () =>
    listAll(work).filter((p) => !p.startsWith("root") && !p.startsWith("certs") && !p.startsWith("src"));

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-hostile-"));
    root = join(work, "root");
    ca = await createCertificateAuthority("hostile test CA", YEAR);
    const server = await issueCertificate(ca, {
      commonName: "localhost",
      hosts: ["localhost", "127.0.0.1"],
      usage: "server",
      validForMs: YEAR,
    });
    const certs = join(work, "certs");
    mkdirSync(certs);
    writeFileSync(join(certs, "ca.crt"), ca.certificatePem);
    writeFileSync(join(certs, "tls.crt"), server.certificatePem);
    writeFileSync(join(certs, "tls.key"), server.privateKeyPem);
    good = await clientOf(ca, SOURCE);
    const clientDir = join(work, "certs-client");
    mkdirSync(clientDir);
    writeFileSync(join(clientDir, "ca.crt"), good.ca);
    writeFileSync(join(clientDir, "tls.crt"), good.cert);
    writeFileSync(join(clientDir, "tls.key"), good.key);
    receiver = await startReceiverProcess(root, certs);
    // A good first version, which every hostile session below must leave alone.
    mkdirSync(join(work, "src"));
    writeFileSync(join(work, "src", "keep.txt"), "precious");
    const pushed = await pushSource();
    assert.equal(pushed.code, 0, pushed.stderr);
    firstVersion = reportOf<{ version: string }>(pushed).version;
  });

  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** `offsite push` of work/src with the good client certificate, as a real pusher. */
  const pushSource = () =>
    runOffsite([
      "push",
      join(work, "src"),
      "--to",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      join(work, "certs-client"),
      "--json",
    ]);

  const stillIntact = () => {
    const versions = readdirSync(join(root, SITE, SOURCE, "versions"));
    assert.deepEqual(versions, [firstVersion]);
    assert.deepEqual(outside(), []);
  };

  for (const [name, path, problem] of [
    ["a .. traversal", "../../escaped.txt", /has a \.\. component/],
    ["an absolute path", "/tmp/offsite-escaped.txt", /it is absolute/],
    ["a NUL byte", "evil\0name", /contains a NUL byte/],
    ["a name longer than 255 bytes", "x".repeat(300), /longer than 255 bytes/],
    ["an empty component", "a//b", /empty component/],
    // Names are bytes in one lossless form (byteNames.ts): a surrogate must stand for a byte.
    ["a lone high surrogate", "photo\ud800.jpg", /lone UTF-16 surrogate that stands for no byte/],
    ["a lone surrogate below the escapes (U+DC41 is not the byte A)", "a\udc41", /stands for no byte/],
    ["escaped bytes that are UTF-8 (a second name for é)", "caf\udcc3\udca9", /valid UTF-8/],
  ] as const) {
    it(`refuses a path with ${name}`, async () => {
      const socket = await connectAs(receiver.port, good);
      const { error } = await exchange(socket, hello(), fileFrame(path, "payload"));
      assert.equal(error?.code, "bad-path");
      assert.match(error.message, problem);
      stillIntact();
    });
  }

  it("never writes through a symlink the peer declared", async () => {
    const socket = await connectAs(receiver.port, good);
    const { error } = await exchange(
      socket,
      hello(),
      encodeJson(FrameType.Symlink, { path: "link", mtime: 0, target: "/tmp" }),
      fileFrame("link/planted.txt", "planted"),
      encodeJson(FrameType.Commit, { files: 1, bytes: 7, filtered: {} }),
    );
    assert.equal(error?.code, "inconsistent-tree");
    stillIntact();
    assert.equal(readdirSync("/tmp").includes("planted.txt"), false);
  });

  it("refuses an oversized frame before buffering it", async () => {
    const socket = await connectAs(receiver.port, good);
    const header = Buffer.from([0xff, 0xff, 0xff, 0xf0, FrameType.File]);
    const { error } = await exchange(socket, hello(), header);
    assert.equal(error?.code, "frame-too-large");
    stillIntact();
  });

  it("drops a truncated frame when the peer goes away, and commits nothing", async () => {
    const socket = await connectAs(receiver.port, good);
    const frame = fileFrame("truncated.txt", "x".repeat(1000));
    socket.on("error", () => undefined);
    socket.resume(); // read (and drop) what the receiver sends, so the close can complete
    socket.write(hello());
    socket.end(frame.subarray(0, 200));
    await once(socket, "close");
    stillIntact();
  });

  it("refuses garbage after the handshake", async () => {
    const socket = await connectAs(receiver.port, good);
    const garbage = Buffer.from("GET / HTTP/1.1\r\nHost: offsite\r\n\r\n");
    const { error } = await exchange(socket, garbage);
    assert.ok(error && ["frame-too-large", "unknown-frame"].includes(error.code), JSON.stringify(error));
    stillIntact();
  });

  it("refuses a frame whose content does not match its hash", async () => {
    const socket = await connectAs(receiver.port, good);
    const bytes = Buffer.from("real content");
    const lying = encodeFile(
      { path: "lie.txt", size: bytes.length, mtime: 0, mode: 0o644, sha256: "0".repeat(64) },
      bytes,
    );
    const { error } = await exchange(socket, hello(), lying);
    assert.equal(error?.code, "hash-mismatch");
    stillIntact();
  });

  it("refuses a self-signed client certificate during the TLS handshake", async () => {
    const selfSigned = await createCertificateAuthority(SOURCE, YEAR);
    await assert.rejects(
      connectAs(receiver.port, {
        ca: ca.certificatePem,
        cert: selfSigned.certificatePem,
        key: selfSigned.privateKeyPem,
      }).then((s) =>
        exchange(s, hello()).then((r) => {
          throw new Error(`the receiver answered: ${JSON.stringify(r.messages)}`);
        }),
      ),
    );
    stillIntact();
  });

  it("refuses a client certificate from another CA during the TLS handshake", async () => {
    const otherCa = await createCertificateAuthority("another CA", YEAR);
    const stranger = await clientOf(otherCa, SOURCE);
    await assert.rejects(
      connectAs(receiver.port, { ...stranger, ca: ca.certificatePem }).then((s) =>
        exchange(s, hello()).then((r) => {
          throw new Error(`the receiver answered: ${JSON.stringify(r.messages)}`);
        }),
      ),
    );
    assert.ok(receiver.events.some((e) => e.event === "refused"));
    stillIntact();
  });

  it("refuses a source that asks to write under another source's GUID", async () => {
    const socket = await connectAs(receiver.port, good);
    const { error } = await exchange(socket, hello(OTHER_SOURCE), fileFrame("x.txt", "x"));
    assert.equal(error?.code, "forbidden");
    assert.match(error.message, /only write under its own GUID/);
    assert.deepEqual(readdirSync(join(root, SITE)), [SOURCE]);
  });

  it("runs one push per source at a time; a refused second push does not free the first one's lock", async () => {
    const first = await connectAs(receiver.port, good);
    first.on("error", () => undefined);
    first.resume();
    first.write(hello());
    await new Promise((resolve) => setTimeout(resolve, 300)); // the first session holds the lock
    for (let i = 0; i < 2; i++) {
      const { error } = await exchange(await connectAs(receiver.port, good), hello());
      assert.equal(error?.code, "busy", `attempt ${i + 1}`);
      assert.match(error.message, /already running; retry when it ends/);
    }
    first.end();
    await once(first, "close");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { error } = await exchange(await connectAs(receiver.port, good), hello(), fileFrame("../x", "x"));
    assert.equal(error?.code, "bad-path", "the lock is free once the first session ended");
    stillIntact();
  });

  it("refuses a symlink whose target holds a NUL byte (restore could never create it)", async () => {
    const socket = await connectAs(receiver.port, good);
    const { error } = await exchange(
      socket,
      hello(),
      encodeJson(FrameType.Symlink, { path: "nul-link", mtime: 0, target: "/tmp\0/etc" }),
    );
    assert.equal(error?.code, "bad-message");
    assert.match(error.message, /symlink target cannot contain a NUL byte/);
    stillIntact();
  });

  it("refuses a symlink target with a surrogate that stands for no byte", async () => {
    const socket = await connectAs(receiver.port, good);
    const { error } = await exchange(
      socket,
      hello(),
      encodeJson(FrameType.Symlink, { path: "odd-link", mtime: 0, target: "../\udfff" }),
    );
    assert.equal(error?.code, "bad-message");
    assert.match(error.message, /symlink target must be bytes/);
    stillIntact();
  });

  it("refuses a path near 4 KiB that the file system cannot take under the root as bad-path, not internal", async () => {
    // 16 names of 250 bytes: 4,015 bytes, a valid path, too long once under the staging tree.
    const names = Array.from({ length: 16 }, (_, i) => String(i % 10).repeat(250));
    const dirs = names.map((_, i) => names.slice(0, i + 1).join("/"));
    const frames = dirs.map((path) => encodeJson(FrameType.Directory, { path, mtime: 0, mode: 0o755 }));
    const socket = await connectAs(receiver.port, good);
    const { error } = await exchange(socket, hello(), ...frames, fileFrame(`${dirs.at(-1)}/f`, "x"));
    assert.equal(error?.code, "bad-path", error?.message);
    assert.match(error.message, /too long for the receiver's file system/);
    stillIntact();
  });

  it("refuses a HardLink to a later path, or to what is no file of the new version", async () => {
    for (const [frame, problem] of [
      [{ path: "a-link", to: "keep.txt" }, /does not come before it/],
      [{ path: "z-link", to: "missing.txt" }, /not a file of the new version/],
    ] as const) {
      const socket = await connectAs(receiver.port, good);
      const { error } = await exchange(socket, hello(), encodeJson(FrameType.HardLink, frame));
      assert.equal(error?.code, "bad-reference", error?.message);
      assert.match(error.message, problem);
      stillIntact();
    }
  });

  it("refuses a client that speaks only an unknown protocol version", async () => {
    const socket = await connectAs(receiver.port, good);
    const future = encodeJson(FrameType.Hello, {
      versions: [7],
      role: "push",
      site: SITE,
      source: SOURCE,
      client: "future",
    });
    const { error } = await exchange(socket, future);
    assert.equal(error?.code, "unsupported-version");
    stillIntact();
  });

  // Last: it commits a second version, which the checks above would not expect.
  it("writes a File over a name the job linked to a stored file as a new file, never into the stored one", async () => {
    const stored = join(root, SITE, SOURCE, "versions", firstVersion, "tree", "keep.txt");
    const keep = Buffer.from("precious");
    const socket = await connectAs(receiver.port, good);
    const { messages, error } = await exchange(
      socket,
      hello(),
      // What the sessions above left staged (this push resumes them), as a pusher would.
      encodeJson(FrameType.Delete, { path: "link/planted.txt" }),
      encodeJson(FrameType.Delete, { path: "link" }),
      // keep.txt's content under a new name: a hard link to the stored file...
      encodeJson(FrameType.Link, {
        path: "copy.txt",
        from: "keep.txt",
        mtime: 0,
        mode: 0o644,
        sha256: sha256Hex(keep),
      }),
      // ...then other content for that name, as a peer may send (or a resumed job may).
      fileFrame("copy.txt", "overwritten"),
      encodeJson(FrameType.Commit, { files: 2, bytes: 19, filtered: {} }),
    );
    assert.equal(error, undefined, error?.message);
    const committed = messages.find((m) => m.type === FrameType.Committed);
    assert.ok(committed, "the job committed");
    assert.equal(readFileSync(stored, "utf8"), "precious", "the stored version's file is untouched");
    const tree = join(root, SITE, SOURCE, "versions", committed.version, "tree");
    assert.equal(readFileSync(join(tree, "copy.txt"), "utf8"), "overwritten");
    assert.equal(readFileSync(join(tree, "keep.txt"), "utf8"), "precious");
    assert.equal(statSync(join(tree, "keep.txt")).ino, statSync(stored).ino, "unchanged data stays shared");
    assert.notEqual(statSync(join(tree, "copy.txt")).ino, statSync(stored).ino);
  });

  it("resumes a large file short of what is staged when the file changed after its first chunks", async () => {
    const data = randomBytes(400 * 1024);
    const lengths = chunkLengths(data);
    assert.ok(lengths.length >= 6, "enough chunks to interrupt in the middle");
    const at = (n: number) => lengths.slice(0, n).reduce((sum, length) => sum + length, 0);
    // An interrupted push: the first four chunks arrive, then the connection ends.
    const socket = await connectAs(receiver.port, good);
    const begin = encodeJson(FrameType.Begin, { path: "resumed.bin", mtime: 0, mode: 0o644 });
    const chunks = [0, 1, 2, 3].map((i) => encodeFrame(FrameType.Data, data.subarray(at(i), at(i + 1))));
    socket.on("error", () => undefined);
    socket.resume();
    for (const frame of [hello(), begin, ...chunks]) socket.write(frame);
    socket.end();
    await once(socket, "close");
    // The file changes inside its third chunk before the retry: two staged chunks still fit.
    data[at(2) + 10] = data[at(2) + 10]! ^ 0xff;
    writeFileSync(join(work, "src", "resumed.bin"), data);
    const pushed = await pushSource();
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal(reportOf<{ resumed: boolean }>(pushed).resumed, true);
    const version = reportOf<{ version: string }>(pushed).version;
    const stored = readFileSync(join(root, SITE, SOURCE, "versions", version, "tree", "resumed.bin"));
    assert.ok(stored.equals(data), "the stored file is the changed one, byte for byte");
  });
});

describe("a receiver facing a silent client", () => {
  let work: string;
  let receiver: ReceiverProcess;
  let certs: { receiver: string; client: string };
  let credentials: Credentials;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-idle-"));
    certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    const read = (name: string) => readFileSync(join(certs.client, name), "utf8");
    credentials = { ca: read("ca.crt"), cert: read("tls.crt"), key: read("tls.key") };
    receiver = await startReceiverProcess(join(work, "root"), certs.receiver, ["--idle-timeout", "1s"]);
    mkdirSync(join(work, "src"));
    writeFileSync(join(work, "src", "a.txt"), "a");
  });
  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });
  const push = () =>
    runOffsite([
      "push",
      join(work, "src"),
      "--to",
      `127.0.0.1:${receiver.port}`,
      "--certs",
      certs.client,
      "--json",
    ]);

  for (const [when, frames] of [
    ["right after Hello", () => [hello()]],
    [
      "between frames, in the middle of a large file",
      () => [
        hello(),
        encodeJson(FrameType.Begin, { path: "big.bin", mtime: 0, mode: 0o644 }),
        encodeFrame(FrameType.Data, randomBytes(4096)),
      ],
    ],
  ] as const) {
    it(`cuts off a client that goes silent ${when}, and the next push of the source runs`, async () => {
      const socket = await connectAs(receiver.port, credentials);
      const started = Date.now();
      // exchange() keeps reading (and the socket open) until the receiver closes it.
      const { error } = await exchange(socket, ...frames());
      const waited = Date.now() - started;
      assert.equal(error?.code, "idle-timeout", JSON.stringify(error));
      assert.match(error.message, /sent \(or read\) nothing for 1s .*free for the next job/);
      assert.ok(waited >= 900 && waited < 10_000, `cut off after ${waited} ms`);
      const pushed = await push();
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.ok(receiver.events.some((e) => e.event === "failed" && e.code === "idle-timeout"));
    });
  }

  it("cuts off a push that takes the lock and then neither sends nor reads: the push behind it runs", async () => {
    // A receiver of its own with a longer timeout: the probe below must reach it while the
    // silent session still holds the lock, even on a loaded machine.
    const patient = await startReceiverProcess(join(work, "root-patient"), certs.receiver, [
      "--idle-timeout",
      "4s",
    ]);
    try {
      const sessions = () => patient.events.filter((e) => e.event === "session").length;
      const timeouts = () => patient.events.filter((e) => e.event === "failed" && e.code === "idle-timeout");
      // A push that takes the lock, then neither sends nor reads anything.
      const socket = await connectAs(patient.port, credentials);
      socket.on("error", () => undefined);
      socket.write(hello());
      socket.pause();
      const started = Date.now();
      while (sessions() === 0) {
        assert.ok(Date.now() - started < 10_000, "the receiver never saw the silent session's Hello");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // An in-process probe (no process start-up to race the timeout): refused as busy.
      const { error } = await exchange(await connectAs(patient.port, credentials), hello());
      assert.equal(timeouts().length, 0, "the probe came after the cut-off; the machine is too slow for 4s");
      assert.equal(error?.code, "busy", JSON.stringify(error));
      assert.match(error.message, /already running/);
      // Once the receiver has cut it off (it still lingers, unread), the source is free.
      while (timeouts().length === 0) {
        assert.ok(Date.now() - started < 20_000, "the silent session was never cut off");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const pushed = await runOffsite([
        "push",
        join(work, "src"),
        "--to",
        `127.0.0.1:${patient.port}`,
        "--certs",
        certs.client,
        "--json",
      ]);
      assert.equal(pushed.code, 0, pushed.stderr);
      socket.destroy();
    } finally {
      await patient.stop();
    }
  });
});

describe("a client facing a receiver that says nothing", () => {
  it("gives up on each wait after its bound with a clear error, never hangs", async () => {
    const work = mkdtempSync(join(tmpdir(), "offsite-client-bound-"));
    const servers: { close(): void }[] = [];
    try {
      const certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
      mkdirSync(join(work, "src"));
      writeFileSync(join(work, "src", "a.txt"), "a");
      const read = (name: string) => readFileSync(join(certs.receiver, name), "utf8");
      const { createServer: createTlsServer } = await import("node:tls");
      const { createServer: createTcpServer } = await import("node:net");
      // Completes the TLS handshake, then never sends a frame.
      const mute = createTlsServer(
        { ca: read("ca.crt"), cert: read("tls.crt"), key: read("tls.key"), requestCert: true },
        (socket) => socket.on("error", () => undefined),
      ).listen(0, "127.0.0.1");
      // Accepts TCP, never speaks TLS.
      const deaf = createTcpServer((socket) => socket.on("error", () => undefined)).listen(0, "127.0.0.1");
      servers.push(mute, deaf);
      await Promise.all([once(mute, "listening"), once(deaf, "listening")]);
      const { spawn } = await import("node:child_process");
      const main = join(import.meta.dirname, "../../agent/main.mjs");
      const run = (port: number, ...args: string[]) =>
        new Promise<{ code: number | null; stderr: string; ms: number }>((resolve) => {
          const started = Date.now();
          const child = spawn(
            process.execPath,
            [main, ...args, "--to", `127.0.0.1:${port}`, "--certs", certs.client],
            {
              env: { ...process.env, OFFSITE_CLIENT_TIMEOUT: "1s" },
              stdio: ["ignore", "ignore", "pipe"],
            },
          );
          let stderr = "";
          child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
          child.on("close", (code) => resolve({ code, stderr, ms: Date.now() - started }));
        });
      for (const [server, args, problem] of [
        [mute, ["push", join(work, "src")], /sent \(or read\) nothing for 1s; the job stops/],
        [deaf, ["push", join(work, "src")], /no TLS connection within 1s/],
        [mute, ["compare", join(work, "src")], /sent \(or read\) nothing for 1s/],
      ] as const) {
        const result = await run((server.address() as { port: number }).port, ...args);
        assert.notEqual(result.code, 0);
        assert.match(result.stderr, problem);
        assert.ok(result.ms < 15_000, `gave up after ${result.ms} ms`);
      }
    } finally {
      for (const server of servers) server.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("a receiver whose disk fills up", () => {
  it("fails the job with disk-full and keeps the previous version current and restorable", async () => {
    const work = mkdtempSync(join(tmpdir(), "offsite-diskfull-"));
    const root = join(work, "root");
    mkdirSync(root);
    let receiver: ReceiverProcess | undefined;
    try {
      const { receiver: receiverCerts, client: clientCerts } = await makeStandaloneCerts(
        join(work, "certs"),
        SITE,
        SOURCE,
      );
      receiver = await startReceiverProcess(root, receiverCerts, [], 4 * 1024 * 1024);
      const source = join(work, "src");
      mkdirSync(source);
      writeFileSync(join(source, "small.txt"), "fits");
      const to = `127.0.0.1:${receiver.port}`;
      const first = await runOffsite(["push", source, "--to", to, "--certs", clientCerts, "--json"]);
      assert.equal(first.code, 0, first.stderr);
      const firstVersion = reportOf<{ version: string }>(first).version;

      writeFileSync(join(source, "big.bin"), Buffer.alloc(8 * 1024 * 1024, 3));
      const full = await runOffsite(["push", source, "--to", to, "--certs", clientCerts, "--json"]);
      assert.equal(full.code, 1);
      assert.match(full.stderr, /disk is full.*previous version is intact/);

      // The previous version is still current and restores.
      const restored = join(work, "restored");
      const restore = await runOffsite(["restore", "--from", to, "--certs", clientCerts, "--json", restored]);
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(reportOf<{ version: string }>(restore).version, firstVersion);
      assert.deepEqual(readdirSync(restored), ["small.txt"]);
    } finally {
      await receiver?.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
