/**
 * The `offsite` command line: parses the role and its flags, runs the job, prints the
 * report, and sets the exit status. Roles: receive, push, compare, restore, certs.
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { compareJob } from "../compare/compareJob.ts";
import { identityOfCertificate, isLocalDirectory, sourceGuidFor } from "./targets.ts";
import { createOutput, formatBytes, parseSize } from "./output.ts";
import { parseEndpoint, type Endpoint } from "../client/openSession.ts";
import { pushJob } from "../push/pushJob.ts";
import { DEFAULT_RETENTION } from "../receiver/retention.ts";
import { restoreJob } from "../restore/restoreJob.ts";
import { NO_FILTERS, type FilterOptions } from "../source/filters.ts";
import { loadCredentials } from "../tlsCredentials.ts";

const HELP: Record<string, string> = {
  "": `offsite — push backups offsite, only the changes, over one mutually authenticated TLS session.

Try it on one machine (a local directory stands in for the offsite server):
  offsite push ./my-data --to ./backups        back up (run it again: only changes travel)
  offsite compare ./my-data --to ./backups     what changed since, without sending data
  offsite restore --from ./backups ./restored  bring the newest version back

Between machines:
  offsite certs --out ./certs --host backup.example.com --source <GUID>
  offsite receive --root /srv/offsite --certs ./certs/receiver           (on the offsite server)
  offsite push /data --to backup.example.com:5722 --certs ./certs/source-<GUID>

Roles: receive, push, compare, restore, certs.  offsite ROLE --help for each.`,
  receive: `offsite receive --root DIR --certs DIR [--host 0.0.0.0] [--port 5722]
                [--keep-last 7] [--keep-daily 14] [--keep-weekly 8]
Stores what sources push under DIR/<site GUID>/<source GUID>/: one browsable version per job
(unchanged files shared between versions), 'current' pointing at the newest. --certs holds
ca.crt, tls.crt, tls.key; only clients with a certificate from that CA get in, and each may
only write as the site (O) and source (CN) its certificate names.`,
  push: `offsite push SRC --to HOST:PORT|DIR [--certs DIR] [--site GUID] [--source GUID]
            [--include GLOB]... [--exclude GLOB]... [--max-file-size SIZE]
            [--firewall] [--firewall-pattern GLOB]... [--checksum] [--json]
One backup job. Unchanged files (same size and mtime; --checksum hashes all) are skipped,
changed large files send only the chunks that changed, deletions and renames are carried.
Filters run here, so filtered data never leaves: --exclude '**/*.tmp', --include 'db/**',
--max-file-size 1Gi; --firewall stops executables and scripts (by content) and files
matching --firewall-pattern. Every file kept back is listed in the report.
--site/--source default to the client certificate's O and CN.`,
  compare: `offsite compare SRC --to HOST:PORT|DIR [--version V] [--certs DIR] [--checksum] [--json] [filters]
Reports added / changed / missing / extra files between SRC and a version (default: the
newest) without sending file data. Exit status: 0 when they match, 1 when they differ,
2 on error.`,
  restore: `offsite restore --from HOST:PORT|DIR [--version V] [--certs DIR] [--source GUID] DEST
Brings a version (default: the newest) back into DEST; every file is verified by SHA-256
before it appears.`,
  certs: `offsite certs --out DIR [--host NAME]... [--site GUID] [--source GUID]...
Creates a CA (DIR/ca, reused if present), a receiver certificate for the hosts
(DIR/receiver) and one client certificate per source (DIR/source-<GUID>).`,
};

const common = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  certs: { type: "string" },
  site: { type: "string" },
  source: { type: "string", multiple: true },
  version: { type: "string" },
  to: { type: "string" },
  from: { type: "string" },
  root: { type: "string" },
  host: { type: "string", multiple: true },
  port: { type: "string" },
  out: { type: "string" },
  include: { type: "string", multiple: true },
  exclude: { type: "string", multiple: true },
  "max-file-size": { type: "string" },
  firewall: { type: "boolean" },
  "firewall-pattern": { type: "string", multiple: true },
  checksum: { type: "boolean" },
  "keep-last": { type: "string" },
  "keep-daily": { type: "string" },
  "keep-weekly": { type: "string" },
} as const;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [role = "", ...rest] = argv;
  if (role === "" || role === "--help" || role === "-h" || role === "help") {
    console.log(HELP[""]);
    return role === "" ? 2 : 0;
  }
  if (!(role in HELP))
    throw new UsageError(
      `unknown role ${JSON.stringify(role)}; one of receive, push, compare, restore, certs`,
    );
  const { values, positionals } = parseArgs({
    args: rest,
    options: common,
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    console.log(HELP[role]);
    return 0;
  }
  const output = createOutput(values.json ?? false);
  const filters: FilterOptions = {
    ...NO_FILTERS,
    include: values.include ?? [],
    exclude: values.exclude ?? [],
    firewall: values.firewall ?? false,
    firewallPatterns: values["firewall-pattern"] ?? [],
    ...(values["max-file-size"] ? { maxFileSize: parseSize(values["max-file-size"]) } : {}),
  };

  switch (role) {
    case "certs": {
      if (!values.out) throw new UsageError("certs needs --out DIR");
      const { writeCertificates } = await import("./certsCommand.ts");
      const result = await writeCertificates({
        out: values.out,
        hosts: values.host ?? [],
        sources: values.source ?? [],
        ...(values.site ? { site: values.site } : {}),
      });
      output.result(
        result,
        `CA in ${result.ca}, receiver in ${result.receiver}, site ${result.site}\n` +
          result.sources.map((s) => `source ${s.source}: ${s.dir}`).join("\n"),
      );
      return 0;
    }
    case "receive": {
      if (!values.root || !values.certs) throw new UsageError("receive needs --root DIR and --certs DIR");
      const count = (name: "keep-last" | "keep-daily" | "keep-weekly", fallback: number) =>
        values[name] === undefined ? fallback : nonNegativeInteger(values[name], `--${name}`);
      const { startReceiver } = await import("../receiver/receiverServer.ts");
      const receiver = await startReceiver({
        root: resolve(values.root),
        host: values.host?.[0] ?? "0.0.0.0",
        port: values.port ? nonNegativeInteger(values.port, "--port") : 5722,
        credentials: loadCredentials(values.certs),
        retention: {
          last: count("keep-last", DEFAULT_RETENTION.last),
          daily: count("keep-daily", DEFAULT_RETENTION.daily),
          weekly: count("keep-weekly", DEFAULT_RETENTION.weekly),
        },
        onEvent: (event) => output.event(event),
      });
      output.event({ event: "listening", port: receiver.port, root: resolve(values.root) });
      await new Promise<void>((done) => {
        for (const signal of ["SIGINT", "SIGTERM"] as const)
          process.once(signal, () => void receiver.close().then(done));
      });
      return 0;
    }
    case "push":
    case "compare": {
      const source = positionals[0];
      if (!source || !values.to) throw new UsageError(`${role} needs SRC and --to HOST:PORT|DIR`);
      const target = await resolveTarget(values.to, values, sourceGuidFor(source));
      // What push and compare share: the source, where it goes, and what it selects.
      const job = {
        source: resolve(source),
        endpoint: target.endpoint,
        site: target.site,
        sourceId: target.source,
        filters,
        checksum: values.checksum ?? false,
      };
      try {
        if (role === "push") {
          const report = await pushJob({
            ...job,
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
                .join(""),
          );
          return 0;
        }
        const report = await compareJob({
          ...job,
          ...(values.version ? { version: values.version } : {}),
        });
        const lines = (["added", "changed", "missing", "extra"] as const).flatMap((kind) =>
          report[kind].map((path) => `${kind.padEnd(8)} ${path}`),
        );
        output.result(
          report,
          report.match
            ? `matches version ${report.version}`
            : `differs from version ${report.version}:\n${lines.join("\n")}`,
        );
        return report.match ? 0 : 1;
      } finally {
        await target.close();
      }
    }
    case "restore": {
      const destination = positionals[0];
      if (!destination || !values.from) throw new UsageError("restore needs --from HOST:PORT|DIR and DEST");
      const target = await resolveTarget(values.from, values, undefined);
      try {
        const report = await restoreJob({
          endpoint: target.endpoint,
          site: target.site,
          sourceId: target.source,
          destination,
          ...(values.version ? { version: values.version } : {}),
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
  }
  return 2;
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
  values: { certs?: string; site?: string; source?: string[] },
  derivedSource: string | undefined,
): Promise<Target> {
  if (isLocalDirectory(value)) {
    const { openLocalStore } = await import("./localStore.ts");
    const store = await openLocalStore(value);
    let source = values.source?.[0] ?? derivedSource;
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
  const source = values.source?.[0] ?? identity.source;
  if (!site || !source)
    throw new UsageError("no --site/--source given and the client certificate names none (O, CN)");
  return { endpoint: { ...parseEndpoint(value), credentials }, site, source, close: () => Promise.resolve() };
}

function nonNegativeInteger(value: string, flag: string): number {
  if (!/^\d+$/.test(value))
    throw new UsageError(`${flag} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
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
