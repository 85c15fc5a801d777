/**
 * Writes container images as OCI archives without a container engine or a registry:
 * a root filesystem is staged in a directory, packed into one uncompressed layer with
 * GNU tar, and described by an OCI config, manifest and index (the layout `ctr images
 * import` reads). Archives are cached by a key computed from every input (file contents,
 * modes, the image config and this builder's version), so a warm run writes nothing.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";

/** Bump when the archive layout changes, so cached archives are rebuilt. */
const BUILDER_VERSION = "2";

export type RootfsEntry =
  /** Starts a new layer: the entries after it are packed (and cached) apart from those before. */
  | { kind: "layer" }
  | { kind: "dir"; path: string; mode?: number; owner?: number }
  | { kind: "file"; path: string; source: string; mode?: number }
  | { kind: "content"; path: string; content: string; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  /** A directory tree copied recursively; `exclude` gets paths relative to `source`. */
  | { kind: "tree"; path: string; source: string; exclude?: (relativePath: string) => boolean };

export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, object>;
  Labels?: Record<string, string>;
}

export interface ImageDefinition {
  /** Repository part of the reference, e.g. `offsite.local/agent`; the tag is the cache key. */
  repository: string;
  entries: RootfsEntry[];
  config: ImageConfig;
}

export interface BuiltImage {
  /** The full reference, `<repository>:<key>`. */
  ref: string;
  archive: string;
  /** Whether this call wrote the archive (false: it was cached). */
  built: boolean;
}

export function imageCacheDir(): string {
  return join(process.env.OFFSITE_CACHE_DIR ?? join(homedir(), ".cache", "offsite"), "images");
}

function walk(
  root: string,
  exclude: ((p: string) => boolean) | undefined,
  visit: (rel: string) => void,
): void {
  const recurse = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (exclude?.(child)) continue;
      visit(child);
      const stat = lstatSync(join(root, child));
      if (stat.isDirectory()) recurse(child);
    }
  };
  recurse("");
}

function hashFile(hash: ReturnType<typeof createHash>, path: string): void {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) hash.update(`link:${readlinkSync(path)}\n`);
  else if (stat.isDirectory()) hash.update(`dir:${stat.mode & 0o7777}\n`);
  // Large files (the Node binary, libraries, bundled packages) are keyed by size and mtime,
  // as make would; hashing 200 MB on every warm start costs seconds.
  else if (stat.size > 256 * 1024) hash.update(`big:${stat.mode & 0o7777}:${stat.size}:${stat.mtimeMs}\n`);
  else hash.update(`file:${stat.mode & 0o7777}:${stat.size}\n`).update(readFileSync(path));
}

/** The definition's entries, one list per layer. */
function layersOf(definition: ImageDefinition): RootfsEntry[][] {
  const layers: RootfsEntry[][] = [[]];
  for (const entry of definition.entries) {
    if (entry.kind === "layer") {
      if (layers.at(-1)!.length > 0) layers.push([]);
    } else layers.at(-1)!.push(entry);
  }
  return layers.filter((layer) => layer.length > 0);
}

/** A key over everything that ends up in one layer. */
function layerKey(entries: RootfsEntry[]): string {
  const hash = createHash("sha256");
  hash.update(`offsite-oci-layer ${BUILDER_VERSION}\n`);
  for (const entry of entries) {
    if (entry.kind === "layer") continue;
    hash.update(`\n${entry.kind} ${entry.path}\n`);
    switch (entry.kind) {
      case "dir":
        hash.update(`${entry.mode ?? 0o755} ${entry.owner ?? 0}`);
        break;
      case "file":
        hash.update(`${entry.mode ?? ""}`);
        hashFile(hash, entry.source);
        break;
      case "content":
        hash.update(`${entry.mode ?? 0o644}\n${entry.content}`);
        break;
      case "symlink":
        hash.update(entry.target);
        break;
      case "tree":
        walk(entry.source, entry.exclude, (rel) => {
          hash.update(`${rel}\n`);
          hashFile(hash, join(entry.source, rel));
        });
        break;
    }
  }
  return hash.digest("hex").slice(0, 20);
}

/** A key over everything that ends up in the image: its layers' keys and its config. */
export function imageKey(definition: ImageDefinition): string {
  const hash = createHash("sha256");
  hash.update(`offsite-oci-builder ${BUILDER_VERSION}\n${definition.repository}\n`);
  hash.update(JSON.stringify(definition.config));
  for (const layer of layersOf(definition)) hash.update(`\n${layerKey(layer)}`);
  return hash.digest("hex").slice(0, 20);
}

function stage(rootfs: string, entries: RootfsEntry[]): void {
  const at = (path: string) => join(rootfs, path);
  const parent = (path: string) => mkdirSync(dirname(at(path)), { recursive: true });
  for (const entry of entries) {
    switch (entry.kind) {
      case "layer":
        break;
      case "dir":
        mkdirSync(at(entry.path), { recursive: true });
        chmodSync(at(entry.path), entry.mode ?? 0o755);
        if (entry.owner !== undefined) chownSync(at(entry.path), entry.owner, entry.owner);
        break;
      case "file":
        parent(entry.path);
        copyFileSync(entry.source, at(entry.path));
        chmodSync(at(entry.path), entry.mode ?? statSync(entry.source).mode & 0o7777);
        break;
      case "content":
        parent(entry.path);
        writeFileSync(at(entry.path), entry.content);
        chmodSync(at(entry.path), entry.mode ?? 0o644);
        break;
      case "symlink":
        parent(entry.path);
        symlinkSync(entry.target, at(entry.path));
        break;
      case "tree":
        mkdirSync(at(entry.path), { recursive: true });
        walk(entry.source, entry.exclude, (rel) => {
          const from = join(entry.source, rel);
          const to = join(at(entry.path), rel);
          const stat = lstatSync(from);
          if (stat.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
          else if (stat.isDirectory()) mkdirSync(to, { recursive: true });
          else copyFileSync(from, to);
          if (!stat.isSymbolicLink()) chmodSync(to, stat.mode & 0o7777);
        });
        break;
    }
  }
}

function safeName(repository: string): string {
  return repository.replace(/[^a-z0-9.-]+/g, "_");
}

/**
 * One layer as an uncompressed tar, cached by its key in images/layers/: an image whose
 * sources changed rebuilds (and containerd unpacks) only its top layer, not Node and the
 * dependencies below it.
 */
function buildLayer(
  name: string,
  index: number,
  entries: RootfsEntry[],
  rootfs: string,
): { path: string; digest: string; size: number } {
  const layersDir = join(imageCacheDir(), "layers");
  mkdirSync(layersDir, { recursive: true });
  const prefix = `${name}-${index}-`;
  const key = layerKey(entries);
  const path = join(layersDir, `${prefix}${key}.tar`);
  const meta = `${path}.json`;
  if (existsSync(path) && existsSync(meta))
    return { path, ...(JSON.parse(readFileSync(meta, "utf8")) as { digest: string; size: number }) };
  mkdirSync(rootfs, { recursive: true });
  stage(rootfs, entries);
  const partial = `${path}.partial-${process.pid}`;
  // Reproducible: sorted names, fixed times, numeric owners as staged (root unless chowned).
  execFileSync("tar", [
    "--sort=name",
    "--mtime=@0",
    "--numeric-owner",
    "--format=posix",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    "-C",
    rootfs,
    "-cf",
    partial,
    ".",
  ]);
  rmSync(rootfs, { recursive: true, force: true });
  const layer = { digest: sha256File(partial), size: statSync(partial).size };
  renameSync(partial, path);
  writeFileSync(meta, JSON.stringify(layer));
  // This layer's earlier versions are of no further use.
  for (const file of readdirSync(layersDir))
    if (file.startsWith(prefix) && !file.startsWith(`${prefix}${key}.`) && !file.includes(".partial-"))
      rmSync(join(layersDir, file), { force: true });
  return { path, ...layer };
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Builds (or finds in the cache) the OCI archive of one image. */
export function buildImage(definition: ImageDefinition): BuiltImage {
  const key = imageKey(definition);
  const ref = `${definition.repository}:${key}`;
  const dir = imageCacheDir();
  const archive = join(dir, `${safeName(definition.repository)}-${key}.tar`);
  if (existsSync(archive)) return { ref, archive, built: false };

  const work = join(dir, `.build-${process.pid}-${key}`);
  rmSync(work, { recursive: true, force: true });
  const layout = join(work, "layout");
  const blobs = join(layout, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  try {
    const layers = layersOf(definition).map((entries, index) => {
      const layer = buildLayer(
        safeName(definition.repository),
        index,
        entries,
        join(work, `rootfs-${index}`),
      );
      // A hard link, not a copy: the layout is packed into the archive right below.
      linkSync(layer.path, join(blobs, layer.digest));
      return layer;
    });

    const writeBlob = (value: object): { digest: string; size: number } => {
      const bytes = Buffer.from(JSON.stringify(value));
      const digest = createHash("sha256").update(bytes).digest("hex");
      writeFileSync(join(blobs, digest), bytes);
      return { digest: `sha256:${digest}`, size: bytes.length };
    };
    const config = writeBlob({
      architecture: "amd64",
      os: "linux",
      config: definition.config,
      rootfs: { type: "layers", diff_ids: layers.map((layer) => `sha256:${layer.digest}`) },
      history: layers.map(() => ({ created_by: `offsite test/cluster/images (${definition.repository})` })),
    });
    const manifest = writeBlob({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((layer) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: `sha256:${layer.digest}`,
        size: layer.size,
      })),
    });
    writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(
      join(layout, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            platform: { architecture: "amd64", os: "linux" },
            annotations: { "io.containerd.image.name": ref, "org.opencontainers.image.ref.name": key },
          },
        ],
      }),
    );
    const partial = `${archive}.partial`;
    execFileSync("tar", ["--sort=name", "-C", layout, "-cf", partial, "."]);
    renameSync(partial, archive);
    // Archives of this repository's earlier inputs are of no further use.
    const prefix = `${safeName(definition.repository)}-`;
    for (const name of readdirSync(dir))
      if (name.startsWith(prefix) && name.endsWith(".tar") && join(dir, name) !== archive)
        rmSync(join(dir, name), { force: true });
    return { ref, archive, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Paths relative to the repository root that a `.dockerignore` excludes (its simple patterns). */
export function dockerignoreMatcher(contextDir: string): (path: string) => boolean {
  const file = join(contextDir, ".dockerignore");
  const patterns = existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line && !line.startsWith("#"))
    : [];
  if (patterns.some((p) => p.startsWith("!")))
    throw new Error(".dockerignore exceptions (!) are not supported");
  const regexes = patterns.map((pattern) => {
    const body = pattern
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map((part) =>
        part === "**"
          ? "(?:.*)"
          : part
              .replace(/[.+^${}()|[\]\\]/g, "\\$&")
              .replace(/\*/g, "[^/]*")
              .replace(/\?/g, "[^/]"),
      )
      .join("/")
      .replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
    return new RegExp(`^${body}(?:/.*)?$`);
  });
  return (path) => regexes.some((regex) => regex.test(path));
}

/** `relative` for paths known to be inside `root`. */
export function inside(root: string, path: string): string {
  const rel = relative(root, path);
  if (rel.startsWith("..")) throw new Error(`${path} is not inside ${root}`);
  return rel;
}
