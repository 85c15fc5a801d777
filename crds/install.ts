/**
 * Installs (or updates) the Offsite CRDs on a cluster and waits until the API server
 * serves them. A CRD whose schema the API server finds non-structural, or whose names
 * conflict, is reported with the API server's own reason instead of a silent hang.
 */
import { readFileSync } from "node:fs";
import {
  ApiextensionsV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { parse } from "yaml";
import { renderAll } from "./generate.ts";

export const FIELD_MANAGER = "offsite";

interface CrdCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** Server-side applies every generated CRD, then waits for Established. */
export async function installCrds(kc: KubeConfig, timeoutMs = 30_000): Promise<string[]> {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const names: string[] = [];
  for (const { file } of renderAll()) {
    const crd = parse(readFileSync(file, "utf8")) as KubernetesObject;
    await objects.patch(crd, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    names.push(crd.metadata!.name!);
  }
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name });
      const conditions = (crd.status?.conditions ?? []) as CrdCondition[];
      const problem = conditions.find(
        (c) =>
          (c.type === "NonStructuralSchema" || c.type === "NamesAccepted") &&
          c.status !== (c.type === "NamesAccepted" ? "True" : "False"),
      );
      if (problem && problem.type === "NonStructuralSchema") {
        throw new Error(`CRD ${name} is not structural: ${problem.message ?? problem.reason ?? ""}`);
      }
      if (conditions.some((c) => c.type === "Established" && c.status === "True")) break;
      if (Date.now() > deadline) {
        throw new Error(`CRD ${name} not Established after ${timeoutMs} ms: ${JSON.stringify(conditions)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return names;
}
