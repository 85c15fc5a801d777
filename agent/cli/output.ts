/**
 * How the CLI talks: a one-line progress bar on stderr when it is a terminal, JSON lines
 * on stderr otherwise (for logs and for programs), and the final report on stdout — JSON
 * with --json or when stdout is not a terminal, a short summary for people otherwise.
 */
export interface Output {
  progress(done: number, total: number, bytesDone: number, bytesTotal: number): void;
  event(event: Record<string, unknown>): void;
  result(report: object, summary: string): void;
  error(message: string): void;
}

export function createOutput(json: boolean): Output {
  const interactive = process.stderr.isTTY && !json;
  const asJson = json || !process.stdout.isTTY;
  return {
    progress(done, total, bytesDone, bytesTotal) {
      if (!interactive) {
        process.stderr.write(
          JSON.stringify({
            event: "progress",
            files: done,
            of: total,
            bytes: bytesDone,
            ofBytes: bytesTotal,
          }) + "\n",
        );
        return;
      }
      const width = 30;
      const ratio = bytesTotal > 0 ? bytesDone / bytesTotal : total > 0 ? done / total : 1;
      const filled = Math.round(ratio * width);
      process.stderr.write(
        `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%  ` +
          `${done}/${total} files  ${formatBytes(bytesDone)}/${formatBytes(bytesTotal)}   `,
      );
      if (done === total) process.stderr.write("\n");
    },
    event(event) {
      process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...event }) + "\n");
    },
    result(report, summary) {
      process.stdout.write(asJson ? JSON.stringify(report) + "\n" : summary + "\n");
    },
    error(message) {
      if (asJson) process.stderr.write(JSON.stringify({ event: "error", message }) + "\n");
      else process.stderr.write(`offsite: ${message}\n`);
    },
  };
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
