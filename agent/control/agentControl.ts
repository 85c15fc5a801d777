/**
 * `offsite agent`'s control endpoint (agent/CONTROL.md): the operator POSTs a job, and
 * reads its progress and result back as NDJSON on the same response.
 *
 *   POST /v1/jobs                 run a jobRequest (or attach to the run with its jobId)
 *   GET  /v1/jobs/{jobId}         attach to a run: its latest progress, then what follows
 *   GET  /v1/jobs/{jobId}/report  the role's full report (`offsite push --json`'s object)
 *
 * Restore jobs write into the data, so an agent takes them only with --allow-restore (the
 * operator's restore mover pods); a backup sidecar refuses them with 403.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { jobRequest, type JobRequest } from "../../contract/reports.ts";
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

export interface AgentControlOptions {
  host: string;
  port: number;
  certsDir: string;
  allowRestore: boolean;
  onEvent: (event: Record<string, unknown>) => void;
}

export interface AgentControl extends ControlServer {
  /** Jobs running now. */
  jobsRunning: () => number;
}

/** How long a shutdown waits for aborted jobs to write their results. */
const SHUTDOWN_WAIT_MS = 2000;

export async function startAgentControl(options: AgentControlOptions): Promise<AgentControl> {
  const jobs = new JobRegistry(options.onEvent);
  const server = await startControlServer({
    host: options.host,
    port: options.port,
    certsDir: options.certsDir,
    onEvent: options.onEvent,
    handle: (request, response, path) => route(request, response, path, jobs, options),
  });
  return {
    ...server,
    jobsRunning: () => jobs.running().length,
    close: () =>
      server.close(() =>
        jobs.abortAll(
          new JobFailure(
            "shutdown",
            "the agent was stopped while the job ran (its pod is terminating); run the job again " +
              "(a push resumes what was not yet durable)",
          ),
          SHUTDOWN_WAIT_MS,
        ),
      ),
  };
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

async function postJob(
  request: IncomingMessage,
  response: ServerResponse,
  jobs: JobRegistry,
  options: AgentControlOptions,
): Promise<void> {
  const body = await readBody(request, response);
  if (body === undefined) return;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    return sendJson(response, 400, {
      code: "bad-request",
      message: `the body is not JSON: ${(error as Error).message}`,
      issues: [],
    });
  }
  const parsed = jobRequest.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({
      path: issue.path.map(String).join(".") || "(request)",
      message: issue.message,
    }));
    return sendJson(response, 400, {
      code: "bad-request",
      message: `the job request does not fit the contract: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
      issues,
    });
  }
  const job: JobRequest = parsed.data;
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
