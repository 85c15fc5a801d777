/**
 * The connections to agents for the attempts in flight, keyed by job id: the one thing a
 * BackupJob reconcile cannot read from the API server. It holds no decision — the run,
 * its attempt and its agent are in status — only the open stream of each attempt and the
 * latest it said (progress, then the result). A new operator process starts empty and
 * asks the agent again with the job id from status, which attaches to the running job
 * or returns its result (agent/CONTROL.md); so losing this map loses nothing.
 */
import type { JobProgress, JobRequest, JobResult } from "../../contract/reports.ts";
import type { ControlCredentials } from "../agentControl/operatorCredentials.ts";

export interface AgentAddress {
  host: string;
  port: number;
}

/** Sends a job to an agent's control endpoint and resolves with its result line. */
export type CallAgent = (
  address: AgentAddress,
  request: JobRequest,
  hooks: {
    credentials: ControlCredentials;
    onProgress: (progress: JobProgress) => void;
    signal: AbortSignal;
  },
) => Promise<JobResult>;

/** What opening (or re-opening) an attempt's stream needs; built only when one is opened. */
export interface Connection {
  address: AgentAddress;
  request: JobRequest;
  credentials: ControlCredentials;
}

export interface AttemptView {
  jobId: string;
  agent: string;
  progress?: JobProgress;
  bytesPerSecond?: number;
  etaSeconds?: number;
  result?: JobResult;
  /** The last connection ended without a result (agent gone, network, TLS). */
  error?: string;
  /** Connections in a row that ended without a result. */
  failures: number;
}

interface Entry {
  view: AttemptView;
  controller: AbortController;
  running: boolean;
  retryAt: number;
  samples: { at: number; bytes: number }[];
}

/** Consecutive failed connections after which the attempt counts as failed. */
export const MAX_CONNECTION_FAILURES = 5;
const RECONNECT_DELAY_MS = 2_000;
const RATE_WINDOW_MS = 30_000;

export class AttemptTracker {
  private readonly entries = new Map<string, Entry>();
  private readonly call: CallAgent;
  private readonly now: () => number;

  constructor(call: CallAgent, now: () => number = Date.now) {
    this.call = call;
    this.now = now;
  }

  /**
   * The attempt `jobId` as this process sees it. Opens a connection when there is none (or
   * when the last one failed and its reconnect delay passed); `request` is built only then.
   */
  async ensure(jobId: string, agent: string, connection: () => Promise<Connection>): Promise<AttemptView> {
    let entry = this.entries.get(jobId);
    if (entry && entry.view.agent !== agent) {
      this.forget(jobId);
      entry = undefined;
    }
    if (!entry) {
      entry = {
        view: { jobId, agent, failures: 0 },
        controller: new AbortController(),
        running: false,
        retryAt: 0,
        samples: [],
      };
      this.entries.set(jobId, entry);
    }
    if (!entry.running && !entry.view.result && this.now() >= entry.retryAt) {
      entry.running = true; // before the await: a concurrent ensure must not open a second stream
      try {
        const built = await connection();
        // Forgotten (or replaced for another agent) meanwhile: a stream opened now would never be closed.
        if (this.entries.get(jobId) === entry) this.connect(entry, built);
        else entry.running = false;
      } catch (error) {
        entry.running = false;
        throw error;
      }
    }
    return { ...entry.view };
  }

  /** Drops an attempt (its result is in status, or it was given up): closes its stream. */
  forget(jobId: string): void {
    const entry = this.entries.get(jobId);
    if (!entry) return;
    entry.controller.abort();
    this.entries.delete(jobId);
  }

  /** Job ids with an entry, for tests and for dropping attempts of deleted jobs. */
  jobIds(): string[] {
    return [...this.entries.keys()];
  }

  private connect(entry: Entry, { address, request, credentials }: Connection): void {
    entry.controller = new AbortController();
    const { signal } = entry.controller;
    const onProgress = (progress: JobProgress) => this.progressed(entry, progress);
    this.call(address, request, { credentials, onProgress, signal }).then(
      (result) => {
        entry.running = false;
        entry.view = { ...entry.view, result, failures: 0 };
        delete entry.view.error;
      },
      (error: unknown) => {
        entry.running = false;
        if (signal.aborted) return;
        entry.retryAt = this.now() + RECONNECT_DELAY_MS;
        entry.view = { ...entry.view, error: (error as Error).message, failures: entry.view.failures + 1 };
      },
    );
  }

  private progressed(entry: Entry, progress: JobProgress): void {
    const at = this.now();
    entry.samples = [
      ...entry.samples.filter((s) => at - s.at <= RATE_WINDOW_MS),
      { at, bytes: progress.bytesDone },
    ];
    const first = entry.samples[0]!;
    const seconds = (at - first.at) / 1000;
    const view: AttemptView = { ...entry.view, progress, failures: 0 };
    delete view.error;
    delete view.bytesPerSecond;
    delete view.etaSeconds;
    if (seconds >= 1) {
      const rate = Math.max(0, (progress.bytesDone - first.bytes) / seconds);
      view.bytesPerSecond = Math.round(rate);
      if (rate > 0 && progress.bytesTotal >= progress.bytesDone)
        view.etaSeconds = Math.round((progress.bytesTotal - progress.bytesDone) / rate);
    }
    entry.view = view;
  }
}
