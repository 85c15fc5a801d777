/**
 * A TCP relay that adds round-trip time: every byte is held for rtt/2 in each direction,
 * in order, and reading pauses while a direction holds more than a window of bytes, so
 * back-pressure survives. This kernel has no netem qdisc (../shared/notes/performance.md);
 * every peer in a comparison goes through the same relay.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface LatencyProxy {
  port: number;
  close(): Promise<void>;
}

const WINDOW = 8 * 1024 * 1024;

function delayedPipe(from: Socket, to: Socket, delayMs: number): void {
  if (delayMs === 0) {
    from.pipe(to);
    return;
  }
  const queue: { due: number; bytes: Buffer }[] = [];
  let held = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { bytes } = queue.shift()!;
      held -= bytes.length;
      to.write(bytes);
    }
    if (held < WINDOW && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.due - performance.now()));
    else if (ended) to.end();
  };
  from.on("data", (bytes: Buffer) => {
    queue.push({ due: performance.now() + delayMs, bytes });
    held += bytes.length;
    if (held >= WINDOW) from.pause();
    timer ??= setTimeout(flush, delayMs);
  });
  from.on("end", () => {
    ended = true;
    timer ??= setTimeout(flush, 0);
  });
}

export async function startLatencyProxy(targetPort: number, rttMs: number): Promise<LatencyProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port: targetPort });
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    delayedPipe(client, upstream, rttMs / 2);
    delayedPipe(upstream, client, rttMs / 2);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
