/**
 * `npm run bench`: B1–B5 and B8 of ../shared/notes/performance.md, and the rows on realistic
 * trees (R1, R2, B2r: realisticTrees.ts), each side by side with its baselines in the same
 * run, on loopback through the same latency relay. Every row group of B1–B4, R1, R2 and B2r
 * runs twice, unpinned and pinned (peers.ts: senders on core 0, receivers on core 1),
 * one placement right after the other. Writes bench/RESULTS.md (a table per placement,
 * with the machine and the date) and bench/results.json.
 * One file so that every benchmark and its baselines share one run, one relay and one
 * table (past ~400 lines for that reason); the processes and their cores are in peers.ts,
 * B5 (replication lag) is in replicationLag.ts.
 *
 *   npm run bench                     everything at the sizes of the performance notes
 *   npm run bench -- --only B1,B3     some of them (B1 B2 B3 B4 B5 B8 R1 R2 B2r)
 *   npm run bench -- --scale 0.05     smaller workloads (a smoke run; ratios are noisier)
 *   npm run bench -- --pin pinned     one placement only (both, pinned, unpinned; default both)
 *   npm run bench -- --relay-core 0   where the pinned run puts the relay (0, 1 or any; default 1)
 */
import { spawnSync } from "node:child_process";
import { cpus, totalmem, release, tmpdir } from "node:os";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  CORE,
  OFFSITE,
  cpuNote,
  Peers,
  type Placement,
  type Row,
  log,
  pinningUnavailable,
  settle,
  timed,
  withProxy,
} from "./peers.ts";
import { sourceTreeRows, websiteRows } from "./realisticTrees.ts";
import { replicationLag } from "./replicationLag.ts";
import {
  churnSmallFileTree,
  editLargeFile,
  makeLargeFile,
  makeManyFiles,
  makeSmallFileTree,
} from "./workloads.ts";

const ROOT = resolve(import.meta.dirname, "..");
const ANALYSIS = join(ROOT, "bench", "ANALYSIS.md");
const SITE = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const SOURCE = "a1b2c3d4-e5f6-4789-8abc-def012345678";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    scale: { type: "string" },
    dir: { type: "string" },
    storage: { type: "string" },
    pin: { type: "string" },
    "relay-core": { type: "string" },
  },
});
const scale = Number(values.scale ?? 1);
const only = new Set((values.only ?? "B1,B2,B3,B4,B5,B8,R1,R2,B2r").split(","));
const work = values.dir ? resolve(values.dir) : mkdtempSync(join(tmpdir(), "offsite-bench-"));
mkdirSync(work, { recursive: true });
const relayCore = values["relay-core"] ?? CORE.server;
if (!["0", "1", "any"].includes(relayCore)) throw new Error(`--relay-core is 0, 1 or any, not ${relayCore}`);
const pin = values.pin ?? "both";
if (!["both", "pinned", "unpinned"].includes(pin))
  throw new Error(`--pin is both, pinned or unpinned, not ${pin}`);
const cannotPin = pinningUnavailable();
if (cannotPin && pin !== "unpinned") log(`not pinning: ${cannotPin}`);
const placements: Placement[] = cannotPin
  ? ["unpinned"]
  : pin === "both"
    ? ["unpinned", "pinned"]
    : [pin as Placement];

const certs = join(work, "certs");
const peers = new Peers(work, certs, join(certs, `source-${SOURCE}`), relayCore);

const rows: Row[] = [];
/** Each verdict with the placement it was measured in (none: B5 and B8, measured once). */
const verdicts: { placement?: Placement; text: string }[] = [];
/** A row or a verdict of the placement being measured. */
const row = (r: Omit<Row, "placement">) => rows.push({ ...r, placement: peers.placement });
const verdict = (text: string) => verdicts.push({ placement: peers.placement, text });

function copyTree(from: string, to: string): void {
  const copied = spawnSync("cp", ["-a", from, to]);
  if (copied.status !== 0) throw new Error(`cp -a ${from} ${to}: ${copied.stderr.toString()}`);
}

async function b1AndB2(): Promise<void> {
  const files = Math.round(20_000 * scale);
  const dirs = Math.max(1, Math.round(500 * scale));
  // One copy of the tree per placement (B2 changes it), the same names, sizes and mtimes.
  const sources = placements.map((placement) => join(work, `b1-source-${placement}`));
  log(`B1: making ${files} files in ${dirs} directories`);
  const tree = makeSmallFileTree(sources[0]!, files, dirs, 1);
  for (const source of sources.slice(1)) copyTree(sources[0]!, source);
  const workload = `${files} files, ${(tree.bytes / 1e6).toFixed(0)} MB`;
  for (const rtt of [0, 10]) {
    for (const [p, placement] of placements.entries()) {
      peers.enter(placement);
      await b1Once(sources[p]!, rtt, `${workload}, ${rtt} ms RTT`);
    }
  }
  for (const source of sources) rmSync(source, { recursive: true, force: true });
}

/** B1 at one RTT in the current placement, and B2 after it at 10 ms. */
async function b1Once(source: string, rtt: number, workload: string): Promise<void> {
  const at = `${rtt}-${peers.placement}`;
  const offsiteRoot = join(work, `b1-offsite-${at}`);
  const receiver = await peers.offsiteReceiver(offsiteRoot);
  const offsite = await withProxy(receiver.port, rtt, (proxy) =>
    peers.offsitePush(source, proxy.port, receiver),
  );
  row({
    id: "B1",
    workload,
    peer: "offsite push",
    seconds: offsite.seconds,
    bytes: offsite.wire,
    note: cpuNote(offsite, offsite.content),
  });
  log(`B1 ${rtt} ms ${peers.placement}: offsite ${offsite.seconds.toFixed(2)} s`);

  const rsyncDest = join(work, `b1-rsync-${at}`);
  const daemon = await peers.rsyncDaemon(rsyncDest);
  const rsync = await withProxy(daemon.port, rtt, (proxy) => peers.rsyncPush(source, proxy.port));
  row({ id: "B1", workload, peer: "rsync (daemon)", seconds: rsync.seconds, bytes: rsync.sent });
  log(`B1 ${rtt} ms ${peers.placement}: rsync ${rsync.seconds.toFixed(2)} s`);

  const tarServer = await peers.baselineServer(["tar-serve", "--root", join(work, `b1-tar-${at}`)]);
  const tar = await withProxy(tarServer.port, rtt, async (proxy) => {
    settle();
    const started = performance.now();
    await peers.baselineClient(["tar-send", source, "--port", String(proxy.port)]);
    await tarServer.done;
    return (performance.now() - started) / 1000;
  });
  row({ id: "B1", workload, peer: "raw tar stream", seconds: tar });
  rmSync(join(work, `b1-tar-${at}`), { recursive: true, force: true });

  const perFileServer = await peers.baselineServer([
    "perfile-serve",
    "--root",
    join(work, `b1-perfile-${at}`),
    "--certs",
    join(certs, "receiver"),
  ]);
  const perFile = await withProxy(perFileServer.port, rtt, async (proxy) => {
    settle();
    const started = performance.now();
    await peers.baselineClient([
      "perfile-send",
      source,
      "--port",
      String(proxy.port),
      "--certs",
      peers.clientCerts,
    ]);
    await perFileServer.done;
    return (performance.now() - started) / 1000;
  });
  row({ id: "B1", workload, peer: "per-file request/ack (TLS)", seconds: perFile });
  rmSync(join(work, `b1-perfile-${at}`), { recursive: true, force: true });
  log(`B1 ${rtt} ms ${peers.placement}: tar ${tar.toFixed(2)} s, per-file ${perFile.toFixed(2)} s`);
  verdict(
    `B1 at ${rtt} ms: offsite is ${(perFile / offsite.seconds).toFixed(1)}× faster than per-file (goal ≥ 50× at 10 ms), ` +
      `${(rsync.seconds / offsite.seconds).toFixed(2)}× rsync's speed (goal > 1), ` +
      `${(tar / offsite.seconds).toFixed(2)}× the raw tar stream's speed (goal ≥ 0.5).`,
  );

  if (rtt === 10 && only.has("B2")) {
    const churn = churnSmallFileTree(source, 2);
    const b2 = `${churn.modified} modified, ${churn.added} added, ${churn.deleted} deleted (${(churn.changedBytes / 1e3).toFixed(0)} kB new content), 10 ms RTT`;
    const offsite2 = await withProxy(receiver.port, rtt, (proxy) =>
      peers.offsitePush(source, proxy.port, receiver),
    );
    row({
      id: "B2",
      workload: b2,
      peer: "offsite push",
      seconds: offsite2.seconds,
      bytes: offsite2.wire,
      note: cpuNote(offsite2),
    });
    const rsync2 = await withProxy(daemon.port, rtt, (proxy) => peers.rsyncPush(source, proxy.port));
    row({ id: "B2", workload: b2, peer: "rsync (daemon)", seconds: rsync2.seconds, bytes: rsync2.sent });
    verdict(
      `B2: offsite takes ${(offsite2.seconds / rsync2.seconds).toFixed(2)}× rsync's time (goal ≤ 0.5×); ` +
        `sends ${(offsite2.wire / 1e3).toFixed(0)} kB for ${(churn.changedBytes / 1e3).toFixed(0)} kB of new content ` +
        `(${(offsite2.wire / churn.changedBytes).toFixed(2)}×, goal ≤ 1.1× + metadata; rsync ${(rsync2.sent / 1e3).toFixed(0)} kB).`,
    );
  }
  await receiver.stop();
  daemon.stop();
  rmSync(offsiteRoot, { recursive: true, force: true });
  rmSync(rsyncDest, { recursive: true, force: true });
}

async function b3(): Promise<void> {
  const size = Math.round(1024 * 1024 * 1024 * scale);
  const source = join(work, "b3-source");
  mkdirSync(source, { recursive: true });
  log(`B3: a ${(size / 2 ** 20).toFixed(0)} MiB file`);
  makeLargeFile(join(source, "big.bin"), size);
  const workload = `${(size / 2 ** 20).toFixed(0)} MiB file, 100 scattered 4 KiB edits, 0 ms RTT`;
  // Each placement backs up the file as it is, edits it (its own seed) and measures the
  // edited file's push: the same workload on the same file.
  for (const [p, placement] of placements.entries()) {
    peers.enter(placement);
    const receiver = await peers.offsiteReceiver(join(work, "b3-offsite"));
    const daemon = await peers.rsyncDaemon(join(work, "b3-rsync"));
    await peers.offsitePush(source, receiver.port, receiver);
    await peers.rsyncPush(source, daemon.port);
    const edited = editLargeFile(join(source, "big.bin"), 100, 3 + p);
    const offsite = await peers.offsitePush(source, receiver.port, receiver);
    row({
      id: "B3",
      workload,
      peer: "offsite push",
      seconds: offsite.seconds,
      bytes: offsite.wire,
      note: cpuNote(offsite, size),
    });
    const rsync = await peers.rsyncPush(source, daemon.port);
    row({ id: "B3", workload, peer: "rsync (daemon, delta)", seconds: rsync.seconds, bytes: rsync.sent });
    log(`B3 ${placement}: offsite ${offsite.seconds.toFixed(2)} s, rsync ${rsync.seconds.toFixed(2)} s`);
    verdict(
      `B3: offsite sends ${((offsite.wire / size) * 100).toFixed(2)}% of the file (goal ≤ 1%; ${(edited / 1e3).toFixed(0)} kB edited), ` +
        `rsync ${((rsync.sent / size) * 100).toFixed(2)}%; time ${(offsite.seconds / rsync.seconds).toFixed(2)}× rsync's (goal ≤ 1).`,
    );
    await receiver.stop();
    daemon.stop();
    for (const dir of ["b3-offsite", "b3-rsync"]) rmSync(join(work, dir), { recursive: true, force: true });
  }
  rmSync(source, { recursive: true, force: true });
}

async function b4(): Promise<void> {
  const size = Math.round(1024 * 1024 * 1024 * scale);
  const source = join(work, "b4-source");
  mkdirSync(source, { recursive: true });
  log(`B4: four ${(size / 2 ** 20).toFixed(0)} MiB files`);
  const files = [0, 1, 2, 3].map((i) => join(source, `file-${i}.bin`));
  for (const file of files) makeLargeFile(file, size);
  const total = size * 4;
  const workload = `4 × ${(size / 2 ** 20).toFixed(0)} MiB, 0 ms RTT`;
  const stream = async (tls: boolean) => {
    const server = await peers.baselineServer([
      "raw-serve",
      "--root",
      join(work, "b4-raw"),
      ...(tls ? ["--tls", "--certs", join(certs, "receiver")] : []),
    ]);
    settle();
    const started = performance.now();
    await peers.baselineClient([
      "raw-send",
      ...files,
      "--port",
      String(server.port),
      ...(tls ? ["--tls", "--certs", peers.clientCerts] : []),
    ]);
    await server.done;
    rmSync(join(work, "b4-raw"), { recursive: true, force: true });
    return (performance.now() - started) / 1000;
  };
  const speed = (seconds: number) => `${(total / seconds / 1e6).toFixed(0)} MB/s`;
  for (const placement of placements) {
    peers.enter(placement);
    const receiver = await peers.offsiteReceiver(join(work, "b4-offsite"));
    const offsite = await peers.offsitePush(source, receiver.port, receiver);
    row({
      id: "B4",
      workload,
      peer: "offsite push",
      seconds: offsite.seconds,
      bytes: offsite.wire,
      note: `${speed(offsite.seconds)}; ${cpuNote(offsite, total)}`,
    });
    await receiver.stop();
    rmSync(join(work, "b4-offsite"), { recursive: true, force: true });
    const tcp = await stream(false);
    row({ id: "B4", workload, peer: "plain TCP stream to disk", seconds: tcp, note: speed(tcp) });
    const tls = await stream(true);
    row({
      id: "B4",
      workload,
      peer: "one TLS 1.3 AES-256-GCM stream to disk",
      seconds: tls,
      note: speed(tls),
    });
    log(`B4 ${placement}: offsite ${speed(offsite.seconds)}, TLS ${speed(tls)}`);
    verdict(
      `B4: offsite reaches ${(tls / offsite.seconds).toFixed(2)}× one TLS connection's throughput (goal ≥ 0.7×).`,
    );
  }
  rmSync(source, { recursive: true, force: true });
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const rsync = spawnSync("rsync", ["--version"]).stdout?.toString().split("\n")[0] ?? "rsync missing";
  return `${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}, Node ${process.version}, ${rsync}`;
}

async function b8(): Promise<void> {
  const count = Math.round(1_000_000 * scale);
  const source = join(work, "b8-source");
  log(`B8: making ${count} files`);
  makeManyFiles(source, count);
  // With the flags of the agent image's entrypoint (agent.Dockerfile). One scan per
  // process, as a push makes: a first process warms the kernel's caches, the second is
  // measured (two scans in one process would count the first's garbage in the peak).
  settle();
  const probeArgs = ["--max-semi-space-size=2", join(ROOT, "bench", "scanProbe.ts"), source, "1"];
  await timed(process.execPath, probeArgs);
  const probe = await timed(process.execPath, probeArgs);
  const scan = JSON.parse(probe.stdout) as { files: number; warmMs: number; maxRssMiB: number };
  rows.push({
    id: "B8",
    workload: `${count} files, warm cache`,
    peer: "offsite scan (node --max-semi-space-size=2, as in the image)",
    seconds: scan.warmMs / 1000,
    note: `${Math.round(scan.files / (scan.warmMs / 1000) / 1000)}k files/s, peak RSS ${scan.maxRssMiB.toFixed(0)} MiB`,
  });
  const empty = join(work, "b8-empty");
  mkdirSync(empty, { recursive: true });
  settle();
  const rsync = await timed("/usr/bin/time", ["-f", "%e %M", "rsync", "-an", `${source}/`, `${empty}/`]);
  const [seconds, kib] = rsync.stderr.trim().split("\n").at(-1)!.split(" ").map(Number);
  rows.push({
    id: "B8",
    workload: `${count} files, warm cache`,
    peer: "rsync file list (rsync -an)",
    seconds: seconds!,
    note: `${Math.round(count / seconds! / 1000)}k files/s, peak RSS ${(kib! / 1024).toFixed(0)} MiB`,
  });
  verdicts.push({
    text:
      `B8: offsite scans ${Math.round(scan.files / (scan.warmMs / 1000) / 1000)}k files/s (goal ≥ 100k/s) with a peak RSS of ` +
      `${scan.maxRssMiB.toFixed(0)} MiB (goal < 256 MiB); rsync's file list peaks at ${(kib! / 1024).toFixed(0)} MiB.`,
  });
  rmSync(source, { recursive: true, force: true });
}

const PLACES: Record<Placement, string> = {
  unpinned: "Unpinned: every process on any core, as the scheduler likes",
  pinned: "Pinned",
};

function pinnedHeading(): string {
  const relay = relayCore === "any" ? "on either core (--relay-core any)" : `on core ${relayCore}`;
  return (
    `Pinned with \`taskset\`: the sending side (offsite push, the rsync client, the tar sender, the per-file client, ` +
    `the stream sender) on core ${CORE.client}, the receiving side (offsite receive, the rsync daemon and what it forks, ` +
    `the tar receiver, the per-file server, the stream sinks) on core ${CORE.server}, the latency relay (this process) ${relay}`
  );
}

function table(of: Row[]): string {
  return [
    "| id | workload | peer | time (s) | bytes sent | note |",
    "| --- | --- | --- | ---: | ---: | --- |",
    ...of.map(
      (r) =>
        `| ${r.id} | ${r.workload} | ${r.peer} | ${r.seconds.toFixed(2)} | ${r.bytes === undefined ? "" : r.bytes.toLocaleString("en")} | ${r.note ?? ""} |`,
    ),
  ].join("\n");
}

try {
  log(`working in ${work}, scale ${scale}, placements ${placements.join(" and ")}`);
  await timed(process.execPath, [
    OFFSITE,
    "certs",
    "--out",
    certs,
    "--site",
    SITE,
    "--source",
    SOURCE,
    "--host",
    "localhost",
    "--host",
    "127.0.0.1",
    "--json",
  ]);
  if (only.has("B1") || only.has("B2")) await b1AndB2();
  if (only.has("B3")) await b3();
  if (only.has("B4")) await b4();
  const context = { peers, work, scale, only, placements, row, verdict };
  if (only.has("R1") || only.has("B2r")) await sourceTreeRows(context);
  if (only.has("R2")) await websiteRows(context);
  // B5 and B8 are measured once, unpinned: B8 is one process, B5 has its own harness.
  peers.enter("unpinned");
  if (only.has("B5")) {
    const b5 = await replicationLag({
      work,
      scale,
      machine: machine(),
      storage: values.storage ?? "the local disk",
      log,
    });
    rows.push(...b5.rows);
    verdicts.push(...b5.verdicts.map((text) => ({ text })));
  }
  if (only.has("B8")) await b8();
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const sections = (["pinned", "unpinned"] as const)
    .filter((placement) => placements.includes(placement))
    .map((placement) => {
      const heading = placement === "pinned" ? pinnedHeading() : PLACES.unpinned;
      const own = rows.filter((r) => (r.placement ?? "unpinned") === placement);
      return `## ${placement === "pinned" ? "Pinned" : "Unpinned"}\n\n${heading}.${placement === "unpinned" ? " B5 and B8 are measured once, here." : ""}\n\n${table(own)}`;
    });
  const goals = (["pinned", "unpinned"] as const)
    .filter((placement) => placements.includes(placement))
    .map((placement) => {
      const own = verdicts.filter((v) => (v.placement ?? "unpinned") === placement);
      return `${placement === "pinned" ? "Pinned" : "Unpinned"}:\n\n${own.map((v) => `- ${v.text}`).join("\n")}`;
    });
  const markdown =
    `# Benchmark results\n\nMeasured ${date} UTC on ${machine()}; scale ${scale}. Produced by \`npm run bench\`` +
    ` (bench/runBenchmarks.ts); every peer of a row group ran in the same run, through the same latency relay, ` +
    `each after a \`sync\` so that none pays for another's writeback; ` +
    `workloads and receivers on ${values.storage ?? "the local disk"}. ` +
    (placements.length === 2
      ? "Each row group ran unpinned and then pinned, one right after the other. "
      : `Only ${placements[0]} this time (${cannotPin ? `not pinning: ${cannotPin}` : `--pin ${pin}`}). `) +
    `Absolute times drift on this shared machine; ` +
    `the ratios are the result.\n\n${sections.join("\n\n")}\n\n` +
    `## Against the goals\n\n${goals.join("\n\n")}\n` +
    // Why a goal is missed is written by hand (profiles, not timings) and travels with every run.
    (existsSync(ANALYSIS) ? `\n${readFileSync(ANALYSIS, "utf8")}` : "");
  writeFileSync(join(ROOT, "bench", "RESULTS.md"), markdown);
  writeFileSync(
    join(ROOT, "bench", "results.json"),
    JSON.stringify({ date, machine: machine(), scale, placements, relayCore, rows, verdicts }, null, 2),
  );
  process.stdout.write(markdown);
} finally {
  peers.enter("unpinned");
  if (!values.dir) rmSync(work, { recursive: true, force: true });
}
