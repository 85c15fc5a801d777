/**
 * The `offsite` command line: parses the role and its flags with the contract's flag
 * tables (contract/roles.ts, the same tables the operator renders container args from),
 * runs the job, prints the report, and sets the exit status. Roles: receive, agent, push,
 * compare, restore, certs.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { flagHelp, flags, UsageError } from "../../contract/flags.ts";
import {
  ROLE_FLAGS,
  filterOptionsOf,
  retentionOf,
  type Role,
  type AgentOptions,
  type CertsOptions,
  type CompareOptions,
  type PushOptions,
  type ReceiveOptions,
  type RestoreOptions,
  type ReplicateOptions,
  type StandbyOptions,
} from "../../contract/roles.ts";
import { parseCommandLine } from "./commandLine.ts";
import { compareJob } from "../compare/compareJob.ts";
import { identityOfCertificate, isLocalDirectory, sourceGuidFor } from "./targets.ts";
import { createOutput, formatBytes } from "./output.ts";
import { parseEndpoint, type Endpoint } from "../client/openSession.ts";
import { pushJob } from "../push/pushJob.ts";
import { restoreJob } from "../restore/restoreJob.ts";
import { loadCredentials } from "../tlsCredentials.ts";
import type { ControlServer } from "../control/controlServer.ts";

const OVERVIEW = `offsite — push backups offsite, only the changes, over one mutually authenticated TLS session.

Try it on one machine (a local directory stands in for the offsite server):
  offsite push ./my-data --to ./backups        back up (run it again: only changes travel)
  offsite compare ./my-data --to ./backups     what changed since, without sending data
  offsite restore --from ./backups ./restored  bring the newest version back

Between machines:
  offsite certs --out ./certs --host backup.example.com --source <GUID>
  offsite receive --root /srv/offsite --certs ./certs/receiver           (on the offsite server)
  offsite push /data --to backup.example.com:5722 --certs ./certs/source-<GUID>

In Kubernetes the operator runs \`offsite agent\` beside the data and sends it the jobs.

Replicate a live tree to a standby in almost real time:
  offsite replicate ./site --to ./standby       (a local directory, or a remote standby:)
  offsite standby --root /srv/site --certs ./certs/receiver              (on the standby)
  offsite replicate /srv/site --to standby.example.com:5725 --certs ./certs/source-<GUID>

Roles: receive, agent, push, compare, restore, replicate, standby, certs.
offsite ROLE --help for each.
Sizes are Kubernetes quantities (500Mi, 2G, 1048576), durations like 30s or 1h30m, GUIDs
1-63 lower-case letters, digits or '-' (a Kubernetes UID, or a name such as orders-db).`;

/** What each role does, above its flags (which come from the contract's tables). */
const ROLE_HELP: Record<Role, string> = {
  receive: `offsite receive --root DIR --certs DIR [options]
Stores what sources push under DIR/<site GUID>/<source GUID>/: one browsable version per job
(unchanged files shared between versions), 'current' pointing at the newest, older versions
pruned by the retention flags. Only clients with a certificate from the CA in --certs get in,
and each may only write as the site (O) and source (CN) its certificate names.`,
  agent: `offsite agent --control-certs DIR [options]
Waits for jobs from the operator (a BackupJob's sidecar, or a mover pod): push, compare and,
with --allow-restore, restore, each sent with its target, filters and the source's client
certificate to POST /v1/jobs on the control port (agent/CONTROL.md), its progress and result
streamed back. Only the operator's certificate (CN=O=offsite-operator, from the CA in
--control-certs) may call it. The agent holds no credential for the data between jobs.
Until --control-certs holds usable credentials it refuses connections and /readyz says why;
it never exits for them. SIGTERM or SIGINT stops it (running jobs end; a push resumes).`,
  push: `offsite push SRC --to HOST:PORT|DIR [options]
One backup job. Unchanged files (same size, mtime and mode; --checksum hashes all) are skipped,
changed large files send only the chunks that changed, deletions and renames are carried.
Filters run here, so filtered data never leaves: --exclude '**/*.tmp', --include 'db/**',
--max-file-size 1Gi; --firewall stops executables and scripts (by content and extension) and
files matching --firewall-block, except those matching --firewall-allow. Every file kept back
is listed in the report.
An entry that cannot be read (permission denied, an I/O error, a name too long, a file
swapped for a link during the job) does not stop the job: it is listed in the report under
'problems' with its reason, the receiver keeps its previous copy of it (and of everything
under a directory that cannot be listed), and the version is marked partial.
Exit status: 0 when the whole source was backed up, 3 when the job completed but some
entries could not be read (partial), 1 when the job failed, 2 on a usage error.`,
  compare: `offsite compare SRC --to HOST:PORT|DIR [options]
Reports added / changed / missing / extra files between SRC and a version (default: the
newest) without sending file data, deciding "changed" exactly as push does. An entry that
cannot be read is reported as a problem, never as missing or changed. Exit status: 0 when
they match, 1 when they differ, 3 when nothing readable differs but some entries could not
be read, 2 on error.`,
  restore: `offsite restore --from HOST:PORT|DIR [options] DEST
Brings a version (default: the newest) back into DEST; every file is verified by SHA-256
before it appears.`,
  replicate: `offsite replicate SRC --to HOST:PORT|DIR [options]
The primary side of a replication pair: watches SRC (inotify, one watch per directory) and
keeps the standby's tree identical within about a second: edits, creations, deletions,
renames (as renames), modes and mtimes, changed chunks only for large files, over one
long-lived TLS session. A file is sent once it is quiet for --batch-window. The content
firewall is on: executables and scripts (by content) never cross and are reported; they stay
here. Changes not yet durable on the standby are journaled in --state, so a killed primary
loses nothing; a standby that was away is caught up with only the differences. Runs until
SIGINT or SIGTERM; with --json it prints one event a line (synced, applied with lagMs,
blocked, problem, disconnected).`,
  standby: `offsite standby --root DIR --certs DIR [options]
The standby side of a replication pair: applies its primary's changes to the live tree DIR,
each file atomically (a reader never sees a half-written file) and durably before it
acknowledges. Serves one pair (the first primary's certificate, or --pair) and refuses an
older epoch. Its own content firewall keeps executables and scripts out whatever arrives.`,
  certs: `offsite certs --out DIR [options]
Creates a CA (DIR/ca, reused if present), a receiver certificate for the hosts
(DIR/receiver) and one client certificate per source (DIR/source-<GUID>).`,
};

async function main(argv: string[]): Promise<number> {
  const role = argv[0] ?? "";
  if (role === "" || role === "--help" || role === "-h" || role === "help") {
    console.log(OVERVIEW);
    return role === "" ? 2 : 0;
  }
  const { options, positionals, help, json } = parseCommandLine(argv);
  if (help) {
    const table = { ...ROLE_FLAGS[role as Role], json: flags.switch("Print the report as JSON.") };
    console.log(`${ROLE_HELP[role as Role]}\n\n${flagHelp(table)}`);
    return 0;
  }
  const output = createOutput(json);
  switch (role as Role) {
    case "certs":
      return runCerts(options as CertsOptions, output);
    case "receive":
      return runReceive(options as ReceiveOptions, output);
    case "agent":
      return runAgent(options as AgentOptions, output);
    case "push":
      return runPush(positionals, options as PushOptions, output);
    case "compare":
      return runCompare(positionals, options as CompareOptions, output);
    case "restore":
      return runRestore(positionals, options as RestoreOptions, output);
    case "replicate":
      return runReplicate(positionals, options as ReplicateOptions, output);
    case "standby":
      return runStandby(options as StandbyOptions, output);
  }
}

type Output = ReturnType<typeof createOutput>;

/**
 * The exit status of a job that completed without some entries it could not read (push:
 * a partial version; compare: no difference found in the rest), as rsync's 23 and
 * restic's 3.
 */
const PARTIAL = 3;

async function runCerts(options: CertsOptions, output: Output): Promise<number> {
  const { writeCertificates } = await import("./certsCommand.ts");
  const result = await writeCertificates({
    out: options.out,
    hosts: options.hosts,
    sources: options.sources,
    ...(options.site ? { site: options.site } : {}),
  });
  output.result(
    result,
    `CA in ${result.ca}, receiver in ${result.receiver}, site ${result.site}\n` +
      result.sources.map((s) => `source ${s.source}: ${s.dir}`).join("\n"),
  );
  return 0;
}

async function runReceive(options: ReceiveOptions, output: Output): Promise<number> {
  if (options.controlPort > 0 && !options.controlCerts)
    throw new UsageError("--control-port needs --control-certs DIR (the control endpoint's credentials)");
  const { startReceiver } = await import("../receiver/receiverServer.ts");
  const { SessionLog } = await import("../control/receiverReport.ts");
  const sessions = new SessionLog();
  const root = resolve(options.root);
  const receiver = await startReceiver({
    root,
    host: options.host,
    port: options.port,
    credentials: loadCredentials(options.certs),
    retention: retentionOf(options),
    maxConcurrentJobs: options.maxConcurrentJobs,
    suspendedSources: options.suspendedSources,
    idleTimeoutMs: options.idleTimeout,
    onEvent: (event) => {
      sessions.record(event);
      output.event(event);
    },
  });
  const { startHealthServer } = await import("../receiver/healthServer.ts");
  let health;
  try {
    health = options.healthPort
      ? await startHealthServer(options.host, options.healthPort, () => receiver.accepting())
      : undefined;
  } catch (error) {
    // No probes, no receiver: one that serves without them would never be restarted.
    await receiver.close();
    throw new Error(`cannot serve probes on port ${options.healthPort}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let control: ControlServer | undefined;
  try {
    if (options.controlPort > 0) {
      const { startReceiverControl } = await import("../control/receiverReport.ts");
      control = await startReceiverControl({
        host: options.host,
        port: options.controlPort,
        certsDir: options.controlCerts!,
        root,
        sessions,
        jobsRunning: () => receiver.jobsRunning(),
        onEvent: (event) => output.event(event),
      });
    }
  } catch (error) {
    await Promise.all([receiver.close(), health?.close()]);
    throw new Error(
      `cannot serve the control endpoint on port ${options.controlPort}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  output.event({
    event: "listening",
    port: receiver.port,
    root,
    retention: retentionOf(options),
    maxConcurrentJobs: options.maxConcurrentJobs,
    suspendedSources: options.suspendedSources,
    ...(health ? { healthPort: health.port } : {}),
    ...(control ? { controlPort: control.port } : {}),
  });
  await new Promise<void>((done) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const)
      process.once(
        signal,
        () => void Promise.all([receiver.close(), health?.close(), control?.close()]).then(() => done()),
      );
  });
  return 0;
}

async function runAgent(options: AgentOptions, output: Output): Promise<number> {
  const { startAgentControl } = await import("../control/agentControl.ts");
  const control = await startAgentControl({
    host: options.host,
    port: options.controlPort,
    certsDir: resolve(options.controlCerts),
    allowRestore: options.allowRestore,
    allowStandby: options.allowStandby,
    cacheDir: cacheDirOf(options.cache, undefined),
    onEvent: (event) => output.event(event),
  });
  const { startHealthServer } = await import("../receiver/healthServer.ts");
  let health;
  try {
    health = options.healthPort
      ? await startHealthServer(
          options.host,
          options.healthPort,
          () => control.ready(),
          () => control.notReadyReason(),
        )
      : undefined;
  } catch (error) {
    await control.close();
    throw new Error(`cannot serve probes on port ${options.healthPort}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  output.event({
    event: "listening",
    role: "agent",
    controlPort: control.port,
    allowRestore: options.allowRestore,
    ...(health ? { healthPort: health.port } : {}),
  });
  await new Promise<void>((done) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const)
      process.once(signal, () => {
        output.event({ event: "stopping", signal, jobsRunning: control.jobsRunning() });
        void Promise.all([control.close(), health?.close()]).then(() => done());
      });
  });
  // Nothing of ours is left; a stray handle must not keep a terminating pod alive.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}

/** Resolves when SIGINT or SIGTERM arrives, with its name. */
function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve(signal));
  });
}

async function runReplicate(
  positionals: string[],
  options: ReplicateOptions,
  output: Output,
): Promise<number> {
  const source = positionals[0];
  if (!source) throw new UsageError("replicate needs SRC (the directory to replicate)");
  if (positionals.length > 1) throw new UsageError(`replicate takes one SRC, not ${positionals.join(" ")}`);
  const { replicateJob } = await import("../replicate/replicateJob.ts");
  let endpoint: Endpoint;
  let site: string;
  let sourceId: string;
  let local: { standby: { close(): Promise<void> } } | undefined;
  if (isLocalDirectory(options.to)) {
    const { openLocalStandby } = await import("./localStandby.ts");
    sourceId = options.source ?? sourceGuidFor(source);
    const opened = await openLocalStandby(options.to, sourceId, (event) => output.event(event));
    ({ endpoint, site } = opened);
    local = opened;
  } else {
    const target = await resolveTarget(options.to, options, undefined);
    ({ endpoint, site } = target);
    sourceId = target.source;
  }
  const stateDir = resolve(options.state ?? join(source, ".offsite"));
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const stop = new AbortController();
  void stopSignal().then((signal) => {
    output.event({ event: "stopping", signal });
    stop.abort(new Error(`stopped by ${signal}`));
  });
  try {
    await replicateJob({
      source: resolve(source),
      endpoint,
      site,
      sourceId,
      epoch: options.epoch,
      filters: filterOptionsOf(options),
      batchWindowMs: options.batchWindow,
      stateDir,
      signal: stop.signal,
      onEvent: (event) => output.event(event),
    });
  } finally {
    await local?.standby.close();
  }
  return 0;
}

async function runStandby(options: StandbyOptions, output: Output): Promise<number> {
  const { startStandby } = await import("../standby/standbyServer.ts");
  const standby = await startStandby({
    root: resolve(options.root),
    host: options.host,
    port: options.port,
    credentials: loadCredentials(options.certs),
    pair: options.pair,
    firewall: options.firewall,
    onEvent: (event) => output.event(event),
  });
  const { startHealthServer } = await import("../receiver/healthServer.ts");
  const health = options.healthPort
    ? await startHealthServer(options.host, options.healthPort, () => standby.accepting())
    : undefined;
  output.event({
    event: "listening",
    role: "standby",
    port: standby.port,
    ...(health ? { healthPort: health.port } : {}),
  });
  const signal = await stopSignal();
  output.event({ event: "stopping", signal });
  await Promise.all([standby.close(), health?.close()]);
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}

/** What push and compare share: the source, where it goes, and what it selects. */
async function openJob(
  role: "push" | "compare",
  positionals: string[],
  options: PushOptions | CompareOptions,
) {
  const source = positionals[0];
  if (!source) throw new UsageError(`${role} needs SRC (the directory to ${role})`);
  if (positionals.length > 1) throw new UsageError(`${role} takes one SRC, not ${positionals.join(" ")}`);
  const target = await resolveTarget(options.to, options, sourceGuidFor(source));
  const job = {
    source: resolve(source),
    endpoint: target.endpoint,
    site: target.site,
    sourceId: target.source,
    filters: filterOptionsOf(options),
    checksum: options.checksum,
  };
  return { target, job };
}

async function runPush(positionals: string[], options: PushOptions, output: Output): Promise<number> {
  const { target, job } = await openJob("push", positionals, options);
  try {
    const report = await pushJob({
      ...job,
      cacheDir: cacheDirOf(options.cache, defaultCacheDir()),
      onProgress: (p) => output.progress(p.filesDone, p.filesTotal, p.bytesDone, p.bytesTotal),
    });
    output.result(
      { event: "pushed", site: target.site, source: target.source, ...report },
      `version ${report.version}: ${report.files.total} files, ${report.files.sent} sent, ` +
        `${report.files.linked} linked, ${report.files.unchanged} unchanged, ${report.files.deleted} deleted; ` +
        `${formatBytes(report.bytes.wire)} on the wire; ${report.filtered.length} filtered` +
        report.filtered.map((f) => `\n  filtered ${f.path} (${f.reason})`).join("") +
        report.vanished
          .map((path) => `\n  vanished ${path} (gone since the scan; not in this version)`)
          .join("") +
        (report.problems.length > 0
          ? `\npartial: ${report.problems.length} could not be read (the receiver keeps its previous copy, if any)` +
            report.problems.map((p) => `\n  unreadable ${p.path}: ${p.reason}`).join("")
          : ""),
    );
    return report.outcome === "partial" ? PARTIAL : 0;
  } finally {
    await target.close();
  }
}

/** `--cache DIR`: the directory; `none`: no cache; absent: `fallback`. */
function cacheDirOf(flag: string | undefined, fallback: string | undefined): string | undefined {
  if (flag === "none") return undefined;
  return flag !== undefined ? resolve(flag) : fallback;
}

/** Where `offsite push` keeps its cache by default: the XDG cache directory, as restic does. */
function defaultCacheDir(): string | undefined {
  const base =
    process.env.XDG_CACHE_HOME || (process.env.HOME ? join(process.env.HOME, ".cache") : undefined);
  return base ? join(base, "offsite") : undefined;
}

async function runCompare(positionals: string[], options: CompareOptions, output: Output): Promise<number> {
  const { target, job } = await openJob("compare", positionals, options);
  try {
    const report = await compareJob({ ...job, ...(options.version ? { version: options.version } : {}) });
    const lines = [
      ...(["added", "changed", "missing", "extra"] as const).flatMap((kind) =>
        report[kind].map((path) => `${kind.padEnd(8)} ${path}`),
      ),
      ...report.metadata.map(
        ({ path, aspects }) => `${"metadata".padEnd(8)} ${path} (${aspects.join(", ")})`,
      ),
    ];
    const differs = lines.length > 0;
    const problems = report.problems.map((p) => `unreadable ${p.path}: ${p.reason}`);
    output.result(
      report,
      (report.match
        ? `matches version ${report.version}`
        : differs
          ? `differs from version ${report.version}:\n${lines.join("\n")}`
          : `no difference from version ${report.version} in what could be read`) +
        (problems.length > 0 ? `\n${problems.join("\n")}` : ""),
    );
    return report.match ? 0 : differs ? 1 : PARTIAL;
  } finally {
    await target.close();
  }
}

async function runRestore(positionals: string[], options: RestoreOptions, output: Output): Promise<number> {
  const destination = positionals[0];
  if (!destination) throw new UsageError("restore needs DEST (the directory to restore into)");
  const target = await resolveTarget(options.from, options, undefined);
  try {
    const report = await restoreJob({
      endpoint: target.endpoint,
      site: target.site,
      sourceId: target.source,
      destination,
      ...(options.version ? { version: options.version } : {}),
    });
    output.result(
      report,
      `restored version ${report.version}: ${report.files} files, ${formatBytes(report.bytes)} into ${destination}`,
    );
    return 0;
  } finally {
    await target.close();
  }
}

interface Target {
  endpoint: Endpoint;
  site: string;
  source: string;
  close(): Promise<void>;
}

/** A receiver address with --certs, or a local directory served in-process. */
async function resolveTarget(
  value: string,
  values: {
    certs?: string | undefined;
    site?: string | undefined;
    source?: string | undefined;
    tlsServerName?: string | undefined;
  },
  derivedSource: string | undefined,
): Promise<Target> {
  if (isLocalDirectory(value)) {
    if (values.tlsServerName)
      throw new UsageError(
        `--tls-server-name is for a receiver's HOST:PORT, and ${value} is a local directory`,
      );
    const { openLocalStore } = await import("./localStore.ts");
    const store = await openLocalStore(value);
    let source = values.source ?? derivedSource;
    if (!source) {
      const sources = store.sources();
      if (sources.length !== 1) {
        await store.close();
        throw new UsageError(
          `${value} holds ${sources.length} sources (${sources.join(", ")}); choose one with --source GUID`,
        );
      }
      source = sources[0]!;
    }
    return {
      endpoint: {
        host: "127.0.0.1",
        port: store.receiver.port,
        credentials: await store.clientCredentials(source),
      },
      site: store.site,
      source,
      close: () => store.close(),
    };
  }
  if (!values.certs) throw new UsageError(`talking to ${value} needs --certs DIR (ca.crt, tls.crt, tls.key)`);
  const credentials = loadCredentials(values.certs);
  const identity = identityOfCertificate(credentials.cert);
  const site = values.site ?? identity.site;
  const source = values.source ?? identity.source;
  if (!site || !source)
    throw new UsageError("no --site/--source given and the client certificate names none (O, CN)");
  return {
    endpoint: { ...parseEndpoint(value), credentials, serverName: values.tlsServerName },
    site,
    source,
    close: () => Promise.resolve(),
  };
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  const usage =
    error instanceof UsageError || (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS");
  createOutput(process.argv.includes("--json")).error(
    (error as Error).message + (usage ? "\n(offsite --help shows how it is used)" : ""),
  );
  // diff(1)'s convention for compare (2 = trouble); otherwise 2 for usage, 1 for a failed job.
  process.exitCode = usage || process.argv[2] === "compare" ? 2 : 1;
}
