/**
 * The pods a BackupJob's podSelector names, and which of them carry a working agent: a
 * native sidecar (an init container with restartPolicy Always) of the job's container
 * name, running, with a pod IP. Pods without it are reported (AgentMissing), never
 * restarted: an existing pod gets the sidecar when it is next created.
 */
import { CoreV1Api, type V1Pod, type V1Volume } from "@kubernetes/client-node";
import type { BackupJobSpec } from "../../crds/schema/backupJob.ts";
import type { ControllerContext } from "../runtime/controller.ts";
import { INJECT_LABEL, INJECT_LABEL_VALUE } from "../agentControl/names.ts";

type LabelSelector = NonNullable<BackupJobSpec["source"]["podSelector"]>;

/** A label selector in the API's query form (`a=b,c in (d,e),!f`). */
export function selectorQuery(selector: LabelSelector): string {
  const terms = Object.entries(selector.matchLabels ?? {}).map(([key, value]) => `${key}=${value}`);
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    if (operator === "In") terms.push(`${key} in (${values.join(",")})`);
    else if (operator === "NotIn") terms.push(`${key} notin (${values.join(",")})`);
    else if (operator === "Exists") terms.push(key);
    else terms.push(`!${key}`);
  }
  return terms.join(",");
}

export interface AgentPod {
  name: string;
  uid: string;
  ip: string;
  nodeName?: string;
}

export interface SourcePods {
  /** Pods whose agent can take a job now, by name. */
  agents: AgentPod[];
  /** Running pods without the sidecar (not injected: no opt-in label, or the webhook was down). */
  missing: { name: string; why: string }[];
  /** Pods with the sidecar that is not running yet. */
  starting: string[];
  total: number;
}

function hasSidecar(pod: V1Pod, containerName: string): boolean {
  return (pod.spec?.initContainers ?? []).some(
    (c) => c.name === containerName && c.restartPolicy === "Always",
  );
}

export function classifySourcePods(pods: V1Pod[], containerName: string): SourcePods {
  const live = pods
    .filter(
      (p) =>
        !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed",
    )
    .sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
  const result: SourcePods = { agents: [], missing: [], starting: [], total: live.length };
  for (const pod of live) {
    const name = pod.metadata!.name!;
    if (!hasSidecar(pod, containerName)) {
      const optedIn = pod.metadata?.labels?.[INJECT_LABEL] === INJECT_LABEL_VALUE;
      result.missing.push({
        name,
        why: optedIn
          ? "created while the operator's webhook was unavailable; it gets the agent when it is next re-created (e.g. kubectl rollout restart)"
          : `no ${INJECT_LABEL}=${INJECT_LABEL_VALUE} label on its pod template`,
      });
      continue;
    }
    const status = (pod.status?.initContainerStatuses ?? []).find((s) => s.name === containerName);
    if (pod.status?.podIP && status?.state?.running && status.ready !== false)
      result.agents.push({
        name,
        uid: pod.metadata!.uid!,
        ip: pod.status.podIP,
        ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      });
    else result.starting.push(name);
  }
  return result;
}

export async function listSourcePods(
  ctx: ControllerContext,
  namespace: string,
  selector: LabelSelector,
): Promise<V1Pod[]> {
  const list = await ctx.kc
    .makeApiClient(CoreV1Api)
    .listNamespacedPod({ namespace, labelSelector: selectorQuery(selector) });
  return list.items;
}

export interface ClaimMount {
  claimName: string;
  /** Where the application has it mounted; the mover mounts it there too, so paths agree. */
  mountPath: string;
  subPath?: string;
  nodeName?: string;
}

/**
 * The claim behind `path` in a pod's application containers: the mount whose path is the
 * longest prefix of it. A restore writes through this claim from a mover pod, since the
 * sidecar's mounts are read-only. Undefined when the path is on no claim (an emptyDir,
 * the image's own files): such data cannot be restored from outside the pod.
 */
export function claimBehind(pod: V1Pod, path: string): ClaimMount | undefined {
  const volumes = new Map<string, V1Volume>((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  // The longest covering mount decides, claim or not: a path on an emptyDir mounted inside a
  // claim's mount is not on the claim.
  let best: { length: number; claim?: ClaimMount } = { length: -1 };
  for (const container of pod.spec?.containers ?? []) {
    for (const mount of container.volumeMounts ?? []) {
      const mountPath = mount.mountPath.replace(/\/+$/, "") || "/";
      const covers = path === mountPath || path.startsWith(mountPath === "/" ? "/" : `${mountPath}/`);
      if (!covers || mountPath.length <= best.length) continue;
      const claimName = volumes.get(mount.name)?.persistentVolumeClaim?.claimName;
      best = {
        length: mountPath.length,
        ...(claimName
          ? {
              claim: {
                claimName,
                mountPath,
                ...(mount.subPath ? { subPath: mount.subPath } : {}),
                ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
              },
            }
          : {}),
      };
    }
  }
  return best.claim;
}
