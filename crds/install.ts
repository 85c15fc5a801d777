/**
 * Installs (or updates) the Offsite CRDs on a cluster and waits until the API server
 * serves them. A CRD the API server refuses, or finds non-structural, is reported with
 * the API server's own reasons instead of a bare status code or a silent hang.
 *
 * The subtle part: client-node serializes objects through its typed models, whose
 * fields are camelCase (`xKubernetesValidations`). A plain parsed YAML object has the
 * wire names (`x-kubernetes-validations`), which the serializer silently drops — CEL
 * rules and int-or-string markers would vanish. `loadYaml` maps wire names to the model.
 */
import {
  ApiException,
  ApiextensionsV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { renderAll } from "./generate.ts";

export const FIELD_MANAGER = "offsite";

/** The API server's message from a failed request, or the error's own. */
export function apiErrorMessage(error: unknown): string {
  if (error instanceof ApiException) {
    try {
      const body = (typeof error.body === "string" ? JSON.parse(error.body) : error.body) as {
        message?: string;
      };
      if (body?.message) return `${body.message} (HTTP ${error.code})`;
    } catch {
      // not a Status object; fall through
    }
    return `HTTP ${error.code}: ${String(error.body)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Server-side applies every generated CRD, then waits for Established. */
export async function installCrds(kc: KubeConfig, timeoutMs = 30_000): Promise<string[]> {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const names: string[] = [];
  for (const { text } of renderAll()) {
    const crd = loadYaml<V1CustomResourceDefinition>(text);
    const name = crd.metadata!.name!;
    try {
      await objects.patch(crd, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    } catch (error) {
      throw new Error(`installing CRD ${name} failed: ${apiErrorMessage(error)}`, { cause: error });
    }
    names.push(name);
  }
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const conditions = (await api.readCustomResourceDefinition({ name })).status?.conditions ?? [];
      const nonStructural = conditions.find((c) => c.type === "NonStructuralSchema" && c.status === "True");
      if (nonStructural) throw new Error(`CRD ${name} is not structural: ${nonStructural.message ?? ""}`);
      if (conditions.some((c) => c.type === "Established" && c.status === "True")) break;
      if (Date.now() > deadline) {
        throw new Error(`CRD ${name} not Established after ${timeoutMs} ms: ${JSON.stringify(conditions)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return names;
}
