/**
 * The baselines Offsite is measured against, as processes of their own:
 *
 *   perfile-serve / perfile-send  one file per request/acknowledge round trip over TLS —
 *                                 the transfer mode push agents replaced; exists only here
 *   tar-serve / tar-send          a raw `tar` stream over TCP: the physical limit for B1
 *   raw-serve / raw-send          the same bytes as one plain TCP (or, with --tls, one TLS
 *                                 1.3 AES-256-GCM) stream written to disk: B4's reference
 *
 * A server prints {"port": N} when it listens, takes one connection, and exits when done.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createServer as createTcpServer, connect as connectTcp, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { createServer as createTlsServer, connect as connectTls } from "node:tls";
import { clientTlsOptions, loadCredentials, serverTlsOptions } from "../agent/tlsCredentials.ts";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    root: { type: "string" },
    port: { type: "string" },
    certs: { type: "string" },
    tls: { type: "boolean" },
  },
});
const [mode, ...paths] = positionals;

function listen(onSocket: (socket: Socket) => void, tls: boolean): void {
  const server = tls
    ? createTlsServer(serverTlsOptions(loadCredentials(values.certs!)), onSocket)
    : createTcpServer(onSocket);
  server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: (server.address() as { port: number }).port }));
  });
  server.once("connection", () => server.close());
}

function dial(tls: boolean): Promise<Socket> {
  const port = Number(values.port);
  return new Promise((resolve, reject) => {
    const socket = tls
      ? connectTls(
          {
            host: "127.0.0.1",
            port,
            ...clientTlsOptions(loadCredentials(values.certs!), "localhost"),
            servername: "localhost",
          },
          () => resolve(socket),
        )
      : connectTcp({ host: "127.0.0.1", port }, () => resolve(socket));
    socket.once("error", reject);
  });
}

function walkFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((p) => statSync(join(root, p)).isFile())
    .sort();
}

/** Reads exactly `n` bytes from a socket (resolves with them), using a shared buffer of leftovers. */
function reader(socket: Socket) {
  let pending: Buffer = Buffer.alloc(0);
  let want = 0;
  let resolveWant: ((b: Buffer) => void) | undefined;
  socket.on("data", (bytes: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, bytes]) : bytes;
    if (resolveWant && pending.length >= want) {
      const out = pending.subarray(0, want);
      pending = pending.subarray(want);
      const r = resolveWant;
      resolveWant = undefined;
      r(out);
    }
  });
  return (n: number) =>
    new Promise<Buffer>((resolve) => {
      if (pending.length >= n) {
        const out = pending.subarray(0, n);
        pending = pending.subarray(n);
        resolve(out);
      } else {
        want = n;
        resolveWant = resolve;
      }
    });
}

/** The per-file baseline's receiver: asks for each file in turn and waits for it. */
async function servePerFile(socket: Socket): Promise<void> {
  const read = reader(socket);
  const listLength = (await read(4)).readUInt32BE(0);
  const list = JSON.parse((await read(listLength)).toString()) as string[];
  for (const path of list) {
    const request = Buffer.from(path);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(request.length);
    socket.write(Buffer.concat([header, request]));
    const size = Number((await read(8)).readBigUInt64BE(0));
    const content = await read(size);
    mkdirSync(dirname(join(values.root!, path)), { recursive: true });
    writeFileSync(join(values.root!, path), content);
  }
  socket.end(Buffer.from([0, 0, 0, 0]));
  console.log(JSON.stringify({ done: true, files: list.length }));
}

switch (mode) {
  case "perfile-serve":
    // The receiver asks for each file in turn and waits for it: one round trip per file.
    listen((socket) => void servePerFile(socket), true);
    break;
  case "perfile-send": {
    const root = paths[0]!;
    const socket = await dial(true);
    const read = reader(socket);
    const list = Buffer.from(JSON.stringify(walkFiles(root)));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(list.length);
    socket.write(Buffer.concat([header, list]));
    for (;;) {
      const length = (await read(4)).readUInt32BE(0);
      if (length === 0) break;
      const path = (await read(length)).toString();
      const content = readFileSync(join(root, path));
      const size = Buffer.alloc(8);
      size.writeBigUInt64BE(BigInt(content.length));
      socket.write(Buffer.concat([size, content]));
    }
    socket.end();
    break;
  }
  case "tar-serve":
    listen((socket) => {
      mkdirSync(values.root!, { recursive: true });
      const tar = spawn("tar", ["-x", "-f", "-", "-C", values.root!], {
        stdio: ["pipe", "inherit", "inherit"],
      });
      socket.pipe(tar.stdin);
      tar.on("close", (code) => console.log(JSON.stringify({ done: true, code })));
    }, false);
    break;
  case "tar-send": {
    const socket = await dial(false);
    const tar = spawn("tar", ["-c", "-f", "-", "-C", paths[0]!, "."], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    tar.stdout.pipe(socket);
    await new Promise((resolve) => socket.on("close", resolve));
    break;
  }
  case "raw-serve":
    listen((socket) => {
      mkdirSync(values.root!, { recursive: true });
      const fd = openSync(join(values.root!, "stream.bin"), "w");
      let bytes = 0;
      socket.on("data", (chunk: Buffer) => {
        writeSync(fd, chunk);
        bytes += chunk.length;
      });
      socket.on("end", () => {
        closeSync(fd);
        console.log(JSON.stringify({ done: true, bytes }));
        socket.end();
      });
    }, values.tls ?? false);
    break;
  case "raw-send": {
    const socket = await dial(values.tls ?? false);
    const hash = createHash("sha256");
    for (const path of paths) {
      const fd = openSync(path, "r");
      const buffer = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const bytesRead = readSync(fd, buffer);
        if (bytesRead === 0) break;
        const piece = Buffer.from(buffer.subarray(0, bytesRead));
        hash.update(piece);
        if (!socket.write(piece)) await new Promise((resolve) => socket.once("drain", resolve));
      }
      closeSync(fd);
    }
    socket.end();
    await new Promise((resolve) => socket.on("close", resolve));
    break;
  }
  default:
    console.error(`unknown mode ${mode}`);
    process.exit(2);
}
