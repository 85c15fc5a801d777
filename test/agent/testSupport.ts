/** Small helpers the agent's end-to-end tests and the benchmarks share. */
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { fsPath, nameFromBytes } from "../../agent/protocol/byteNames.ts";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Random bytes the content firewall never takes for an executable or a script. Plain random
 * data starts with `MZ`, `#!` or `<%` about once in 20,000 files, and is then stopped, as it
 * should be: a test that expects every file to arrive would fail that often. The first byte
 * is 0xff, as in a JPEG.
 */
export function inertRandomBytes(size: number): Buffer {
  const bytes = randomBytes(size);
  if (size > 0) bytes[0] = 0xff;
  return bytes;
}

/** A seeded xorshift32 generator in [0, 1), so a failing run or a workload can be replayed. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/**
 * Every entry under `dir` for comparing trees: `path/` → "dir", a file → its content
 * (base64), a symlink → "-> target". Names and targets are read as bytes, in the agent's
 * lossless form (byteNames.ts), so two trees compare equal only when their names do.
 */
export function treeSnapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (prefix: string) => {
    const at = prefix ? join(dir, prefix) : dir;
    for (const raw of readdirSync(fsPath(at), { encoding: "buffer" })) {
      const name = nameFromBytes(raw);
      const path = prefix ? `${prefix}/${name}` : name;
      const absolute = fsPath(join(dir, path));
      const stat = lstatSync(absolute);
      if (stat.isDirectory()) {
        out[`${path}/`] = "dir";
        walk(path);
      } else if (stat.isSymbolicLink())
        out[path] = `-> ${nameFromBytes(readlinkSync(absolute, { encoding: "buffer" }))}`;
      else out[path] = readFileSync(absolute).toString("base64");
    }
  };
  walk("");
  return out;
}
