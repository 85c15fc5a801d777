/**
 * `npm run bench`: B1–B5 and B8 of ../shared/notes/performance.md, each side by side with
 * its baselines in the same run, on loopback through the same latency relay. Writes
 * bench/RESULTS.md (a table with the machine and the date) and bench/results.json.
 * One file so that every benchmark and its baselines share one run, one relay and one
 * table (past ~400 lines for that reason); B5 (replication lag) is in replicationLag.ts.
 *
 *   npm run bench                     everything at the sizes of the performance notes
 *   npm run bench -- --only B1,B3     some of them
 *   npm run bench -- --scale 0.05     smaller workloads (a smoke run; ratios are noisier)
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { cpus, totalmem, release, tmpdir } from "node:os";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startLatencyProxy, type LatencyProxy } from "./latencyProxy.ts";
import { replicationLag } from "./replicationLag.ts";
import {
  churnSmallFileTree,
  editLargeFile,
  makeLargeFile,
  makeManyFiles,
  makeSmallFileTree,
} from "./workloads.ts";
import { startReceiverProcess, type ReceiverProcess } from "../test/agent/agentProcesses.ts";
import { freePort } from "../test/cluster/controlPlane.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OFFSITE = join(ROOT, "agent", "main.mjs");
const PEERS = join(ROOT, "bench", "baselinePeers.ts");
const ANALYSIS = join(ROOT, "bench", "ANALYSIS.md");
const SITE = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const SOURCE = "a1b2c3d4-e5f6-4789-8abc-def012345678";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    scale: { type: "string" },
    dir: { type: "string" },
    storage: { type: "string" },
  },
});
const scale = Number(values.scale ?? 1);
const only = new Set((values.only ?? "B1,B2,B3,B4,B5,B8").split(","));
const work = values.dir ? resolve(values.dir) : mkdtempSync(join(tmpdir(), "offsite-bench-"));
mkdirSync(work, { recursive: true });

interface Row {
  id: string;
  workload: string;
  peer: string;
  seconds: number;
  bytes?: number;
  note?: string;
}
const rows: Row[] = [];
const verdicts: string[] = [];

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/**
 * Flushes dirty pages before a measurement, so no peer pays for the writeback of the
 * data the previous one wrote (on this machine that alone can triple a small-file time).
 */
function settle(): void {
  spawnSync("sync");
}

/** Runs a command to completion; returns its wall time. */
async function timed(
  command: string,
  args: string[],
  cwd?: string,
): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const started = performance.now();
  const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((done) => child.on("close", done));
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  return { seconds: (performance.now() - started) / 1000, stdout, stderr };
}

/** Starts a baseline server; resolves with its port and a promise of its exit. */
async function baselineServer(
  args: string[],
): Promise<{ port: number; done: Promise<void>; child: ChildProcess }> {
  const child = spawn(process.execPath, [PEERS, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let buffered = "";
  const port = await new Promise<number>((done) =>
    child.stdout.on("data", (b: Buffer) => {
      buffered += b.toString();
      const match = /\{"port":(\d+)\}/.exec(buffered);
      if (match) done(Number(match[1]));
    }),
  );
  return { port, child, done: new Promise((done) => child.on("close", () => done())) };
}

async function withProxy<T>(
  port: number,
  rtt: number,
  body: (proxy: LatencyProxy) => Promise<T>,
): Promise<T> {
  const proxy = await startLatencyProxy(port, rtt);
  try {
    return await body(proxy);
  } finally {
    await proxy.close();
  }
}

const certs = join(work, "certs");
const clientCerts = join(certs, `source-${SOURCE}`);

async function offsiteReceiver(root: string): Promise<ReceiverProcess> {
  return startReceiverProcess(root, join(certs, "receiver"), ["--keep-last", "100"]);
}

async function offsitePush(
  source: string,
  port: number,
): Promise<{ seconds: number; wire: number; content: number }> {
  settle();
  const run = await timed(process.execPath, [
    OFFSITE,
    "push",
    source,
    "--to",
    `127.0.0.1:${port}`,
    "--certs",
    clientCerts,
    "--json",
  ]);
  const report = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
    bytes: { wire: number; content: number };
  };
  return { seconds: run.seconds, wire: report.bytes.wire, content: report.bytes.content };
}

interface RsyncDaemon {
  port: number;
  stop(): void;
}
async function rsyncDaemon(dest: string): Promise<RsyncDaemon> {
  mkdirSync(dest, { recursive: true });
  const port = await freePort();
  const conf = join(work, `rsyncd-${port}.conf`);
  writeFileSync(
    conf,
    `uid = root\ngid = root\nuse chroot = false\n[bench]\n  path = ${dest}\n  read only = false\n`,
  );
  const child = spawn(
    "rsync",
    ["--daemon", "--no-detach", `--config=${conf}`, `--port=${port}`, "--address=127.0.0.1"],
    {
      stdio: "ignore",
    },
  );
  await new Promise((done) => setTimeout(done, 500));
  return { port, stop: () => child.kill() };
}
async function rsyncPush(source: string, port: number): Promise<{ seconds: number; sent: number }> {
  settle();
  const run = await timed("rsync", [
    "-a",
    "--delete",
    "--stats",
    `${source}/`,
    `rsync://127.0.0.1:${port}/bench/`,
  ]);
  const sent = Number(/Total bytes sent: ([\d,]+)/.exec(run.stdout)?.[1]?.replaceAll(",", "") ?? NaN);
  return { seconds: run.seconds, sent };
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const rsync = spawnSync("rsync", ["--version"]).stdout?.toString().split("\n")[0] ?? "rsync missing";
  return `${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}, Node ${process.version}, ${rsync}`;
}

async function b1AndB2(): Promise<void> {
  const files = Math.round(20_000 * scale);
  const dirs = Math.max(1, Math.round(500 * scale));
  const source = join(work, "b1-source");
  log(`B1: making ${files} files in ${dirs} directories`);
  const tree = makeSmallFileTree(source, files, dirs, 1);
  const workload = `${files} files, ${(tree.bytes / 1e6).toFixed(0)} MB`;
  for (const rtt of [0, 10]) {
    const offsiteRoot = join(work, `b1-offsite-${rtt}`);
    const receiver = await offsiteReceiver(offsiteRoot);
    const offsite = await withProxy(receiver.port, rtt, (proxy) => offsitePush(source, proxy.port));
    rows.push({
      id: "B1",
      workload: `${workload}, ${rtt} ms RTT`,
      peer: "offsite push",
      seconds: offsite.seconds,
      bytes: offsite.wire,
    });
    log(`B1 ${rtt} ms: offsite ${offsite.seconds.toFixed(2)} s`);

    const rsyncDest = join(work, `b1-rsync-${rtt}`);
    const daemon = await rsyncDaemon(rsyncDest);
    const rsync = await withProxy(daemon.port, rtt, (proxy) => rsyncPush(source, proxy.port));
    rows.push({
      id: "B1",
      workload: `${workload}, ${rtt} ms RTT`,
      peer: "rsync (daemon)",
      seconds: rsync.seconds,
      bytes: rsync.sent,
    });
    log(`B1 ${rtt} ms: rsync ${rsync.seconds.toFixed(2)} s`);

    const tarServer = await baselineServer(["tar-serve", "--root", join(work, `b1-tar-${rtt}`)]);
    const tar = await withProxy(tarServer.port, rtt, async (proxy) => {
      settle();
      const started = performance.now();
      await timed(process.execPath, [PEERS, "tar-send", source, "--port", String(proxy.port)]);
      await tarServer.done;
      return (performance.now() - started) / 1000;
    });
    rows.push({ id: "B1", workload: `${workload}, ${rtt} ms RTT`, peer: "raw tar stream", seconds: tar });
    rmSync(join(work, `b1-tar-${rtt}`), { recursive: true, force: true });

    const perFileServer = await baselineServer([
      "perfile-serve",
      "--root",
      join(work, `b1-perfile-${rtt}`),
      "--certs",
      join(certs, "receiver"),
    ]);
    const perFile = await withProxy(perFileServer.port, rtt, async (proxy) => {
      settle();
      const started = performance.now();
      await timed(process.execPath, [
        PEERS,
        "perfile-send",
        source,
        "--port",
        String(proxy.port),
        "--certs",
        clientCerts,
      ]);
      await perFileServer.done;
      return (performance.now() - started) / 1000;
    });
    rows.push({
      id: "B1",
      workload: `${workload}, ${rtt} ms RTT`,
      peer: "per-file request/ack (TLS)",
      seconds: perFile,
    });
    rmSync(join(work, `b1-perfile-${rtt}`), { recursive: true, force: true });
    log(`B1 ${rtt} ms: tar ${tar.toFixed(2)} s, per-file ${perFile.toFixed(2)} s`);
    verdicts.push(
      `B1 at ${rtt} ms: offsite is ${(perFile / offsite.seconds).toFixed(1)}× faster than per-file (goal ≥ 50× at 10 ms), ` +
        `${(rsync.seconds / offsite.seconds).toFixed(2)}× rsync's speed (goal > 1), ` +
        `${(tar / offsite.seconds).toFixed(2)}× the raw tar stream's speed (goal ≥ 0.5).`,
    );

    if (rtt === 10 && only.has("B2")) {
      const churn = churnSmallFileTree(source, 2);
      const b2 = `${churn.modified} modified, ${churn.added} added, ${churn.deleted} deleted (${(churn.changedBytes / 1e3).toFixed(0)} kB new content), 10 ms RTT`;
      const offsite2 = await withProxy(receiver.port, rtt, (proxy) => offsitePush(source, proxy.port));
      rows.push({
        id: "B2",
        workload: b2,
        peer: "offsite push",
        seconds: offsite2.seconds,
        bytes: offsite2.wire,
      });
      const rsync2 = await withProxy(daemon.port, rtt, (proxy) => rsyncPush(source, proxy.port));
      rows.push({
        id: "B2",
        workload: b2,
        peer: "rsync (daemon)",
        seconds: rsync2.seconds,
        bytes: rsync2.sent,
      });
      verdicts.push(
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
  rmSync(source, { recursive: true, force: true });
}

async function b3(): Promise<void> {
  const size = Math.round(1024 * 1024 * 1024 * scale);
  const source = join(work, "b3-source");
  mkdirSync(source, { recursive: true });
  log(`B3: a ${(size / 2 ** 20).toFixed(0)} MiB file`);
  makeLargeFile(join(source, "big.bin"), size);
  const receiver = await offsiteReceiver(join(work, "b3-offsite"));
  const daemon = await rsyncDaemon(join(work, "b3-rsync"));
  await offsitePush(source, receiver.port);
  await rsyncPush(source, daemon.port);
  const edited = editLargeFile(join(source, "big.bin"), 100, 3);
  const workload = `${(size / 2 ** 20).toFixed(0)} MiB file, 100 scattered 4 KiB edits, 0 ms RTT`;
  const offsite = await offsitePush(source, receiver.port);
  rows.push({ id: "B3", workload, peer: "offsite push", seconds: offsite.seconds, bytes: offsite.wire });
  const rsync = await rsyncPush(source, daemon.port);
  rows.push({ id: "B3", workload, peer: "rsync (daemon, delta)", seconds: rsync.seconds, bytes: rsync.sent });
  verdicts.push(
    `B3: offsite sends ${((offsite.wire / size) * 100).toFixed(2)}% of the file (goal ≤ 1%; ${(edited / 1e3).toFixed(0)} kB edited), ` +
      `rsync ${((rsync.sent / size) * 100).toFixed(2)}%; time ${(offsite.seconds / rsync.seconds).toFixed(2)}× rsync's (goal ≤ 1).`,
  );
  await receiver.stop();
  daemon.stop();
  for (const dir of ["b3-source", "b3-offsite", "b3-rsync"])
    rmSync(join(work, dir), { recursive: true, force: true });
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
  const receiver = await offsiteReceiver(join(work, "b4-offsite"));
  const offsite = await offsitePush(source, receiver.port);
  rows.push({
    id: "B4",
    workload,
    peer: "offsite push",
    seconds: offsite.seconds,
    bytes: offsite.wire,
    note: `${(total / offsite.seconds / 1e6).toFixed(0)} MB/s`,
  });
  await receiver.stop();
  rmSync(join(work, "b4-offsite"), { recursive: true, force: true });
  const stream = async (tls: boolean) => {
    const server = await baselineServer([
      "raw-serve",
      "--root",
      join(work, "b4-raw"),
      ...(tls ? ["--tls", "--certs", join(certs, "receiver")] : []),
    ]);
    settle();
    const started = performance.now();
    await timed(process.execPath, [
      PEERS,
      "raw-send",
      ...files,
      "--port",
      String(server.port),
      ...(tls ? ["--tls", "--certs", clientCerts] : []),
    ]);
    await server.done;
    rmSync(join(work, "b4-raw"), { recursive: true, force: true });
    return (performance.now() - started) / 1000;
  };
  const tcp = await stream(false);
  rows.push({
    id: "B4",
    workload,
    peer: "plain TCP stream to disk",
    seconds: tcp,
    note: `${(total / tcp / 1e6).toFixed(0)} MB/s`,
  });
  const tls = await stream(true);
  rows.push({
    id: "B4",
    workload,
    peer: "one TLS 1.3 AES-256-GCM stream to disk",
    seconds: tls,
    note: `${(total / tls / 1e6).toFixed(0)} MB/s`,
  });
  verdicts.push(
    `B4: offsite reaches ${(tls / offsite.seconds).toFixed(2)}× one TLS connection's throughput (goal ≥ 0.7×).`,
  );
  rmSync(source, { recursive: true, force: true });
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
  verdicts.push(
    `B8: offsite scans ${Math.round(scan.files / (scan.warmMs / 1000) / 1000)}k files/s (goal ≥ 100k/s) with a peak RSS of ` +
      `${scan.maxRssMiB.toFixed(0)} MiB (goal < 256 MiB); rsync's file list peaks at ${(kib! / 1024).toFixed(0)} MiB.`,
  );
  rmSync(source, { recursive: true, force: true });
}

try {
  log(`working in ${work}, scale ${scale}`);
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
  if (only.has("B5")) {
    const b5 = await replicationLag({
      work,
      scale,
      machine: machine(),
      storage: values.storage ?? "the local disk",
      log,
    });
    rows.push(...b5.rows);
    verdicts.push(...b5.verdicts);
  }
  if (only.has("B8")) await b8();
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const table = [
    "| id | workload | peer | time (s) | bytes sent | note |",
    "| --- | --- | --- | ---: | ---: | --- |",
    ...rows.map(
      (r) =>
        `| ${r.id} | ${r.workload} | ${r.peer} | ${r.seconds.toFixed(2)} | ${r.bytes === undefined ? "" : r.bytes.toLocaleString("en")} | ${r.note ?? ""} |`,
    ),
  ].join("\n");
  const markdown =
    `# Benchmark results\n\nMeasured ${date} UTC on ${machine()}; scale ${scale}. Produced by \`npm run bench\`` +
    ` (bench/runBenchmarks.ts); every peer of a row group ran in the same run, through the same latency relay, ` +
    `each after a \`sync\` so that none pays for another's writeback; ` +
    `workloads and receivers on ${values.storage ?? "the local disk"}. Absolute times drift on this shared machine; ` +
    `the ratios are the result.\n\n${table}\n\n` +
    `## Against the goals\n\n${verdicts.map((v) => `- ${v}`).join("\n")}\n` +
    // Why a goal is missed is written by hand (profiles, not timings) and travels with every run.
    (existsSync(ANALYSIS) ? `\n${readFileSync(ANALYSIS, "utf8")}` : "");
  writeFileSync(join(ROOT, "bench", "RESULTS.md"), markdown);
  writeFileSync(
    join(ROOT, "bench", "results.json"),
    JSON.stringify({ date, machine: machine(), scale, rows, verdicts }, null, 2),
  );
  process.stdout.write(markdown);
} finally {
  if (!values.dir) rmSync(work, { recursive: true, force: true });
}
