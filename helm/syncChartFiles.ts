/**
 * The chart's copies of what has one source elsewhere: the CRDs (crds/generated/, from
 * the zod schemas) and the operator's RBAC rules (operator/deploy/rbac.yaml, which the
 * integration suite runs the operator under). Helm reads only files inside the chart, so
 * they are copied into helm/offsite/files/ by this script and never edited by hand.
 *   node helm/syncChartFiles.ts          copy
 *   node helm/syncChartFiles.ts --check  exit 1 when a copy is stale
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const ROOT = join(import.meta.dirname, "..");
export const CHART_DIR = join(ROOT, "helm", "offsite");
const FILES = join(CHART_DIR, "files");

const HEADER = (source: string) =>
  `# Copied from ${source} by helm/syncChartFiles.ts (npm run chart:sync). Do not edit by hand.\n`;

/** Every copy the chart holds, with the text it must have. */
export function chartCopies(): { file: string; text: string }[] {
  const crdDir = join(ROOT, "crds", "generated");
  const crds = readdirSync(crdDir)
    .filter((name) => name.endsWith(".yaml"))
    .map((name) => ({
      file: join(FILES, "crds", name),
      text: HEADER(`crds/generated/${name}`) + readFileSync(join(crdDir, name), "utf8"),
    }));
  const rbac = {
    file: join(FILES, "rbac.yaml"),
    text:
      HEADER("operator/deploy/rbac.yaml") +
      readFileSync(join(ROOT, "operator", "deploy", "rbac.yaml"), "utf8"),
  };
  return [...crds, rbac];
}

function main(): void {
  const check = process.argv.includes("--check");
  const copies = chartCopies();
  const wanted = new Set(copies.map((c) => c.file));
  const stale: string[] = [];
  for (const { file, text } of copies) {
    if (existsSync(file) && readFileSync(file, "utf8") === text) continue;
    if (check) stale.push(file);
    else {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
  }
  for (const name of readdirSync(join(FILES, "crds"))) {
    const file = join(FILES, "crds", name);
    if (wanted.has(file)) continue;
    if (check) stale.push(`${file} (no longer generated)`);
    else rmSync(file);
  }
  if (stale.length > 0) {
    console.error(`Stale chart files (run \`npm run chart:sync\` and commit):\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main();
