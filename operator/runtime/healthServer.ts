/**
 * /metrics, /healthz (liveness) and /readyz (readiness) on one HTTP port.
 * Liveness fails when a watch has shown no sign of life for too long (the process is
 * stuck and a restart helps); readiness fails until the caches are synced, and on the
 * leader while it is not reconciling.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface HealthChecks {
  /** An empty list means healthy; otherwise what is wrong. */
  liveness: () => string[];
  readiness: () => string[];
}

export function startHealthServer(
  address: string,
  registry: Registry,
  checks: HealthChecks,
): Promise<Server> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")) || undefined,
    Number(address.slice(address.lastIndexOf(":") + 1)),
  ];
  const server = createServer((request, response) => {
    const reply = (code: number, body: string, type = "text/plain; charset=utf-8") => {
      response.writeHead(code, { "content-type": type });
      response.end(body);
    };
    const check = (problems: string[]) =>
      problems.length === 0 ? reply(200, "ok\n") : reply(503, problems.join("\n") + "\n");
    switch (request.url?.split("?")[0]) {
      case "/metrics":
        registry.metrics().then(
          (text) => reply(200, text, registry.contentType),
          (error: unknown) => reply(500, String(error)),
        );
        return;
      case "/healthz":
        return check(checks.liveness());
      case "/readyz":
        return check(checks.readiness());
      default:
        return reply(404, "not found: try /metrics, /healthz or /readyz\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
