/**
 * A child process the test harness owns: output goes to a log file (shown when startup
 * fails), and every live process is killed when the test process exits for any reason,
 * so a failing or crashing test never leaves etcd or an API server behind.
 *
 * Each child gets a process group of its own, so a signal aimed at the test's group
 * (Ctrl-C, a CI runner's SIGTERM) reaches the test first and the harness stops the
 * children in order, instead of etcd dying under a still-running API server. The cost:
 * a test process killed with SIGKILL cannot clean up, and its children are orphaned.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, readFileSync, rmSync } from "node:fs";

const live = new Set<ChildProcess>();
const ownedDirectories = new Set<string>();

/** Removes `dir` when the test process exits, unless released first. */
export function removeOnExit(dir: string): void {
  ownedDirectories.add(dir);
}

export function releaseOnExit(dir: string): void {
  ownedDirectories.delete(dir);
}

function removeDirectories(): void {
  if (process.env.OFFSITE_KEEP_TEST_CLUSTER) return;
  for (const dir of ownedDirectories) rmSync(dir, { recursive: true, force: true });
  ownedDirectories.clear();
}

// 'exit' handlers must be synchronous: SIGKILL and rmSync are what fits.
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
  removeDirectories();
});

// On a signal there is time to stop politely: SIGTERM, a short grace, then SIGKILL.
// Signals keep being handled while that runs (a test runner forwards the one its group
// got, a person presses Ctrl-C twice); a second one kills everything at once.
let shuttingDown = false;
for (const [signal, number] of [
  ["SIGINT", 2],
  ["SIGTERM", 15],
  ["SIGHUP", 1],
] as const) {
  process.on(signal, () => {
    if (shuttingDown) process.exit(128 + number); // the exit handler SIGKILLs what is left
    shuttingDown = true;
    const children = [...live];
    for (const child of children) child.kill("SIGTERM");
    const exited = children.map((child) => new Promise((resolve) => child.once("exit", resolve)));
    const grace = new Promise((resolve) => setTimeout(resolve, 3000).unref());
    void Promise.race([Promise.all(exited), grace]).then(() => process.exit(128 + number));
  });
}

export class ManagedProcess {
  readonly name: string;
  readonly logPath: string;
  private readonly child: ChildProcess;
  private exitCode: number | null | undefined;
  private readonly exited: Promise<void>;

  constructor(
    name: string,
    command: string,
    args: string[],
    logPath: string,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.name = name;
    this.logPath = logPath;
    const log = openSync(logPath, "a");
    this.child = spawn(command, args, { stdio: ["ignore", log, log], env, detached: true });
    closeSync(log);
    live.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code) => {
        this.exitCode = code;
        live.delete(this.child);
        resolve();
      });
      this.child.once("error", (error) => {
        this.exitCode = -1;
        live.delete(this.child);
        process.stderr.write(`[test-cluster] ${name} failed to start: ${error.message}\n`);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** The last lines of the process's output, for error messages. */
  tail(lines = 30): string {
    try {
      return readFileSync(this.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no output)";
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
