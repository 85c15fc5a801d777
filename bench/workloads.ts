/** The benchmark workloads of ../shared/notes/performance.md, generated from a seed. */
import { type KeyObject, createCipheriv, createHash, createSecretKey, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { extname, join } from "node:path";
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

/*
 * Realistic trees (R1, R2, B2r): seeded and deterministic, names, sizes and content alike
 * (content is an AES-256-CTR keystream keyed by the seed and the file's index, text files
 * mapped onto printable characters), so two runs, or two copies, are the same tree.
 *
 * Where the distributions come from. Measured on this machine on 2026-11-23 with a walk
 * of lstat sizes and path depths (depth = components of the file's path below the root):
 *   - this repository's node_modules: 12,853 files in 1,584 directories (8 files per
 *     directory), sizes p10 296 B, p50 1.7 KB, p90 29 KB, p99 161 KB, max 127 MB; a
 *     log-normal fit has a median of 2.3 KB and σ 1.8; the 15 files over 1 MiB (0.12%)
 *     hold 67% of the bytes; depth p10 3, p50 6, p90 12; .js 30%, .ts 24%, .h 22%,
 *     .map 11%, .md and .json 2–3% each.
 *   - /usr/lib: 59,791 files, p50 3.0 KB, p90 29 KB (log-normal median 3.0 KB, σ 2.0),
 *     0.5% over 1 MiB holding 79% of the bytes; depth p50 7, p90 9.
 *   - /usr/share: 43,157 files, p50 1.3 KB, p90 13 KB; depth p50 3, p90 5.
 * These agree with the published studies: small files dominate the count and a few
 * large ones the bytes, sizes roughly log-normal with a heavy tail, directory depth
 * peaked in single digits (Agrawal, Bolosky, Douceur, Lorch, "A Five-Year Study of
 * File-System Metadata", FAST 2007; Tanenbaum, Herder, Bos, "File Size Distribution on
 * UNIX Systems: Then and Now", ACM SIGOPS OSR 40(1), 2006: median file 2.5 KB).
 * The website is not measured here (no site on this machine): its mix of pages, images,
 * scripts and styles follows the HTTP Archive's Web Almanac, Page Weight chapter (2019,
 * 2020: a median page near 2 MB, mostly images), as a static site or a CMS's uploads
 * directory stores them, images log-normal and clipped to 20 KB–2 MB.
 */
export interface TreeFile {
  path: string;
  size: number;
  text: boolean;
}
export interface Tree {
  files: TreeFile[];
  dirs: number;
  bytes: number;
  maxDepth: number;
}

const PRINTABLE = Buffer.from(
  "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" +
    "    ____........,,,,;;;;(){}[]==++--**//''\"\"<>!&|:?#@$%\n\n\n\n\t\t  ",
);

const contentKeys = new Map<number, KeyObject>();

/** `size` bytes of `seed`/`index`'s keystream; `text` maps them onto printable characters. */
export function seededContent(seed: number, index: number, size: number, text: boolean): Buffer {
  let key = contentKeys.get(seed);
  if (!key) {
    key = createSecretKey(createHash("sha256").update(`offsite-bench-${seed}`).digest());
    contentKeys.set(seed, key);
  }
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(index >>> 0, 0);
  iv.writeUInt32BE(Math.floor(index / 2 ** 32), 4);
  const bytes = createCipheriv("aes-256-ctr", key, iv).update(Buffer.alloc(size));
  if (text) for (let i = 0; i < bytes.length; i++) bytes[i] = PRINTABLE[bytes[i]! % PRINTABLE.length]!;
  return bytes;
}

/** A log-normal draw around `median` with `sigma`, clipped to [min, max]. */
function logNormal(random: () => number, median: number, sigma: number, min: number, max: number): number {
  const normal = Math.sqrt(-2 * Math.log(random() || 1e-12)) * Math.cos(2 * Math.PI * random());
  return Math.max(min, Math.min(max, Math.round(median * Math.exp(sigma * normal))));
}

/** Picks a key of `weights` with probability proportional to its weight. */
function weighted<K extends string | number>(random: () => number, weights: [K, number][]): K {
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  let r = random() * total;
  for (const [key, w] of weights) if ((r -= w) < 0) return key;
  return weights.at(-1)![0];
}

interface DirNode {
  path: string;
  depth: number;
  children: DirNode[];
  files: number;
}

/**
 * A directory `depth` levels down, grown like a Chinese restaurant process: at each level
 * an existing subdirectory is taken with a probability in proportion to the files already
 * under it, a new one with weight `alpha`. Popular directories grow (node_modules' few huge
 * packages beside many small ones); names come from `names`, made unique among siblings.
 */
function descend(
  random: () => number,
  root: DirNode,
  depth: number,
  alpha: number,
  names: string[],
  made: DirNode[],
): DirNode {
  let node = root;
  while (node.depth < depth) {
    const total = node.children.reduce((sum, c) => sum + c.files + 1, 0);
    let r = random() * (total + alpha);
    let next = node.children.find((c) => (r -= c.files + 1) < 0);
    if (!next) {
      const base = names[Math.floor(random() * names.length)]!;
      const taken = new Set(node.children.map((c) => c.path));
      let path = join(node.path, base);
      for (let n = 2; taken.has(path); n++) path = join(node.path, `${base}-${n}`);
      next = { path, depth: node.depth + 1, children: [], files: 0 };
      node.children.push(next);
      made.push(next);
    }
    node.files++;
    node = next;
  }
  node.files++;
  return node;
}

/** The new-directory weight of descend(): 0.7 gives node_modules' 7–8 files a directory. */
const ALPHA = 0.7;
const SOURCE_DIRS = [
  "src",
  "lib",
  "dist",
  "esm",
  "cjs",
  "types",
  "test",
  "utils",
  "components",
  "internal",
  "node_modules",
  "build",
  "core",
  "helpers",
  "plugins",
  "api",
  "compiler",
  "runtime",
  "vendor",
  "include",
  "locale",
  "docs",
  "bin",
  "fixtures",
  "parser",
  "shared",
  "server",
  "client",
];
const SOURCE_EXTENSIONS: [string, number][] = [
  [".js", 30],
  [".ts", 14],
  [".d.ts", 10],
  [".map", 10],
  [".h", 8],
  [".json", 4],
  [".md", 4],
  [".cjs", 3],
  [".mjs", 3],
  [".c", 2],
  [".yml", 2],
  [".txt", 2],
  ["", 3],
  [".css", 2],
  [".html", 3],
];
const WORDS = [
  "index",
  "util",
  "parse",
  "types",
  "config",
  "main",
  "client",
  "server",
  "stream",
  "buffer",
  "path",
  "error",
  "string",
  "array",
  "object",
  "async",
  "events",
  "format",
  "encode",
  "decode",
  "hash",
  "token",
  "scope",
  "node",
  "visitor",
  "loader",
  "cache",
  "schema",
  "plugin",
  "helper",
];

/**
 * A software tree like a node_modules or a checked-out source tree: `files` files, 7–8 a
 * directory, depths 3–10 (weighted as measured: most at 5–7), text sizes log-normal around
 * 1.8 KB with σ 1.7 (clipped to 16 B–1 MiB: p90 16 KB, p99 100 KB), and 0.1% large binaries
 * (at least one), log-uniform over 1–32 MiB, that hold about half of the bytes (node_modules:
 * 67%). At 20,000 files and seed 11: 2,871 directories, 284 MB, the binaries 44% of it.
 */
export function makeSourceTree(root: string, files: number, seed: number): Tree {
  const random = prng(seed);
  const top: DirNode = { path: "", depth: 0, children: [], files: 0 };
  const dirs: DirNode[] = [];
  const depths: [number, number][] = [
    [3, 10],
    [4, 15],
    [5, 20],
    [6, 22],
    [7, 13],
    [8, 9],
    [9, 6],
    [10, 5],
  ];
  const binaries = Math.max(1, Math.round(files / 1000));
  const tree: Tree = { files: [], dirs: 0, bytes: 0, maxDepth: 0 };
  for (let f = 0; f < files; f++) {
    const depth = weighted(random, depths);
    const dir = descend(random, top, depth - 1, ALPHA, SOURCE_DIRS, dirs);
    // The binaries are spread evenly through the index range, so every scale has some.
    const binary = Math.floor(((f + 1) * binaries) / files) > Math.floor((f * binaries) / files);
    const extension = binary
      ? weighted(random, [
          [".node", 2],
          [".wasm", 1],
          [".so", 1],
          ["", 1],
        ])
      : weighted(random, SOURCE_EXTENSIONS);
    const word = WORDS[Math.floor(random() * WORDS.length)]!;
    const size = binary ? Math.round(2 ** (20 + 5 * random())) : logNormal(random, 1800, 1.7, 16, 1 << 20);
    tree.files.push({ path: join(dir.path, `${word}-${f}${extension}`), size, text: !binary });
    tree.maxDepth = Math.max(tree.maxDepth, depth);
  }
  tree.dirs = dirs.length;
  writeTree(root, tree, seed);
  return tree;
}

/**
 * A website as a static site generator or a CMS stores it (depth 1–5): pages
 * (`blog/YYYY/MM/slug/index.html`, `docs/…/*.html`; log-normal around 24 KB), images
 * (`uploads/YYYY/MM/*.jpg|png|webp`; log-normal around 120 KB with σ 0.9, clipped to
 * 20 KB–2 MB), scripts and styles (`assets/js`, `assets/css`; around 30 and 15 KB, a few
 * bundles near a megabyte), icons, fonts, feeds. By count 35% pages, 45% images; by
 * bytes images are about 80%, as in the Web Almanac's pages.
 */
export function makeWebsiteTree(root: string, files: number, seed: number): Tree {
  const random = prng(seed);
  const tree: Tree = { files: [], dirs: 0, bytes: 0, maxDepth: 0 };
  const year = () => String(2015 + Math.floor(random() * 10));
  const month = () => String(1 + Math.floor(random() * 12)).padStart(2, "0");
  const word = () => WORDS[Math.floor(random() * WORDS.length)]!;
  const sections = ["guide", "reference", "tutorials", "api", "faq"];
  for (let f = 0; f < files; f++) {
    const kind = weighted(random, [
      ["page", 35],
      ["image", 45],
      ["svg", 8],
      ["js", 6],
      ["css", 3],
      ["font", 1],
      ["other", 2],
    ]);
    let path: string;
    let size: number;
    let text = true;
    switch (kind) {
      case "page":
        path =
          random() < 0.6
            ? join("blog", year(), month(), `${word()}-${word()}-${f}`, "index.html")
            : join("docs", sections[Math.floor(random() * sections.length)]!, word(), `${word()}-${f}.html`);
        size = logNormal(random, 24_000, 0.6, 2_000, 400_000);
        break;
      case "image": {
        const ext = weighted(random, [
          [".jpg", 55],
          [".png", 30],
          [".webp", 15],
        ]);
        path = join("uploads", year(), month(), `${word()}-${f}${ext}`);
        size = logNormal(random, 120_000, 0.9, 20_000, 2_000_000);
        text = false;
        break;
      }
      case "svg":
        path = join("assets", "icons", `${word()}-${f}.svg`);
        size = logNormal(random, 1_500, 0.7, 300, 20_000);
        break;
      case "js":
        path = join("assets", "js", random() < 0.3 ? "vendor" : "", `${word()}-${f}.min.js`);
        size = logNormal(random, 30_000, 1.2, 1_000, 1_500_000);
        break;
      case "css":
        path = join("assets", "css", `${word()}-${f}.css`);
        size = logNormal(random, 15_000, 1.0, 1_000, 500_000);
        break;
      case "font":
        path = join("assets", "fonts", `${word()}-${f}.woff2`);
        size = logNormal(random, 50_000, 0.4, 20_000, 150_000);
        text = false;
        break;
      default:
        path = join(
          weighted(random, [
            ["", 1],
            ["feeds", 2],
            ["data", 2],
          ]),
          `${word()}-${f}.${weighted(random, [
            ["xml", 2],
            ["json", 2],
            ["txt", 1],
          ])}`,
        );
        size = logNormal(random, 8_000, 1.0, 100, 300_000);
    }
    tree.files.push({ path, size, text });
    tree.maxDepth = Math.max(tree.maxDepth, path.split("/").length);
  }
  tree.dirs = new Set(tree.files.map((file) => file.path.split("/").slice(0, -1).join("/"))).size;
  writeTree(root, tree, seed);
  return tree;
}

function writeTree(root: string, tree: Tree, seed: number): void {
  const made = new Set<string>();
  tree.bytes = 0;
  tree.files.forEach((file, index) => {
    const dir = join(root, file.path, "..");
    if (!made.has(dir)) mkdirSync(dir, { recursive: true });
    made.add(dir);
    writeFileSync(join(root, file.path), seededContent(seed, index, file.size, file.text));
    tree.bytes += file.size;
  });
}

/** What a change to a tree did, for the table. */
export interface Change {
  modified: number;
  added: number;
  deleted: number;
  changedBytes: number;
}

/**
 * Changes a tree made by makeSourceTree or makeWebsiteTree in place, as a commit or a
 * publish does: rewrites `modify` of its text files whole (same size, new content),
 * adds `add` files beside existing ones (sizes drawn from the files already there) and
 * deletes `remove`. Returns the tree as it is now and what changed; seeded.
 */
export function changeTree(
  root: string,
  tree: Tree,
  change: { modify: number; add: number; remove: number; textOnly?: boolean },
  seed: number,
): { tree: Tree; change: Change } {
  const random = prng(seed);
  const files = [...tree.files];
  const done: Change = { modified: 0, added: 0, deleted: 0, changedBytes: 0 };
  const pick = (text: boolean) => {
    for (;;) {
      const index = Math.floor(random() * files.length);
      if (!text || files[index]!.text) return index;
    }
  };
  const touched = new Set<number>();
  while (touched.size < Math.min(change.modify, files.length)) touched.add(pick(true));
  for (const index of touched) {
    const file = files[index]!;
    writeFileSync(join(root, file.path), seededContent(seed, 1_000_000 + index, file.size, true));
    done.modified++;
    done.changedBytes += file.size;
  }
  for (let a = 0; a < change.add; a++) {
    const like = files[pick(change.textOnly ?? false)]!;
    const path = join(like.path, "..", `added-${seed}-${a}${extname(like.path)}`);
    writeFileSync(join(root, path), seededContent(seed, 2_000_000 + a, like.size, like.text));
    files.push({ path, size: like.size, text: like.text });
    done.added++;
    done.changedBytes += like.size;
  }
  // Deleted: files that were there before and were not just rewritten.
  const before = tree.files.length;
  const removed = new Set<number>();
  while (removed.size < Math.min(change.remove, before - touched.size)) {
    const index = Math.floor(random() * before);
    if (!touched.has(index)) removed.add(index);
  }
  for (const index of [...removed].sort((a, b) => b - a)) {
    rmSync(join(root, files[index]!.path));
    files.splice(index, 1);
    done.deleted++;
  }
  const bytes = files.reduce((sum, file) => sum + file.size, 0);
  return { tree: { ...tree, files, bytes }, change: done };
}

/**
 * B2r's change: 64 bytes in the middle of one small text file of the tree (a one-line
 * edit), rewritten in place so only its content and mtime differ. Returns its path.
 */
export function editOneFile(root: string, tree: Tree, seed: number): string {
  const random = prng(seed);
  const candidates = tree.files.filter((file) => file.text && file.size >= 256 && file.size <= 64 * 1024);
  const file = candidates[Math.floor(random() * candidates.length)]!;
  const content = readFileSync(join(root, file.path));
  seededContent(seed, 3_000_000, 64, true).copy(content, Math.floor(content.length / 2) - 32);
  writeFileSync(join(root, file.path), content);
  return file.path;
}
