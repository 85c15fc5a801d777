/**
 * The role an `offsite agent` plays in a ReplicationPair, as the operator last said with
 * PUT /v1/replication (agent/CONTROL.md, "Replication"): primary (replicateJob towards the
 * standby's agent) or standby (a standby server on the data volume). Level-based: the same
 * request again changes nothing; another restarts the role with it; DELETE stops it. The
 * report (GET /v1/replication, and the heartbeat) is built from the role's own events.
 *
 * A standby writes into the data, so an agent takes that role only with --allow-standby
 * (the operator injects it so only into a pair's standby pods, whose data mount is
 * writable): a backup sidecar can never be made to write what it protects.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  DEFAULT_REPLICATION_PORT,
  type ReplicationReport,
  type ReplicationRequest,
} from "../../contract/reports.ts";
import { parseEndpoint } from "../client/openSession.ts";
import { replicateJob, type ReplicationEvent } from "../replicate/replicateJob.ts";
import { startStandby, type RunningStandby } from "../standby/standbyServer.ts";

const RECENT = 20;

interface Running {
  request: ReplicationRequest;
  /** The request it plays; emptied when it failed for a reason the same request may not meet again. */
  fingerprint: string;
  stop: () => Promise<void>;
}

export class ReplicationRole {
  private readonly host: string;
  private readonly onEvent: (event: Record<string, unknown>) => void;
  private running: Running | undefined;
  private report: ReplicationReport = emptyReport();
  /** apply and stop run one at a time: two at once would start two roles, one of them lost. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(host: string, onEvent: (event: Record<string, unknown>) => void) {
    this.host = host;
    this.onEvent = onEvent;
  }

  /** What the role is doing now. */
  current(): ReplicationReport {
    return { ...this.report, at: new Date().toISOString() };
  }

  /** Plays the role `request` names; returns whether it (re)started. */
  apply(request: ReplicationRequest): Promise<boolean> {
    return this.serialized(() => this.applyNow(request));
  }

  stop(): Promise<void> {
    return this.serialized(() => this.stopNow());
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(request: ReplicationRequest): Promise<boolean> {
    const fingerprint = createHash("sha256").update(JSON.stringify(request)).digest("hex");
    // A role that failed for good (another pair, an older epoch) is tried again only when
    // the request changes: the operator's next reconcile must not hammer a refusing peer.
    if (this.running?.fingerprint === fingerprint) return false;
    await this.stopNow();
    this.report = {
      ...emptyReport(),
      role: request.role,
      pair: request.pair,
      epoch: request.epoch,
      state: request.role === "primary" ? "connecting" : "listening",
    };
    this.running =
      request.role === "primary"
        ? this.startPrimary(request, fingerprint)
        : await this.startStandby(request, fingerprint);
    this.onEvent({ event: "replication-role", role: request.role, pair: request.pair, epoch: request.epoch });
    return true;
  }

  private async stopNow(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    this.report = emptyReport();
    await running?.stop();
  }

  private startPrimary(request: ReplicationRequest, fingerprint: string): Running {
    const abort = new AbortController();
    const { host, port } = parseEndpoint(request.standby!.endpoint);
    const stateDir = request.stateDir ?? join(request.path, ".offsite");
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const done = replicateJob({
      source: request.path,
      endpoint: {
        host,
        port,
        credentials: {
          ca: request.caCertificate,
          cert: request.credentials.certificate,
          key: request.credentials.privateKey,
        },
        serverName: request.standby!.serverName,
      },
      site: request.site,
      sourceId: request.pair,
      epoch: request.epoch,
      filters: { ...request.filters, firewall: request.contentFirewall },
      batchWindowMs: request.batchWindowMs,
      stateDir,
      signal: abort.signal,
      onEvent: (event) => this.primaryEvent(event),
    }).catch((error: unknown) => {
      if (abort.signal.aborted) return;
      this.report = { ...this.report, state: "failed", message: (error as Error).message };
      this.onEvent({ event: "replication-failed", message: (error as Error).message });
      // A refusal (another pair, an older epoch, a certificate) waits for another request;
      // anything else (a journal that cannot be written) is tried again by the same one.
      const code = (error as { code?: string }).code;
      if (
        !["forbidden", "stale-epoch", "certificate-refused"].includes(code ?? "") &&
        running.fingerprint === fingerprint
      )
        running.fingerprint = "";
    });
    const running: Running = {
      request,
      fingerprint,
      stop: async () => {
        abort.abort(new Error("the role was stopped"));
        await done;
      },
    };
    return running;
  }

  private async startStandby(request: ReplicationRequest, fingerprint: string): Promise<Running> {
    let standby: RunningStandby;
    try {
      standby = await startStandby({
        root: request.path,
        host: this.host,
        port: request.listenPort ?? DEFAULT_REPLICATION_PORT,
        credentials: {
          ca: request.caCertificate,
          cert: request.credentials.certificate,
          key: request.credentials.privateKey,
        },
        pair: request.pair,
        firewall: request.contentFirewall.enabled,
        onEvent: (event) => this.standbyEvent(event),
        onApplied: (refused) => {
          const at = new Date().toISOString();
          this.report = {
            ...this.report,
            state: "serving",
            lastAppliedAt: at,
            batchesApplied: this.report.batchesApplied + 1,
          };
          for (const file of refused) this.blocked(file.path, file.reason);
        },
      });
    } catch (error) {
      this.report = { ...this.report, state: "failed", message: (error as Error).message };
      // Not kept under the request's fingerprint: the next identical request tries again
      // (a port still taken by a process going away, a directory not yet mounted).
      return { request, fingerprint: "", stop: () => Promise.resolve() };
    }
    return { request, fingerprint, stop: () => standby.close() };
  }

  private primaryEvent(event: ReplicationEvent): void {
    const report = this.report;
    switch (event.event) {
      case "connected":
        this.report = { ...report, state: "syncing", message: undefined };
        break;
      case "synced":
        this.report = { ...report, state: "streaming", bytesSent: event.bytes };
        break;
      case "applied":
        this.report = {
          ...report,
          state: "streaming",
          pendingChanges: event.pending,
          lastLagMs: event.lagMs,
          batchesApplied: report.batchesApplied + 1,
          bytesSent: event.bytesSent,
          ...(event.pending === 0 ? { lastSyncTime: new Date().toISOString() } : {}),
        };
        break;
      case "disconnected":
        this.report = {
          ...report,
          state: "disconnected",
          pendingChanges: event.pending,
          message: event.reason,
        };
        break;
      case "blocked":
        this.blocked(event.path, event.reason);
        break;
      case "problem":
        this.report = {
          ...report,
          recentProblems: [...report.recentProblems, recent(event.path, event.reason)].slice(-RECENT),
        };
        break;
      case "rescan":
        break;
    }
    this.onEvent({ ...event, side: "primary" });
  }

  private standbyEvent(event: Record<string, unknown>): void {
    if (event.event === "session") this.report = { ...this.report, state: "serving", message: undefined };
    if (event.event === "failed") {
      this.report = { ...this.report, state: "listening", message: String(event.message) };
    }
    this.onEvent({ ...event, side: "standby" });
  }

  private blocked(path: string, reason: string): void {
    this.report = {
      ...this.report,
      blocked: this.report.blocked + 1,
      recentBlocked: [...this.report.recentBlocked, recent(path, reason)].slice(-RECENT),
    };
  }
}

function recent(path: string, reason: string) {
  return { path: path.slice(0, 4096), reason: reason.slice(0, 256), at: new Date().toISOString() };
}

function emptyReport(): ReplicationReport {
  return {
    at: new Date().toISOString(),
    role: "none",
    state: "none",
    pendingChanges: 0,
    batchesApplied: 0,
    bytesSent: 0,
    blocked: 0,
    recentBlocked: [],
    recentProblems: [],
  };
}
