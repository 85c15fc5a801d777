/** B8's probe: scans a tree as `offsite push` does (ROUNDS times, default 1) and reports files, time and peak RSS. */
import { scanTree } from "../agent/source/scanTree.ts";
import { NO_FILTERS } from "../agent/source/filters.ts";

const root = process.argv[2]!;
const rounds = Number(process.argv[3] ?? 1);
const times: number[] = [];
let files = 0;
for (let i = 0; i < rounds; i++) {
  const started = performance.now();
  files = scanTree(root, NO_FILTERS).entries.length;
  times.push(performance.now() - started);
}
console.log(
  JSON.stringify({
    files,
    coldMs: times[0],
    warmMs: times.at(-1),
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  }),
);
