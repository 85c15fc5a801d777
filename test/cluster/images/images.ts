/**
 * The images the real test node runs, built here because none can be pulled:
 *
 * - `pause`: the pod sandbox, a static C program (pause.c) and nothing else;
 * - `coredns`: the CoreDNS binary build-binaries.sh builds from Go modules;
 * - `agent` and `operator`: generated from agent.Dockerfile and operator/Dockerfile, the
 *   definitions users build with Docker, so the two cannot drift apart. Their final stage
 *   is translated instruction by instruction; the two things that cannot be pulled are
 *   built from what the project already has: the distroless Node 24 base becomes the
 *   project's own Node 24 binary (node_modules/node) plus the shared libraries it links,
 *   /etc/passwd with `nonroot` (65532) and the CA bundle; the `npm ci --omit=dev` stage
 *   becomes the production dependency tree already installed in node_modules
 *   (`npm ls --omit=dev`). Any other instruction fails loudly, to be taught here.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildImage,
  dockerignoreMatcher,
  imageCacheDir,
  inside,
  type BuiltImage,
  type ImageConfig,
  type ImageDefinition,
  type RootfsEntry,
} from "./ociImage.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(HERE, "..", "..", "..");
const DISTROLESS_NODE = "gcr.io/distroless/nodejs24-debian12:nonroot";
const NONROOT = 65532;
const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The pause binary, compiled once per source version into the image cache. */
function pauseBinary(): string {
  const source = join(HERE, "pause.c");
  const key = execFileSync("sha256sum", [source], { encoding: "utf8" }).slice(0, 16);
  const out = join(imageCacheDir(), `pause-${key}`);
  if (!existsSync(out)) {
    mkdirSync(imageCacheDir(), { recursive: true });
    execFileSync("gcc", ["-static", "-Os", "-s", "-Wall", "-o", `${out}.partial`, source]);
    renameSync(`${out}.partial`, out);
  }
  return out;
}

export function pauseImage(): ImageDefinition {
  return {
    repository: "offsite.local/pause",
    entries: [{ kind: "file", path: "pause", source: pauseBinary(), mode: 0o755 }],
    config: { Entrypoint: ["/pause"] },
  };
}

export function corednsImage(corednsBinary: string): ImageDefinition {
  return {
    repository: "offsite.local/coredns",
    entries: [
      { kind: "file", path: "coredns", source: corednsBinary, mode: 0o755 },
      { kind: "dir", path: "etc/coredns" },
      { kind: "dir", path: "tmp", mode: 0o1777 },
    ],
    config: { Entrypoint: ["/coredns"], ExposedPorts: { "53/udp": {}, "53/tcp": {} } },
  };
}

/** The shared libraries a dynamically linked binary loads, from ldd. */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const libraries: string[] = [];
  for (const line of out.split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match) libraries.push(match[1]!);
  }
  return libraries;
}

/** What distroless/nodejs24-debian12:nonroot provides, from the project's own Node 24. */
function nodeBase(): { entries: RootfsEntry[]; config: ImageConfig } {
  const node = realpathSync(join(REPO_ROOT, "node_modules", "node", "bin", "node"));
  const entries: RootfsEntry[] = [
    { kind: "file", path: "nodejs/bin/node", source: node, mode: 0o755 },
    ...sharedLibraries(node).map((library): RootfsEntry => ({
      kind: "file",
      path: library.slice(1),
      source: realpathSync(library),
    })),
    {
      kind: "content",
      path: "etc/passwd",
      content: `root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n`,
    },
    {
      kind: "content",
      path: "etc/group",
      content: `root:x:0:\nnobody:x:65534:\nnonroot:x:${NONROOT}:\n`,
    },
    {
      kind: "content",
      path: "etc/nsswitch.conf",
      content: "passwd: files\ngroup: files\nhosts: files dns\n",
    },
    { kind: "dir", path: "tmp", mode: 0o1777 },
    { kind: "dir", path: "root", mode: 0o700 },
    { kind: "dir", path: "home/nonroot", mode: 0o700, owner: NONROOT },
  ];
  const bundle = "/etc/ssl/certs/ca-certificates.crt";
  if (existsSync(bundle)) entries.push({ kind: "file", path: bundle.slice(1), source: bundle, mode: 0o644 });
  return {
    entries,
    config: { Env: [`PATH=${BASE_PATH}:/nodejs/bin`, `SSL_CERT_FILE=${bundle}`], User: `${NONROOT}` },
  };
}

/** The installed production dependency tree, as `npm ci --omit=dev` would lay it out. */
function productionNodeModules(): Extract<RootfsEntry, { kind: "tree" }>[] {
  const out = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const modules = join(REPO_ROOT, "node_modules");
  const packages = out
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith(`${modules}/`))
    .sort();
  return [...new Set(packages)].map((dir) => ({
    kind: "tree",
    path: inside(REPO_ROOT, dir),
    source: dir,
    // Nested node_modules hold packages of their own, listed (or not) by npm ls themselves.
    exclude: (rel) => rel === "node_modules" || rel.startsWith("node_modules/"),
  }));
}

function posixJoin(base: string, path: string): string {
  if (path.startsWith("/")) return path.replace(/^\/+/, "");
  return join(base, path).replace(/^\/+/, "");
}

/**
 * Translates the final stage of a Dockerfile into an image. Both paths are relative to the
 * repository root; `context` is the build context (`docker build -f FILE CONTEXT`).
 */
export function imageFromDockerfile(
  dockerfilePath: string,
  repository: string,
  context = ".",
): ImageDefinition {
  const text = readFileSync(join(REPO_ROOT, dockerfilePath), "utf8");
  const lines = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  const stages: string[][] = [];
  for (const line of lines) {
    if (/^FROM\s/i.test(line)) stages.push([]);
    stages.at(-1)?.push(line);
  }
  const final = stages.at(-1);
  if (!final) throw new Error(`${dockerfilePath}: no FROM`);
  const dependencyStage = stages
    .slice(0, -1)
    .map((stage) => /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(stage[0]!)?.[1])
    .filter((name): name is string => name !== undefined);

  const contextDir = join(REPO_ROOT, context);
  const ignored = dockerignoreMatcher(contextDir);
  const entries: RootfsEntry[] = [];
  const config: ImageConfig = {};
  let workdir = "/";
  for (const line of final) {
    const [instruction, ...rest] = line.split(/\s+/);
    const argument = line.slice(instruction!.length).trim();
    switch (instruction!.toUpperCase()) {
      case "FROM": {
        if (rest[0] !== DISTROLESS_NODE)
          throw new Error(`${dockerfilePath}: base ${rest[0]} is not ${DISTROLESS_NODE}; teach images.ts`);
        const base = nodeBase();
        // Layers: the base (Node and its libraries), the dependencies, the sources, so a
        // change to the sources rebuilds and unpacks only the last.
        entries.push(...base.entries, { kind: "layer" });
        Object.assign(config, base.config);
        break;
      }
      case "WORKDIR":
        workdir = argument.startsWith("/") ? argument : join(workdir, argument);
        config.WorkingDir = workdir;
        entries.push({ kind: "dir", path: workdir.slice(1) });
        break;
      case "COPY": {
        const words = rest.filter((word) => !word.startsWith("--"));
        const from = rest.find((word) => word.startsWith("--from="))?.slice("--from=".length);
        const destination = words.at(-1)!;
        const sources = words.slice(0, -1);
        if (from !== undefined) {
          if (!dependencyStage.includes(from) || sources.join(" ") !== "/app/node_modules")
            throw new Error(`${dockerfilePath}: COPY --from=${from} ${sources.join(" ")} is not understood`);
          entries.push(
            ...productionNodeModules().map((entry) => ({
              ...entry,
              path: posixJoin(workdir, entry.path.replace(/^node_modules/, destination.replace(/\/$/, ""))),
            })),
            { kind: "layer" },
          );
          break;
        }
        for (const source of sources) {
          const absolute = join(contextDir, source);
          if (statSync(absolute).isDirectory()) {
            // Docker copies a directory's contents into the destination.
            entries.push({
              kind: "tree",
              path: posixJoin(workdir, destination),
              source: absolute,
              exclude: (rel) => ignored(`${source.replace(/\/$/, "")}/${rel}`),
            });
          } else {
            const path = destination.endsWith("/")
              ? posixJoin(workdir, join(destination, basename(source)))
              : posixJoin(workdir, destination);
            entries.push({ kind: "file", path, source: absolute });
          }
        }
        break;
      }
      case "USER":
        config.User = argument;
        break;
      case "ENV": {
        const match = /^(\S+?)(?:=|\s+)(.*)$/.exec(argument);
        if (!match) throw new Error(`${dockerfilePath}: ENV ${argument}`);
        config.Env = [
          ...(config.Env ?? []).filter((e) => !e.startsWith(`${match[1]}=`)),
          `${match[1]}=${match[2]}`,
        ];
        break;
      }
      case "EXPOSE":
        config.ExposedPorts = { ...config.ExposedPorts };
        for (const port of rest) config.ExposedPorts[port.includes("/") ? port : `${port}/tcp`] = {};
        break;
      case "ENTRYPOINT":
        config.Entrypoint = JSON.parse(argument) as string[];
        break;
      case "CMD":
        config.Cmd = JSON.parse(argument) as string[];
        break;
      case "LABEL":
        break;
      default:
        throw new Error(
          `${dockerfilePath}: ${instruction} in the final stage is not understood; teach images.ts`,
        );
    }
  }
  return { repository, entries, config };
}

export function webAppImage(): ImageDefinition {
  return imageFromDockerfile("test/webApp/Dockerfile", "offsite.local/webapp", "test/webApp");
}

/**
 * The images our suites' pods run, on our node or on an existing cluster (kind), where
 * build.ts loads them: pods find them by these references (imagePullPolicy Never or
 * IfNotPresent), so nothing is pulled.
 */
export interface WorkloadImages {
  agent: BuiltImage;
  operator: BuiltImage;
  /** The test web application (test/webApp/): live data for replication and failover. */
  webApp: BuiltImage;
}

/** Builds (or finds cached, keyed by their inputs) the workload images. */
export function buildWorkloadImages(): WorkloadImages {
  return {
    agent: buildImage(imageFromDockerfile("agent.Dockerfile", "offsite.local/agent")),
    operator: buildImage(imageFromDockerfile("operator/Dockerfile", "offsite.local/operator")),
    webApp: buildImage(webAppImage()),
  };
}

/** What our real node runs besides: its pod sandbox and cluster DNS (kind brings its own). */
export interface NodeImages extends WorkloadImages {
  pause: BuiltImage;
  coredns: BuiltImage;
}

export function buildNodeImages(corednsBinary: string): NodeImages {
  return {
    pause: buildImage(pauseImage()),
    coredns: buildImage(corednsImage(corednsBinary)),
    ...buildWorkloadImages(),
  };
}
