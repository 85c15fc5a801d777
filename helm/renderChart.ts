/**
 * helm template of the Offsite chart as objects, with the helm binary the harness builds
 * (test/cluster/binaries.ts): for the chart's unit test and for suites that apply the
 * chart's output to a real API server.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { binaryPath } from "../test/cluster/binaries.ts";
import { CHART_DIR } from "./syncChartFiles.ts";

const run = promisify(execFile);

export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** `helm template RELEASE helm/offsite -n NAMESPACE ...args` as YAML text. */
export async function helmTemplateText(
  release: string,
  namespace: string,
  args: string[] = [],
): Promise<string> {
  const { stdout } = await run(
    binaryPath("helm"),
    ["template", release, CHART_DIR, "-n", namespace, ...args],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout;
}

export async function helmTemplate(
  release: string,
  namespace: string,
  args: string[] = [],
): Promise<RenderedObject[]> {
  return parseAllDocuments(await helmTemplateText(release, namespace, args))
    .map((document) => document.toJS() as RenderedObject | null)
    .filter((object): object is RenderedObject => object !== null);
}

/** Runs helm with `args`; resolves with its stderr when it fails, rejects when it succeeds. */
export async function helmFailure(args: string[]): Promise<string> {
  try {
    await run(binaryPath("helm"), args);
  } catch (error) {
    return (error as { stderr: string }).stderr;
  }
  throw new Error(`helm ${args.join(" ")} succeeded but should have failed`);
}
