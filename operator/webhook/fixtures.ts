/**
 * Test material for the injection webhook: pods, BackupJobs and settings, and the check
 * that the sidecar's args are what `offsite agent` accepts.
 */
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { parseFlags } from "../../contract/flags.ts";
import { ROLE_FLAGS, agentFlags } from "../../contract/roles.ts";
import { agentCommandLineOf } from "../../test/contract/agentCommandLine.ts";
import { INJECT_LABEL } from "../agentControl/names.ts";
import type { InjectionJob, SidecarSettings } from "./sidecarInjection.ts";

export const SETTINGS: SidecarSettings = {
  image: "ghcr.io/offsite-dev/offsite-agent:test",
  cpuRequest: "10m",
  memoryRequest: "32Mi",
  memoryLimit: "256Mi",
  podSecurity: "privileged",
};

export function aJob(
  name: string,
  podSelector: InjectionJob["spec"]["source"]["podSelector"],
  containerName?: string,
): InjectionJob {
  return {
    metadata: { name },
    spec: {
      source: { ...(podSelector ? { podSelector } : {}), ...(containerName ? { containerName } : {}) },
    },
  };
}

/** A web app with an uploads claim, a cache emptyDir and a config map, labelled app=shop. */
export function aPod(
  overrides: { labels?: Record<string, string>; spec?: Partial<V1Pod["spec"]> } = {},
): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "shop-", labels: overrides.labels ?? { app: "shop", [INJECT_LABEL]: "true" } },
    spec: {
      containers: [
        {
          name: "web",
          image: "nginx",
          volumeMounts: [
            { name: "uploads", mountPath: "/var/www/uploads" },
            { name: "config", mountPath: "/etc/nginx/conf.d", readOnly: true },
            { name: "cache", mountPath: "/var/cache/nginx" },
          ],
        },
      ],
      volumes: [
        { name: "uploads", persistentVolumeClaim: { claimName: "shop-uploads" } },
        { name: "config", configMap: { name: "shop-nginx" } },
        { name: "cache", emptyDir: {} },
      ],
      ...overrides.spec,
    },
  };
}

/**
 * The sidecar's command line as the agent parses it: through the CLI's own parser once
 * `agent` is one of its roles (ROLE_FLAGS), until then through the same flag parser with
 * the agent role's table.
 */
export function sidecarCommandLine(container: V1Container): {
  role: string;
  options: Record<string, unknown>;
} {
  if (Object.hasOwn(ROLE_FLAGS, "agent")) return agentCommandLineOf(container);
  if (container.command !== undefined) throw new Error("the sidecar overrides the image's entrypoint");
  const [role = "", ...rest] = container.args ?? [];
  return { role, options: parseFlags(agentFlags, rest, role).options };
}
