/**
 * The receiver's probes, over plain HTTP on a port of their own (`--health-port`), for
 * the kubelet. A TCP probe of the TLS port proves nothing once the process hangs: the
 * kernel still accepts connections into the listen backlog. These answers come from the
 * event loop itself, so a receiver that is stopped or stuck in a loop stops answering and
 * its liveness probe restarts it.
 *
 *   GET /healthz  200 while the process answers at all (liveness)
 *   GET /readyz   200 once the TLS listener accepts connections, 503 before and while
 *                 it closes (readiness: the Service sends it no pusher until then), with
 *                 why when the server says (`notReadyReason`)
 *
 * `offsite agent` serves the same probes for its control endpoint.
 */
import { createServer } from "node:http";
import { once } from "node:events";

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(
  host: string,
  port: number,
  ready: () => boolean,
  notReadyReason?: () => string | undefined,
): Promise<HealthServer> {
  const server = createServer((request, response) => {
    const answer = (status: number, body: string) => {
      response.writeHead(status, { "content-type": "text/plain" });
      response.end(`${body}\n`);
    };
    if (request.method !== "GET") return answer(405, "method not allowed");
    if (request.url === "/healthz") return answer(200, "ok");
    if (request.url === "/readyz")
      return ready()
        ? answer(200, "ready")
        : answer(503, `not accepting connections${notReadyReason?.() ? `: ${notReadyReason()}` : ""}`);
    return answer(404, "not found: /healthz or /readyz");
  });
  // Probes come often and carry nothing: no connection outlives its answer.
  server.keepAliveTimeout = 1000;
  server.listen(port, host);
  await once(server, "listening");
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
