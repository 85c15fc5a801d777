// A small web application for the real-node suites: it keeps uploaded files on its data
// volume, as the applications Offsite protects do (a CMS's uploads, a shop's images), so
// replication and failover tests have live data to follow and a Service to swap. No
// dependencies: `docker build test/webApp` or the harness's image builder (Node 24 runs
// the TypeScript as it is).
//
//   PUT    /files/<name>   stores the body (written to a temporary name, then renamed)
//   GET    /files/<name>   the file
//   DELETE /files/<name>
//   GET    /files          the names, one per line
//   GET    /healthz        "ok" (readiness and liveness)
//   GET    /               who answers: {"pod": ..., "files": N}, so a test can tell which
//                          side of a failover served it
//
// Environment: DATA_DIR (default /data), PORT (default 8080), POD_NAME (downward API).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

const dataDir = process.env.DATA_DIR ?? "/data";
const port = Number(process.env.PORT ?? 8080);
const pod = process.env.POD_NAME ?? "unknown";
const filesDir = join(dataDir, "files");

/** A name is one path segment of printable characters; anything else is refused. */
function fileName(raw: string): string | undefined {
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  return /^[^/\0]{1,255}$/.test(name) && name !== "." && name !== ".." && !name.startsWith(".upload-")
    ? name
    : undefined;
}

function reply(
  response: ServerResponse,
  status: number,
  body: string | Buffer,
  type = "text/plain; charset=utf-8",
): void {
  response.writeHead(status, { "content-type": type });
  response.end(body);
}

async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? "/", "http://app");
  if (url.pathname === "/healthz") return reply(response, 200, "ok\n");
  if (url.pathname === "/") {
    const names = await readdir(filesDir).catch((): string[] => []);
    const files = names.filter((n) => !n.startsWith(".upload-")).length;
    return reply(response, 200, `${JSON.stringify({ pod, files })}\n`, "application/json");
  }
  if (url.pathname === "/files" && request.method === "GET") {
    const names = (await readdir(filesDir)).filter((n) => !n.startsWith(".upload-")).sort();
    return reply(response, 200, names.map((n) => `${n}\n`).join(""));
  }
  const match = /^\/files\/(.+)$/.exec(url.pathname);
  const name = match ? fileName(match[1]!) : undefined;
  if (!name) return reply(response, 404, "not found\n");
  const path = join(filesDir, name);
  switch (request.method) {
    case "GET":
      try {
        return reply(response, 200, await readFile(path), "application/octet-stream");
      } catch {
        return reply(response, 404, "no such file\n");
      }
    case "PUT": {
      // Written under a temporary name, then renamed: a reader (or a replica) never sees half a file.
      const temporary = join(filesDir, `.upload-${process.pid}-${Math.random().toString(36).slice(2)}`);
      try {
        await pipeline(request, createWriteStream(temporary, { flags: "wx" }));
        await rename(temporary, path);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      return reply(response, 201, "stored\n");
    }
    case "DELETE":
      await rm(path, { force: true });
      return reply(response, 204, "");
    default:
      return reply(response, 405, "method not allowed\n");
  }
}

await mkdir(filesDir, { recursive: true });
const server = createServer((request, response) => {
  handle(request, response).catch((error: unknown) => reply(response, 500, `${(error as Error).message}\n`));
});
server.listen(port, () => console.log(`web app ${pod} serves ${dataDir} on :${port}`));
// Kubernetes stops a pod with SIGTERM: finish the requests in flight, then exit.
process.once("SIGTERM", () => server.close(() => process.exit(0)));
