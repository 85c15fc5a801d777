/**
 * The jobs an agent runs for the operator (agent/CONTROL.md, POST /v1/jobs): one
 * jobRequest in, push / compare / restore against its target with the credentials it
 * brings, `jobProgress` events while it runs and one `jobResult` at the end, every one
 * validated with the contract's schemas before anyone sees it.
 *
 * Jobs are idempotent by jobId: the registry keeps every running job and the last
 * KEEP_FINISHED finished ones, so a second request with the same id attaches to the run
 * instead of starting another. A job does not depend on anyone listening: a caller that
 * goes away leaves it running, and its result waits for the next caller. What a finished
 * job keeps is its result and report — never the request's credentials.
 */
import { dirname, resolve } from "node:path";
import { existsSync, statSync } from "node:fs";
import {
  jobProgress,
  jobResult,
  type JobProgress,
  type JobRequest,
  type JobResult,
} from "../../contract/reports.ts";
import type { FilterOptions } from "../../contract/filters.ts";
import { msToDuration } from "../../contract/units.ts";
import { parseEndpoint, type Endpoint } from "../client/openSession.ts";
import { compareJob, type CompareReport } from "../compare/compareJob.ts";
import { PeerError } from "../protocol/connection.ts";
import { ProtocolError } from "../protocol/frames.ts";
import { pushJob, type PushReport } from "../push/pushJob.ts";
import { restoreJob, type RestoreReport } from "../restore/restoreJob.ts";

/** Finished jobs kept for idempotent retries and /report. */
export const KEEP_FINISHED = 20;
/** Progress events go out at most this often (phase changes at once). */
export const PROGRESS_INTERVAL_MS = 500;
const MAX_PROBLEMS = 1000;
const MAX_DIFFERENCES = 100;

type Phase = JobProgress["phase"];
/** What a job's events look like to a listener: the validated object and its NDJSON line. */
export type JobLine<T = JobProgress | JobResult> = { event: T; line: string };

/** A failure with the stable code of the job result (agent/CONTROL.md, "Codes"). */
export class JobFailure extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "JobFailure";
    this.code = code;
  }
}

/** What identifies a job's run besides its id: a retry must name the same one. */
interface JobIdentity {
  mode: JobRequest["mode"];
  site: string;
  source: string;
  path: string;
  endpoint: string;
}

/** What the agent's own flags add to every job it runs. */
export interface JobSettings {
  /** Push jobs keep their cache of the receiver's entries here (`offsite agent --cache`). */
  cacheDir?: string | undefined;
}

export class Job {
  readonly id: string;
  readonly identity: JobIdentity;
  readonly started = Date.now();
  progress: JobLine<JobProgress> | undefined;
  result: JobLine<JobResult> | undefined;
  /** The role's full report (what `offsite push/compare/restore --json` prints), once it succeeded. */
  report: unknown;
  readonly done: Promise<void>;
  private readonly listeners = new Set<(line: JobLine) => void>();
  private readonly controller = new AbortController();
  private lastProgressAt = 0;

  constructor(
    request: JobRequest,
    onEvent: (event: Record<string, unknown>) => void,
    settings: JobSettings = {},
  ) {
    this.id = request.jobId;
    this.identity = {
      mode: request.mode,
      site: request.site,
      source: request.source,
      path: request.path,
      endpoint: request.target.endpoint,
    };
    // After the caller has answered (a scan runs synchronously and takes a while).
    this.done = new Promise((next) => setImmediate(next)).then(() => this.run(request, onEvent, settings));
  }

  /** Ends the run (a shutdown); its result says why. */
  abort(reason: JobFailure): void {
    this.controller.abort(reason);
  }

  /**
   * Calls `listener` with the latest progress (while running) or the result (once
   * finished), then with every later event; returns the unsubscribe function.
   */
  subscribe(listener: (line: JobLine) => void): () => void {
    if (this.result) {
      listener(this.result);
      return () => undefined;
    }
    if (this.progress) listener(this.progress);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private publish(line: JobLine): void {
    for (const listener of this.listeners) listener(line);
    if (line.event.type === "result") this.listeners.clear();
  }

  private emitProgress(phase: Phase, counts: Omit<JobProgress, "type" | "jobId" | "at" | "phase">): void {
    const now = Date.now();
    const phaseChanged = this.progress !== undefined && this.progress.event.phase !== phase;
    const parsed = jobProgress.safeParse({
      type: "progress",
      jobId: this.id,
      at: new Date(now).toISOString(),
      phase,
      ...counts,
    });
    if (!parsed.success) return; // never sent unvalidated; the result still comes
    const line = { event: parsed.data, line: JSON.stringify(parsed.data) };
    this.progress = line;
    if (!phaseChanged && this.lastProgressAt !== 0 && now - this.lastProgressAt < PROGRESS_INTERVAL_MS)
      return;
    this.lastProgressAt = now;
    this.publish(line);
  }

  private async run(
    request: JobRequest,
    onEvent: (event: Record<string, unknown>) => void,
    settings: JobSettings,
  ): Promise<void> {
    const deadline = setTimeout(
      () =>
        this.controller.abort(
          new JobFailure(
            "deadline",
            `the job ran past its deadline of ${msToDuration(request.deadlineMs)} and was stopped; ` +
              "a push keeps on the receiver what was durable and the next run resumes from there. " +
              "Give the job a longer deadline if its data needs more time",
          ),
        ),
      request.deadlineMs,
    );
    onEvent({ event: "job-started", jobId: this.id, ...this.identity });
    let fields: Omit<JobResult, "type" | "jobId" | "at">;
    try {
      const { result, report } = await execute(
        request,
        this.controller.signal,
        (phase, counts) => this.emitProgress(phase, counts),
        settings,
      );
      fields = result;
      this.report = report;
    } catch (error) {
      const failure = classify(error, request, this.controller.signal);
      fields = {
        outcome: "failed",
        code: failure.code.slice(0, 64),
        message: failure.message.slice(0, 4096),
        files: { scanned: 0, changed: 0, deleted: 0, filtered: 0, stopped: 0 },
        bytes: { sent: 0, changed: 0 },
        problems: [],
      };
    } finally {
      clearTimeout(deadline);
    }
    const at = new Date().toISOString();
    let parsed = jobResult.safeParse({ type: "result", jobId: this.id, at, ...fields });
    if (!parsed.success) {
      // A bug of ours, never a result the contract refuses.
      parsed = jobResult.safeParse({
        type: "result",
        jobId: this.id,
        at,
        outcome: "failed",
        code: "internal",
        message: `the agent made a result the contract refuses: ${parsed.error.message}`.slice(0, 4096),
        files: { scanned: 0, changed: 0, deleted: 0, filtered: 0, stopped: 0 },
        bytes: { sent: 0, changed: 0 },
        problems: [],
      });
    }
    const result = parsed.data!;
    this.result = { event: result, line: JSON.stringify(result) };
    onEvent({
      event: "job-finished",
      jobId: this.id,
      outcome: result.outcome,
      ...(result.code ? { code: result.code } : {}),
      ...(result.version ? { version: result.version } : {}),
      ms: Date.now() - this.started,
    });
    this.publish(this.result);
  }
}

/** Every running job and the last KEEP_FINISHED finished ones, by jobId. */
export class JobRegistry {
  private readonly jobs = new Map<string, Job>();
  private readonly onEvent: (event: Record<string, unknown>) => void;
  private readonly settings: JobSettings;

  constructor(onEvent: (event: Record<string, unknown>) => void, settings: JobSettings = {}) {
    this.onEvent = onEvent;
    this.settings = settings;
  }

  get(jobId: string): Job | undefined {
    return this.jobs.get(jobId);
  }

  /** The job with this id, started now unless it runs or ran already; a conflict when the id names another run. */
  startOrAttach(request: JobRequest): { job: Job } | { conflict: string } {
    const existing = this.jobs.get(request.jobId);
    if (existing) {
      const asked = identityOf(request);
      const differs = (Object.keys(asked) as (keyof JobIdentity)[]).filter(
        (key) => asked[key] !== existing.identity[key],
      );
      if (differs.length > 0)
        return {
          conflict:
            `job ${request.jobId} is another run (its ${differs.join(", ")} differ); ` +
            "a new run needs a new jobId",
        };
      return { job: existing };
    }
    const job = new Job(request, this.onEvent, this.settings);
    this.jobs.set(job.id, job);
    void job.done.then(() => this.evict());
    return { job };
  }

  running(): Job[] {
    return [...this.jobs.values()].filter((job) => !job.result);
  }

  /** Aborts every running job (a shutdown) and waits at most `waitMs` for their results. */
  async abortAll(reason: JobFailure, waitMs: number): Promise<void> {
    const running = this.running();
    for (const job of running) job.abort(reason);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(running.map((job) => job.done)),
      new Promise((done) => (timer = setTimeout(done, waitMs))),
    ]);
    clearTimeout(timer);
  }

  private evict(): void {
    const finished = [...this.jobs.values()].filter((job) => job.result);
    for (const job of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)))
      this.jobs.delete(job.id);
  }
}

function identityOf(request: JobRequest): JobIdentity {
  return {
    mode: request.mode,
    site: request.site,
    source: request.source,
    path: request.path,
    endpoint: request.target.endpoint,
  };
}

/** The data session's endpoint of a request, with the credentials it brings. */
export function endpointOf(request: JobRequest): Endpoint {
  return {
    ...parseEndpoint(request.target.endpoint),
    credentials: {
      ca: request.target.caCertificate,
      cert: request.credentials.certificate,
      key: request.credentials.privateKey,
    },
    serverName: request.target.serverName,
  };
}

export function filterOptionsOfRequest(request: JobRequest): FilterOptions {
  return {
    include: request.filters.include,
    exclude: request.filters.exclude,
    ...(request.filters.maxFileSize !== undefined ? { maxFileSize: request.filters.maxFileSize } : {}),
    firewall: request.contentFirewall,
  };
}

type Counts = Omit<JobProgress, "type" | "jobId" | "at" | "phase">;
type ResultFields = Omit<JobResult, "type" | "jobId" | "at">;

async function execute(
  request: JobRequest,
  signal: AbortSignal,
  progress: (phase: Phase, counts: Counts) => void,
  settings: JobSettings,
): Promise<{ result: ResultFields; report: unknown }> {
  checkPath(request);
  const endpoint = endpointOf(request);
  const common = { endpoint, site: request.site, sourceId: request.source, signal };
  const zero = { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };
  if (request.mode === "push") {
    progress("scanning", zero);
    let phase: Phase = "scanning";
    let latest: Counts = zero;
    const report = await pushJob({
      ...common,
      source: request.path,
      filters: filterOptionsOfRequest(request),
      checksum: request.checksum,
      cacheDir: settings.cacheDir,
      onProgress: (counts) => progress(phase, (latest = counts)),
      onPhase: (next) => progress((phase = next), latest),
    });
    return {
      result: pushResult(report),
      report: { event: "pushed", site: request.site, source: request.source, ...report },
    };
  }
  if (request.mode === "compare") {
    progress("scanning", zero);
    const report = await compareJob({
      ...common,
      source: request.path,
      filters: filterOptionsOfRequest(request),
      checksum: request.checksum,
      ...(request.version ? { version: request.version } : {}),
    });
    return { result: compareResult(report), report };
  }
  progress("restoring", zero);
  const report = await restoreJob({
    ...common,
    destination: request.path,
    deleteExtra: request.deleteExtra ?? false,
    keepFiltered: filterOptionsOfRequest(request),
    ...(request.version ? { version: request.version } : {}),
    onProgress: ({ filesDone, bytesDone }) =>
      progress("restoring", { filesDone, filesTotal: 0, bytesDone, bytesTotal: 0 }),
  });
  return { result: restoreResult(report), report };
}

/** push and compare read `path`; restore writes it, so its parent (the volume's mount) must be there. */
function checkPath(request: JobRequest): void {
  const path = resolve(request.path);
  if (request.mode === "restore") {
    if (existsSync(path) || existsSync(dirname(path))) return;
    throw new JobFailure(
      "source-missing",
      `neither ${path} nor its parent exists in the agent's container; check the job's path ` +
        "and that the volume is mounted there",
    );
  }
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (error) {
    throw new JobFailure(
      "source-missing",
      `${path} does not exist in the agent's container (${(error as NodeJS.ErrnoException).code}); ` +
        "check the job's source path and that the volume is mounted there",
      { cause: error },
    );
  }
  if (!isDirectory)
    throw new JobFailure(
      "source-missing",
      `${path} is not a directory; a job's path names the directory to back up`,
    );
}

/** Filtered entries split into the filters' and the content firewall's (reasons firewall-*). */
function splitFiltered(filtered: { path: string; reason: string }[]): { filtered: number; stopped: number } {
  const stopped = filtered.filter((f) => f.reason.startsWith("firewall-")).length;
  return { filtered: filtered.length - stopped, stopped };
}

function problemsOf(problems: { path: string; reason: string }[]): JobResult["problems"] {
  return problems
    .slice(0, MAX_PROBLEMS)
    .map(({ path, reason }) => ({ path: path.slice(0, 4096), reason: reason.slice(0, 256) }));
}

function pushResult(report: PushReport): ResultFields {
  return {
    outcome: report.outcome,
    version: report.version,
    files: {
      scanned: report.files.total,
      changed: report.files.sent + report.files.linked,
      deleted: report.files.deleted,
      ...splitFiltered(report.filtered),
    },
    bytes: { sent: report.bytes.wire, changed: report.bytes.content },
    resumed: report.resumed,
    problems: problemsOf(report.problems),
    ...(report.problems.length > 0
      ? {
          message:
            `${report.problems.length} entries could not be read and are not in this version ` +
            "(the receiver keeps its previous copy of each); see problems",
        }
      : {}),
  };
}

function compareResult(report: CompareReport): ResultFields {
  const first: NonNullable<JobResult["compare"]>["first"] = [];
  const differences: [string[], "added" | "changed" | "missing" | "metadata"][] = [
    [report.added, "added"],
    [report.changed, "changed"],
    [report.missing, "missing"],
    [report.metadata.map((m) => m.path), "metadata"],
  ];
  for (const [paths, kind] of differences)
    for (const path of paths) {
      if (first.length >= MAX_DIFFERENCES) break;
      first.push({ path: path.slice(0, 4096), kind });
    }
  return {
    outcome: report.problems.length > 0 ? "partial" : "succeeded",
    version: report.version,
    files: {
      scanned: report.scanned,
      changed: report.added.length + report.changed.length + report.metadata.length,
      deleted: report.missing.length,
      ...splitFiltered(report.filtered),
    },
    bytes: { sent: 0, changed: 0 },
    compare: {
      match: report.match,
      added: report.added.length,
      changed: report.changed.length,
      missing: report.missing.length,
      metadata: report.metadata.length,
      first,
    },
    problems: problemsOf(report.problems),
  };
}

function restoreResult(report: RestoreReport): ResultFields {
  return {
    outcome: "succeeded",
    version: report.version,
    files: { scanned: report.files, changed: report.files, deleted: report.deleted, filtered: 0, stopped: 0 },
    bytes: { sent: 0, changed: report.bytes },
    problems: [],
  };
}

/** The causes of an error, outermost first. */
function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let at = error; at !== undefined && chain.length < 8; at = (at as Error | undefined)?.cause)
    chain.push(at);
  return chain;
}

const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);
/** Node's and OpenSSL's codes for a failed verification, and the receiver refusing ours (openSession). */
const TLS_FAILURE =
  /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|certificate-refused$)/;

/** The stable code and a message saying what to do, for whatever ended a job. */
export function classify(error: unknown, request: JobRequest, signal: AbortSignal): JobFailure {
  if (signal.aborted && signal.reason instanceof JobFailure) return signal.reason;
  if (error instanceof JobFailure) return error;
  const where = request.target.endpoint;
  const chain = causes(error);
  const tls = chain.find((e) => TLS_FAILURE.test(String((e as NodeJS.ErrnoException)?.code ?? "")));
  if (tls)
    return new JobFailure(
      "certificate",
      `TLS with the receiver at ${where} failed: ${(tls as Error).message}. The receiver's certificate ` +
        `must chain to target.caCertificate and carry ${request.target.serverName ?? "the endpoint's host"}, ` +
        "and the job's client certificate must come from the receiver's CA (reissue the source's " +
        "certificate if the OffsiteServer's CA changed)",
      { cause: error },
    );
  if (error instanceof PeerError || error instanceof ProtocolError) {
    if (error.code === "connection-closed")
      return new JobFailure(
        "connection-lost",
        `the receiver at ${where} closed the connection during the job; run it again (a push resumes)`,
        { cause: error },
      );
    return new JobFailure(error.code, `the receiver at ${where}: ${error.message}`, { cause: error });
  }
  const unreachable = chain.find((e) => UNREACHABLE.has(String((e as NodeJS.ErrnoException)?.code ?? "")));
  if (unreachable || (error as Error)?.message?.startsWith("cannot connect to "))
    return new JobFailure(
      "unreachable",
      `cannot reach the receiver at ${where}: ${((unreachable ?? error) as Error).message}. Check that ` +
        "the OffsiteServer is Ready, the endpoint is right, and network policies let this pod reach it; " +
        "the next run tries again",
      { cause: error },
    );
  const errno = (error as NodeJS.ErrnoException)?.code;
  if (errno === "ENOENT" && request.mode !== "restore")
    return new JobFailure(
      "source-missing",
      `${request.path} is gone: ${(error as Error).message}; check the job's path and the volume mount`,
      { cause: error },
    );
  return new JobFailure("internal", `the agent failed: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
}
