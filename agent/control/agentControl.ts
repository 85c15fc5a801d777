/**
 * `offsite agent`'s control endpoint (agent/CONTROL.md): the operator POSTs a job, and
 * reads its progress and result back as NDJSON on the same response.
 *
 *   POST /v1/jobs                 run a jobRequest (or attach to the run with its jobId)
 *   GET  /v1/jobs/{jobId}         attach to a run: its latest progress, then what follows
 *   GET  /v1/jobs/{jobId}/report  the role's full report (`offsite push --json`'s object)
 *   PUT  /v1/replication          play a role in a ReplicationPair (replicationRequest)
 *   GET  /v1/replication          what that role is doing (replicationReport)
 *   DELETE /v1/replication        stop it
 *   GET  /v1/heartbeat[?watch=1]  one heartbeat line (every second while watched)
 *
 * Restore jobs write into the data, so an agent takes them only with --allow-restore (the
 * operator's restore mover pods); a backup sidecar refuses them with 403.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  heartbeat,
  jobRequest,
  replicationReport,
  replicationRequest,
  type Heartbeat,
  type JobRequest,
} from "../../contract/reports.ts";
import { parseEndpoint } from "../client/openSession.ts";
import {
  methodNotAllowed,
  notFound,
  readBody,
  sendJson,
  startControlServer,
  type ControlServer,
} from "./controlServer.ts";
import { JobFailure, JobRegistry, type Job } from "./controlJobs.ts";
import { ReplicationRole } from "./replicationRole.ts";

export interface AgentControlOptions {
  host: string;
  port: number;
  certsDir: string;
  allowRestore: boolean;
  /** Take the standby role of a pair (it writes into the data). */
  allowStandby?: boolean;
  /** Push jobs keep their cache of the receiver's entries here (`--cache`). */
  cacheDir?: string | undefined;
  onEvent: (event: Record<string, unknown>) => void;
}

export interface AgentControl extends ControlServer {
  /** Jobs running now. */
  jobsRunning: () => number;
}

/** How long a shutdown waits for aborted jobs to write their results. */
const SHUTDOWN_WAIT_MS = 2000;

export async function startAgentControl(options: AgentControlOptions): Promise<AgentControl> {
  const jobs = new JobRegistry(options.onEvent, { cacheDir: options.cacheDir });
  const replication = new ReplicationRole(options.host, options.onEvent);
  const server = await startControlServer({
    host: options.host,
    port: options.port,
    certsDir: options.certsDir,
    onEvent: options.onEvent,
    handle: (request, response, path) =>
      path === "/replication" || path === "/heartbeat"
        ? routeReplication(request, response, path, replication, options)
        : route(request, response, path, jobs, options),
  });
  return {
    ...server,
    jobsRunning: () => jobs.running().length,
    close: () =>
      server.close(async () => {
        await replication.stop();
        await jobs.abortAll(
          new JobFailure(
            "shutdown",
            "the agent was stopped while the job ran (its pod is terminating); run the job again " +
              "(a push resumes what was not yet durable)",
          ),
          SHUTDOWN_WAIT_MS,
        );
      }),
  };
}

/** HEARTBEAT_MS: how often a watched heartbeat stream gets a line (the pair's default interval). */
const HEARTBEAT_MS = 1000;

async function routeReplication(
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
  replication: ReplicationRole,
  options: AgentControlOptions,
): Promise<void> {
  if (path === "/heartbeat") {
    if (request.method !== "GET") return methodNotAllowed(response, ["GET"]);
    const watch = new URL(request.url ?? "/", "https://agent").searchParams.get("watch") === "1";
    response.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    const beat = () => response.write(`${JSON.stringify(heartbeatOf(replication))}\n`);
    beat();
    if (!watch) return void response.end();
    const timer = setInterval(beat, HEARTBEAT_MS);
    response.on("close", () => clearInterval(timer));
    return;
  }
  if (request.method === "GET")
    return sendJson(response, 200, replicationReport.parse(replication.current()));
  if (request.method === "DELETE") {
    await replication.stop();
    return sendJson(response, 200, replication.current());
  }
  if (request.method !== "PUT") return methodNotAllowed(response, ["GET", "PUT", "DELETE"]);
  const parsed = await parseBody(request, response, replicationRequest, "replication request");
  if (!parsed) return;
  if (parsed.role === "standby" && options.allowStandby !== true)
    return sendJson(response, 403, {
      code: "standby-not-allowed",
      message:
        "this agent does not take the standby role (it was started without --allow-standby: a backup " +
        "sidecar never writes the data it protects); the operator injects standby agents with it",
    });
  if (parsed.role === "primary" && !parsed.standby)
    return sendJson(response, 400, {
      code: "bad-request",
      message: "a primary needs standby.endpoint (where the standby's agent listens)",
      issues: [{ path: "standby", message: "required for the primary role" }],
    });
  const restarted = await replication.apply(parsed);
  return sendJson(response, 200, { restarted, report: replication.current() });
}

/** The heartbeat line of the role now (a role of none is unhealthy: nothing replicates). */
function heartbeatOf(replication: ReplicationRole): Heartbeat | Record<string, unknown> {
  const report = replication.current();
  if (report.role === "none") return { at: report.at, role: "none", healthy: false };
  return heartbeat.parse({
    at: report.at,
    role: report.role,
    epoch: report.epoch ?? 0,
    healthy: report.state === "streaming" || report.state === "serving" || report.state === "listening",
    pendingChanges: report.pendingChanges,
    ...(report.lastAppliedAt ? { lastAppliedAt: report.lastAppliedAt } : {}),
    ...(report.message ? { message: report.message.slice(0, 1024) } : {}),
  });
}

async function route(
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
  jobs: JobRegistry,
  options: AgentControlOptions,
): Promise<void> {
  if (path === "/jobs") {
    if (request.method !== "POST") return methodNotAllowed(response, ["POST"]);
    return postJob(request, response, jobs, options);
  }
  const match = /^\/jobs\/([^/]+)(\/report)?$/.exec(path);
  if (!match) return notFound(response, `no such endpoint: /v1${path} (POST /v1/jobs, GET /v1/jobs/{jobId})`);
  if (request.method !== "GET") return methodNotAllowed(response, ["GET"]);
  let jobId: string;
  try {
    jobId = decodeURIComponent(match[1]!);
  } catch {
    return notFound(response, `${match[1]} is not a job id`);
  }
  const job = jobs.get(jobId);
  if (!job)
    return notFound(
      response,
      `this agent knows no job ${jobId} (it keeps running jobs and its last finished ones, and ` +
        "forgets them when it restarts): POST the job again",
    );
  if (!match[2]) return streamJob(job, response);
  if (!job.result)
    return sendJson(response, 409, { code: "running", message: `job ${jobId} is still running` });
  if (job.report === undefined)
    return notFound(
      response,
      `job ${jobId} failed (${job.result.event.code ?? "no code"}); it has no report`,
    );
  return sendJson(response, 200, job.report);
}

/** Reads a JSON body that must fit `schema`; answers 400 (with one issue per problem) and returns undefined when not. */
async function parseBody<T>(
  request: IncomingMessage,
  response: ServerResponse,
  schema: {
    safeParse(
      value: unknown,
    ):
      | { success: true; data: T }
      | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } };
  },
  what: string,
): Promise<T | undefined> {
  const body = await readBody(request, response);
  if (body === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    sendJson(response, 400, {
      code: "bad-request",
      message: `the body is not JSON: ${(error as Error).message}`,
      issues: [],
    });
    return undefined;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({
      path: issue.path.map(String).join(".") || "(request)",
      message: issue.message,
    }));
    sendJson(response, 400, {
      code: "bad-request",
      message: `the ${what} does not fit the contract: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
      issues,
    });
    return undefined;
  }
  return parsed.data;
}

async function postJob(
  request: IncomingMessage,
  response: ServerResponse,
  jobs: JobRegistry,
  options: AgentControlOptions,
): Promise<void> {
  const parsed = await parseBody(request, response, jobRequest, "job request");
  if (!parsed) return;
  const job: JobRequest = parsed;
  try {
    parseEndpoint(job.target.endpoint);
  } catch (error) {
    const issue = { path: "target.endpoint", message: (error as Error).message };
    return sendJson(response, 400, {
      code: "bad-request",
      message: `the job request does not fit the contract: ${issue.path}: ${issue.message}`,
      issues: [issue],
    });
  }
  if (job.mode === "restore" && !options.allowRestore)
    return sendJson(response, 403, {
      code: "restore-not-allowed",
      message:
        "this agent does not take restore jobs (it was started without --allow-restore: a backup " +
        "sidecar never writes the data it protects); restores run in the operator's restore mover pods",
    });
  const started = jobs.startOrAttach(job);
  if ("conflict" in started)
    return sendJson(response, 409, { code: "job-id-conflict", message: started.conflict });
  return streamJob(started.job, response);
}

/**
 * The job's NDJSON stream: its latest progress (while it runs) and each event after it,
 * ending with the one result line. A caller that goes away stops only its own stream.
 */
function streamJob(job: Job, response: ServerResponse): void {
  response.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  const unsubscribe = job.subscribe(({ event, line }) => {
    response.write(`${line}\n`);
    if (event.type === "result") response.end();
  });
  response.on("close", unsubscribe);
}
