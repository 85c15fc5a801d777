/**
 * The receiver's control endpoint (agent/CONTROL.md): GET /v1/receiver → receiverReport,
 * the facts about its own disk that become OffsiteServer.status.sources and .capacity.
 * Served with `offsite receive --control-port N --control-certs DIR`, with the same TLS
 * and identity rule as `offsite agent` (controlServer.ts).
 *
 * Per source: the versions on disk, the newest, bytes stored, and when its last session
 * ended and how. Sessions since this process started are known from its own events
 * (SessionLog); before that, the disk says when the newest version was committed. Bytes
 * stored is a cheap estimate: the size of the newest version's files by its manifest
 * (what a restore writes), read once per version. Older versions share unchanged files
 * with it through hard links, so the real use is that plus what they alone hold; the
 * volume's statfs figures give the whole truth.
 */
import { readdirSync, statfsSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isGuid } from "../../contract/guid.ts";
import { receiverReport, type ReceiverReport } from "../../contract/reports.ts";
import { SourceLayout } from "../receiver/layout.ts";
import { readManifest } from "../receiver/manifestFile.ts";
import {
  methodNotAllowed,
  notFound,
  sendJson,
  startControlServer,
  type ControlServer,
} from "./controlServer.ts";

type Outcome = NonNullable<ReceiverReport["sources"][number]["lastOutcome"]>;

/** Failure codes that mean the receiver turned the session away, not that it broke. */
const REFUSALS = new Set(["busy", "suspended", "forbidden", "unsupported-version"]);

/** The last session of each source since start, from the receiver's own events. */
export class SessionLog {
  private readonly last = new Map<string, { at: string; outcome: Outcome }>();

  /** Takes one of the receiver's onEvent events. */
  record(event: Record<string, unknown>): void {
    const { site, source } = event;
    if (typeof site !== "string" || typeof source !== "string") return;
    const outcome: Outcome | undefined =
      event.event === "committed"
        ? "committed"
        : event.event === "compare"
          ? "compared"
          : event.event === "restore"
            ? "restored"
            : event.event === "failed"
              ? REFUSALS.has(String(event.code))
                ? "refused"
                : "failed"
              : undefined;
    if (outcome) this.last.set(`${site}/${source}`, { at: new Date().toISOString(), outcome });
  }

  get(site: string, source: string): { at: string; outcome: Outcome } | undefined {
    return this.last.get(`${site}/${source}`);
  }

  sources(): { site: string; source: string }[] {
    return [...this.last.keys()].map((key) => {
      const [site, source] = key.split("/") as [string, string];
      return { site, source };
    });
  }
}

export interface ReceiverControlOptions {
  host: string;
  port: number;
  certsDir: string;
  root: string;
  sessions: SessionLog;
  jobsRunning: () => number;
  onEvent: (event: Record<string, unknown>) => void;
}

export function startReceiverControl(options: ReceiverControlOptions): Promise<ControlServer> {
  const report = new ReceiverReporter(options.root, options.sessions, options.jobsRunning);
  return startControlServer({
    host: options.host,
    port: options.port,
    certsDir: options.certsDir,
    onEvent: options.onEvent,
    handle: (request: IncomingMessage, response: ServerResponse, path: string) => {
      if (path !== "/receiver") return notFound(response, `no such endpoint: /v1${path} (GET /v1/receiver)`);
      if (request.method !== "GET") return methodNotAllowed(response, ["GET"]);
      sendJson(response, 200, report.build());
    },
  });
}

/** A version id (its commit time, UTC) as an ISO timestamp. */
function committedAt(version: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(version)!;
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`;
}

export class ReceiverReporter {
  private readonly root: string;
  private readonly sessions: SessionLog;
  private readonly jobsRunning: () => number;
  /** Bytes of a version's files, by source directory: read again only for a new version. */
  private readonly sizes = new Map<string, { version: string; bytes: number }>();

  constructor(root: string, sessions: SessionLog, jobsRunning: () => number) {
    this.root = root;
    this.sessions = sessions;
    this.jobsRunning = jobsRunning;
  }

  build(): ReceiverReport {
    const volume = statfsSync(this.root);
    const seen = new Set<string>();
    const sources: ReceiverReport["sources"] = [];
    const add = (site: string, source: string) => {
      const key = `${site}/${source}`;
      if (seen.has(key) || sources.length >= 100_000) return;
      seen.add(key);
      const layout = new SourceLayout(this.root, site, source);
      const versions = layout.versions();
      const latest = layout.current() ?? versions.at(-1);
      const session = this.sessions.get(site, source);
      sources.push({
        site,
        source,
        versions: versions.length,
        ...(latest ? { latestVersion: latest } : {}),
        bytesStored: latest ? this.bytesOf(layout, latest) : 0,
        ...(session
          ? { lastSessionAt: session.at, lastOutcome: session.outcome }
          : latest
            ? { lastSessionAt: committedAt(latest), lastOutcome: "committed" as const }
            : {}),
      });
    };
    for (const site of guidDirectories(this.root))
      for (const source of guidDirectories(`${this.root}/${site}`)) add(site, source);
    // Sources seen since start that have nothing on disk (a refused first push).
    for (const { site, source } of this.sessions.sources()) add(site, source);
    return receiverReport.parse({
      reportedAt: new Date().toISOString(),
      volume: {
        totalBytes: volume.blocks * volume.bsize,
        usedBytes: (volume.blocks - volume.bfree) * volume.bsize,
      },
      jobsRunning: this.jobsRunning(),
      sources,
    });
  }

  private bytesOf(layout: SourceLayout, version: string): number {
    const cached = this.sizes.get(layout.dir);
    if (cached?.version === version) return cached.bytes;
    let bytes = 0;
    try {
      for (const entry of readManifest(layout.manifestOf(version)))
        if (entry.type === "file" && entry.hardLink === undefined) bytes += entry.size;
    } catch {
      // Pruned meanwhile, or damaged: counted as nothing rather than failing the report.
      return 0;
    }
    this.sizes.set(layout.dir, { version, bytes });
    return bytes;
  }
}

function guidDirectories(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && isGuid(entry.name))
      .map((entry) => entry.name)
      .sort();
  } catch {
    return [];
  }
}
