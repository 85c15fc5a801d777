/** The benchmark workloads of ../shared/notes/performance.md, generated from a seed. */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { prng } from "../test/agent/testSupport.ts";

export { prng };

/** A log-normal size around `median` bytes (Box–Muller), clipped to [1, 1 MiB]. */
function logNormalSize(random: () => number, median: number, sigma: number): number {
  const normal = Math.sqrt(-2 * Math.log(random() || 1e-12)) * Math.cos(2 * Math.PI * random());
  return Math.max(1, Math.min(1 << 20, Math.round(median * Math.exp(sigma * normal))));
}

/** B1: `files` files with log-normal sizes (median 7 KiB, σ 0.8: mean ≈ 9.6 KiB) in `dirs` directories. */
export function makeSmallFileTree(
  root: string,
  files: number,
  dirs: number,
  seed: number,
): { files: number; bytes: number } {
  const random = prng(seed);
  let bytes = 0;
  for (let d = 0; d < dirs; d++)
    mkdirSync(join(root, `d${Math.floor(d / 25)}`, `d${d}`), { recursive: true });
  for (let f = 0; f < files; f++) {
    const d = f % dirs;
    const size = logNormalSize(random, 7 * 1024, 0.8);
    writeFileSync(join(root, `d${Math.floor(d / 25)}`, `d${d}`, `f${f}.dat`), randomBytes(size));
    bytes += size;
  }
  return { files, bytes };
}

/** B2: modify 1% of the files, add 0.1%, delete 0.1%. Returns the bytes of new content. */
export function churnSmallFileTree(
  root: string,
  seed: number,
): { changedBytes: number; modified: number; added: number; deleted: number } {
  const random = prng(seed);
  const all = readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((p) => p.endsWith(".dat"))
    .sort();
  const pick = () => all[Math.floor(random() * all.length)]!;
  let changedBytes = 0;
  const modified = Math.round(all.length * 0.01);
  const touched = new Set<string>();
  while (touched.size < modified) touched.add(pick());
  for (const path of touched) {
    const size = statSync(join(root, path)).size;
    const content = readFileSync(join(root, path));
    randomBytes(Math.min(size, 512)).copy(content, 0); // an edit at the start of the file
    writeFileSync(join(root, path), content);
    changedBytes += Math.min(size, 512);
  }
  const added = Math.max(1, Math.round(all.length * 0.001));
  for (let i = 0; i < added; i++) {
    const size = logNormalSize(random, 7 * 1024, 0.8);
    writeFileSync(join(root, "d0", "d0", `added-${seed}-${i}.dat`), randomBytes(size));
    changedBytes += size;
  }
  const deleted = Math.max(1, Math.round(all.length * 0.001));
  let removed = 0;
  for (const path of all) {
    if (removed === deleted) break;
    if (touched.has(path)) continue;
    rmSync(join(root, path));
    removed++;
  }
  return { changedBytes, modified, added, deleted };
}

/** Writes `size` random bytes to `path` in 64 MiB pieces. */
export function makeLargeFile(path: string, size: number): void {
  const piece = 64 * 1024 * 1024;
  writeFileSync(path, "");
  for (let done = 0; done < size; done += piece) {
    writeFileSync(path, randomBytes(Math.min(piece, size - done)), { flag: "a" });
  }
}

/** B3: `edits` 4 KiB edits at random offsets, in place. */
export function editLargeFile(path: string, edits: number, seed: number): number {
  const random = prng(seed);
  const size = statSync(path).size;
  const content = readFileSync(path);
  for (let e = 0; e < edits; e++) randomBytes(4096).copy(content, Math.floor(random() * (size - 4096)));
  writeFileSync(path, content);
  return edits * 4096;
}

/** B8: `count` empty files, 1,000 per directory. */
export function makeManyFiles(root: string, count: number): void {
  for (let d = 0; d * 1000 < count; d++) {
    const dir = join(root, `d${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 1000 && d * 1000 + f < count; f++) writeFileSync(join(dir, `f${f}`), "");
  }
}
