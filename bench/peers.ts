/**
 * The processes every benchmark runs (offsite push and receive, rsync's client and daemon,
 * the baselines of baselinePeers.ts) and the cores they run on.
 *
 * Two placements. *Unpinned*: every process may run on every core the run was given, as
 * the scheduler likes; the relay too. *Pinned* (`taskset`): the sending side of every peer
 * (offsite push, the rsync client, the tar sender, the per-file client, the stream sender)
 * on core 0, the receiving side (offsite receive, the rsync daemon and the processes it
 * forks, the tar receiver, the per-file server, the stream sinks) on core 1, and this
 * process, which is the latency relay, on the relay's core (1, with the receivers, unless
 * --relay-core says otherwise; README.md says why). A process started through `taskset -c N` passes N to
 * everything it forks (rsync's receiver and generator, tar under the Node baselines);
 * `offsite receive`, started by the tests' helper, is moved with `taskset -a -p`, all of
 * its threads, once it listens (threads started later inherit the main thread's mask).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { startLatencyProxy, type LatencyProxy } from "./latencyProxy.ts";
import { startReceiverProcess, type ReceiverProcess } from "../test/agent/agentProcesses.ts";
import { freePort } from "../test/cluster/controlPlane.ts";

const ROOT = resolve(import.meta.dirname, "..");
export const OFFSITE = join(ROOT, "agent", "main.mjs");
export const PEERS = join(ROOT, "bench", "baselinePeers.ts");

export type Placement = "unpinned" | "pinned";
export type Side = "client" | "server";
export const CORE: Record<Side, string> = { client: "0", server: "1" };

export interface Row {
  id: string;
  workload: string;
  peer: string;
  seconds: number;
  bytes?: number;
  note?: string;
  /** Absent for the benchmarks measured once, unpinned (B5, B8). */
  placement?: Placement;
}

/** The CPU list this process may run on now, as taskset prints it ("0,1", "0-3"). */
function affinityOf(pid: number): string {
  const out = spawnSync("taskset", ["-c", "-p", String(pid)], { encoding: "utf8" });
  const list = /list:\s*(\S+)/.exec(out.stdout ?? "")?.[1];
  if (out.status !== 0 || !list) throw new Error(`taskset -c -p ${pid}: ${out.stderr}`);
  return list;
}

/** Puts every thread of `pid` on `cores`. */
function setAffinity(pid: number, cores: string): void {
  const out = spawnSync("taskset", ["-a", "-c", "-p", cores, String(pid)], { encoding: "utf8" });
  if (out.status !== 0) throw new Error(`taskset -a -c -p ${cores} ${pid}: ${out.stderr}`);
}

/** Why pinning cannot run here, or undefined when it can. */
export function pinningUnavailable(): string | undefined {
  if (spawnSync("taskset", ["--version"]).status !== 0) return "taskset (util-linux) is missing";
  if (cpus().length < 2) return `this machine has ${cpus().length} core`;
  return undefined;
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/**
 * Flushes dirty pages before a measurement, so no peer pays for the writeback of the
 * data the previous one wrote (on this machine that alone can triple a small-file time).
 */
export function settle(): void {
  spawnSync("sync");
}

export const TICKS = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim()) || 100;

/** CPU seconds of `pid` and of every child it has waited for (utime+stime+cutime+cstime). */
export function treeCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields[0] is field 3 (state)
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) / TICKS;
}

/**
 * `command args` run by bash, which then prints its children's CPU time (`times`) on
 * stderr: a short-lived process's CPU without /usr/bin/time. Read it with `childCpuSeconds`.
 */
function withCpuTimes(command: string, args: string[]): [string, string[]] {
  return ["bash", ["-c", '"$@"; code=$?; times >&2; exit $code', "cpu", command, ...args]];
}

/** user + system seconds from the last line `times` printed ("0m3.050s 0m0.800s"). */
function childCpuSeconds(stderr: string): number {
  const line = stderr.trim().split("\n").at(-1) ?? "";
  const times = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (times.length !== 2) throw new Error(`no CPU times in the pusher's stderr: ${line}`);
  return times[0]! + times[1]!;
}

/** Runs a command to completion; returns its wall time. */
export async function timed(
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

export interface OffsitePush {
  seconds: number;
  wire: number;
  content: number;
  /** CPU seconds on each end, process start included. */
  cpu: { push: number; receive: number };
}

/**
 * "CPU push 3.1 s, receive 4.0 s": each end's CPU; with `bytes` (the workload's size), per
 * GiB of it too: "(2.9, 3.7 s/GiB)".
 */
export function cpuNote(push: OffsitePush, bytes?: number): string {
  const { cpu } = push;
  const note = `CPU push ${cpu.push.toFixed(2)} s, receive ${cpu.receive.toFixed(2)} s`;
  if (bytes === undefined) return note;
  const perGiB = (seconds: number) => (seconds / (bytes / 2 ** 30)).toFixed(1);
  return `${note} (${perGiB(cpu.push)}, ${perGiB(cpu.receive)} s/GiB)`;
}

export interface RsyncDaemon {
  port: number;
  stop(): void;
}

/**
 * One placement's peers. `enter` moves this process (the relay) for the placement; every
 * other process is started on its side's core through `command`.
 */
export class Peers {
  placement: Placement = "unpinned";
  private readonly initialAffinity: string | undefined;

  private readonly work: string;
  private readonly certs: string;
  readonly clientCerts: string;
  /** "any": the relay keeps the run's whole CPU list when pinned. */
  private readonly relayCore: string;

  constructor(work: string, certs: string, clientCerts: string, relayCore: string) {
    this.work = work;
    this.certs = certs;
    this.clientCerts = clientCerts;
    this.relayCore = relayCore;
    this.initialAffinity = pinningUnavailable() ? undefined : affinityOf(process.pid);
  }

  enter(placement: Placement): void {
    this.placement = placement;
    if (this.initialAffinity === undefined) return;
    const relay = placement === "pinned" && this.relayCore !== "any" ? this.relayCore : this.initialAffinity;
    setAffinity(process.pid, relay);
  }

  /** `command args` on `side`'s core when pinned, as it is otherwise. */
  command(side: Side, command: string, args: string[]): [string, string[]] {
    return this.placement === "pinned" ? ["taskset", ["-c", CORE[side], command, ...args]] : [command, args];
  }

  run(side: Side, command: string, args: string[]): ReturnType<typeof timed> {
    return timed(...this.command(side, command, args));
  }

  /** Starts a baseline server (baselinePeers.ts) on the receiving side; resolves with its port. */
  async baselineServer(args: string[]): Promise<{ port: number; done: Promise<void>; child: ChildProcess }> {
    const [command, argv] = this.command("server", process.execPath, [PEERS, ...args]);
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "inherit"] });
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

  /** A baseline's sender (baselinePeers.ts) on the sending side, to completion. */
  baselineClient(args: string[]): ReturnType<typeof timed> {
    return this.run("client", process.execPath, [PEERS, ...args]);
  }

  async offsiteReceiver(root: string): Promise<ReceiverProcess> {
    const receiver = await startReceiverProcess(root, join(this.certs, "receiver"), ["--keep-last", "100"]);
    if (this.placement === "pinned") setAffinity(receiver.child.pid!, CORE.server);
    return receiver;
  }

  /**
   * One push to `port` (the receiver's, or a relay's in front of it): its wall time, the
   * bytes, and the CPU seconds of each end (the pusher's from bash's `times`, the
   * receiver's from /proc before and after).
   */
  async offsitePush(source: string, port: number, receiver: ReceiverProcess): Promise<OffsitePush> {
    settle();
    const receiverBefore = treeCpuSeconds(receiver.child.pid!);
    const run = await this.run(
      "client",
      ...withCpuTimes(process.execPath, [
        OFFSITE,
        "push",
        source,
        "--to",
        `127.0.0.1:${port}`,
        "--certs",
        this.clientCerts,
        "--json",
      ]),
    );
    const report = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
      bytes: { wire: number; content: number };
    };
    return {
      seconds: run.seconds,
      wire: report.bytes.wire,
      content: report.bytes.content,
      cpu: {
        push: childCpuSeconds(run.stderr),
        receive: treeCpuSeconds(receiver.child.pid!) - receiverBefore,
      },
    };
  }

  /** An rsync daemon whose module `bench` is `dest`, on the receiving side. */
  async rsyncDaemon(dest: string): Promise<RsyncDaemon> {
    mkdirSync(dest, { recursive: true });
    const port = await freePort();
    const conf = join(this.work, `rsyncd-${port}.conf`);
    writeFileSync(
      conf,
      `uid = root\ngid = root\nuse chroot = false\n[bench]\n  path = ${dest}\n  read only = false\n`,
    );
    const [command, args] = this.command("server", "rsync", [
      "--daemon",
      "--no-detach",
      `--config=${conf}`,
      `--port=${port}`,
      "--address=127.0.0.1",
    ]);
    const child = spawn(command, args, { stdio: "ignore" });
    await new Promise((done) => setTimeout(done, 500));
    return { port, stop: () => child.kill() };
  }

  /**
   * `rsync -a --delete` of `source` into the daemon's `path` (a directory of its module),
   * with `extra` flags (`--link-dest=/v1`: a daemon resolves an absolute one in its module).
   */
  async rsyncPush(
    source: string,
    port: number,
    path = "",
    extra: string[] = [],
  ): Promise<{ seconds: number; sent: number }> {
    settle();
    const run = await this.run("client", "rsync", [
      "-a",
      "--delete",
      "--stats",
      ...extra,
      `${source}/`,
      `rsync://127.0.0.1:${port}/bench/${path ? `${path}/` : ""}`,
    ]);
    const sent = Number(/Total bytes sent: ([\d,]+)/.exec(run.stdout)?.[1]?.replaceAll(",", "") ?? NaN);
    return { seconds: run.seconds, sent };
  }
}

export async function withProxy<T>(
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
