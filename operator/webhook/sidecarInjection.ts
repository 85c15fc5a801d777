/**
 * What the injection webhook does to a Pod at admission, as pure functions: which
 * BackupJobs and ReplicationPair sides select it, and the JSON Patch that adds the Offsite agent as a native
 * sidecar (an init container with restartPolicy Always). No I/O here; webhookServer.ts
 * looks up the BackupJobs and the namespace and answers the API server with the result.
 *
 * Rules that keep the application safe:
 * - Only the Pod at admission changes, never the user's Deployment or manifest; a pod
 *   that already has the agent (a container or init container named offsite-agent, or a
 *   matched job's source.containerName) is left alone, so there are never two sidecars.
 * - Nothing here can hold the application back: the sidecar has no startupProbe and no
 *   readinessProbe (see agentContainer), its Secret is optional, and whenever a pod
 *   cannot be injected safely (a port or name taken, a Windows pod) it is admitted as it
 *   is, with the reason.
 * - The sidecar sees every data volume the app mounts at the app's own path (and
 *   subPath), read-only, so a BackupJob's source.path names the same directory in both;
 *   writable only in a ReplicationPair's standby, whose agent applies the primary's changes.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { renderFlags } from "../../contract/flags.ts";
import { agentFlags, type AgentOptions } from "../../contract/roles.ts";
import type { LabelSelector } from "../runtime/labelSelector.ts";
import { selectorMatches } from "../runtime/labelSelector.ts";
import {
  AGENT_CONTROL_CERTS_DIR,
  AGENT_CONTROL_PORT,
  AGENT_CONTROL_SECRET,
  AGENT_HEALTH_PORT,
  INJECTED_ANNOTATION,
  SIDECAR_CONTAINER,
} from "../agentControl/names.ts";

/** The volume of the agent's control Secret in an injected pod. */
export const CONTROL_VOLUME = "offsite-agent-control";
/**
 * An empty read-only volume the sidecar mounts where the ServiceAccount admission plugin
 * would mount the API token (see noTokenMount).
 */
export const NO_TOKEN_VOLUME = "offsite-agent-no-token";
export const SERVICE_ACCOUNT_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Volume kinds that never hold application data: configuration and credentials. */
const NOT_DATA = new Set(["secret", "configMap", "projected", "downwardAPI", "image"]);

/**
 * One side of a ReplicationPair as far as injection cares: the pods its workload selects
 * (the workload's spec.selector, which the webhook server reads). A standby's agent
 * writes the data (its mounts are writable, it takes the standby role); a primary's only
 * reads it and keeps its journal in an emptyDir of its own.
 */
export interface InjectionPairSide {
  pair: string;
  side: "primary" | "standby";
  selector: LabelSelector;
  containerName?: string;
}

/**
 * The emptyDir where the agent keeps its state across its own restarts: a primary's
 * replication journal, and every push's cache of what the receiver holds (lost with the
 * pod, which costs one full exchange of entries).
 */
export const STATE_VOLUME = "offsite-agent-state";
export const AGENT_STATE_DIR = "/var/lib/offsite";
/**
 * The volume's limit. The kubelet evicts a pod whose emptyDir outgrows its sizeLimit, so
 * the agent keeps far below it: a cache over RECEIVER_STATE_CACHE_MAX_BYTES is not written.
 */
const STATE_VOLUME_LIMIT = "1Gi";

/** What the agent of a pod may do, from what selects the pod. */
export interface AgentRole {
  /** A pair's standby: writable data mounts, --allow-standby. */
  writable: boolean;
}
const BACKUP_ONLY: AgentRole = { writable: false };

/** The pair sides whose workload selects `pod`. */
export function matchingPairSides(pod: V1Pod, sides: readonly InjectionPairSide[]): InjectionPairSide[] {
  return sides.filter((side) => selectorMatches(side.selector, pod.metadata?.labels));
}

/** A BackupJob as far as injection cares. */
export interface InjectionJob {
  metadata: { name?: string; deletionTimestamp?: Date | string };
  spec: { source: { podSelector?: LabelSelector; containerName?: string } };
}

/** The Pod Security Standard the pod's namespace enforces (label pod-security.kubernetes.io/enforce). */
export type PodSecurityLevel = "privileged" | "baseline" | "restricted";

export interface SidecarSettings {
  /** The operator's --agent-image. */
  image: string;
  cpuRequest: string;
  memoryRequest: string;
  memoryLimit: string;
  podSecurity: PodSecurityLevel;
}

export interface JsonPatchOperation {
  op: "add";
  path: string;
  value: unknown;
}

export type InjectionDecision =
  | {
      inject: false;
      reason: string;
      /** A reason a person should hear about (a warning), not just "no match". */ notable: boolean;
    }
  | {
      inject: true;
      jobs: string[];
      /** pair/side of each ReplicationPair side the pod belongs to. */
      pairs: string[];
      container: V1Container;
      volumes: V1Volume[];
      patch: JsonPatchOperation[];
    };

/** The BackupJobs whose source.podSelector selects `pod` (jobs being deleted select nothing). */
export function matchingJobs<J extends InjectionJob>(pod: V1Pod, jobs: readonly J[]): J[] {
  return jobs.filter(
    (job) =>
      !job.metadata.deletionTimestamp &&
      job.spec?.source?.podSelector !== undefined &&
      selectorMatches(job.spec.source.podSelector, pod.metadata?.labels),
  );
}

/** `offsite agent` as a sidecar: the contract's flag table, so the agent parses exactly this. */
export function sidecarArguments(role: AgentRole = BACKUP_ONLY): string[] {
  const options: AgentOptions = {
    controlCerts: AGENT_CONTROL_CERTS_DIR,
    host: "0.0.0.0",
    controlPort: AGENT_CONTROL_PORT,
    healthPort: AGENT_HEALTH_PORT,
    cache: `${AGENT_STATE_DIR}/cache`,
    // The agent that protects the data can never write it (its mounts are read-only too);
    // only a pair's standby writes, the changes its primary sends.
    allowRestore: false,
    allowStandby: role.writable,
  };
  return ["agent", ...renderFlags(agentFlags, options)];
}

const DATA_VOLUME_KIND = (volume: V1Volume) => {
  const kinds = Object.keys(volume).filter((key) => key !== "name");
  return kinds.length > 0 && kinds.every((kind) => !NOT_DATA.has(kind));
};

/** $(NAME) references of a subPathExpr. */
const referencedVariables = (expression: string) =>
  [...expression.matchAll(/\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)/g)].map((m) => m[1]!);

/**
 * The sidecar's view of the app's data: for every mount path of a data volume, the first
 * app container's mount, read-only. A subPathExpr expands from the container's own
 * environment, so the variables it names come along when they are plain values or the
 * downward API (the documented use); a mount that needs anything else is left out
 * rather than shown at a different directory.
 */
function dataMounts(
  pod: V1Pod,
  reserved: Set<string>,
  writable: boolean,
): { mounts: V1VolumeMount[]; env: V1EnvVar[] } {
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const mounts: V1VolumeMount[] = [];
  const env = new Map<string, V1EnvVar>();
  const taken = new Set(reserved);
  for (const container of pod.spec?.containers ?? []) {
    for (const mount of container.volumeMounts ?? []) {
      const volume = volumes.get(mount.name);
      if (!volume || !DATA_VOLUME_KIND(volume) || taken.has(mount.mountPath)) continue;
      const needed: V1EnvVar[] = [];
      if (mount.subPathExpr) {
        const known = new Map((container.env ?? []).map((e) => [e.name, e]));
        const variables = referencedVariables(mount.subPathExpr).map((name) => known.get(name));
        const copyable = (e: V1EnvVar | undefined): e is V1EnvVar =>
          e !== undefined &&
          (e.valueFrom === undefined ||
            (e.valueFrom.fieldRef !== undefined && Object.keys(e.valueFrom).length === 1));
        if (!variables.every(copyable)) continue;
        const clash = variables.some(
          (e) => env.has(e.name) && JSON.stringify(env.get(e.name)) !== JSON.stringify(e),
        );
        if (clash) continue;
        needed.push(...variables);
      }
      taken.add(mount.mountPath);
      for (const e of needed) env.set(e.name, e);
      mounts.push({
        name: mount.name,
        mountPath: mount.mountPath,
        ...(mount.subPath ? { subPath: mount.subPath } : {}),
        ...(mount.subPathExpr ? { subPathExpr: mount.subPathExpr } : {}),
        ...(writable
          ? {}
          : {
              readOnly: true,
              // Mounts below the volume (a hostPath with submounts) are read-only too where
              // the kernel and runtime can do it; elsewhere the mount itself still is.
              recursiveReadOnly: "IfPossible",
            }),
      });
    }
  }
  return { mounts, env: [...env.values()] };
}

/** The uid/gid the app's first container runs as (container level first, then the pod's). */
function appIdentity(pod: V1Pod): { runAsUser?: number; runAsGroup?: number } {
  const first = pod.spec?.containers?.[0]?.securityContext;
  const podLevel = pod.spec?.securityContext;
  const runAsUser = first?.runAsUser ?? podLevel?.runAsUser;
  const runAsGroup = first?.runAsGroup ?? podLevel?.runAsGroup;
  return {
    ...(runAsUser !== undefined ? { runAsUser } : {}),
    ...(runAsGroup !== undefined ? { runAsGroup } : {}),
  };
}

/**
 * How the agent may read every file of the app's data, whatever uid owns it, with the
 * least the namespace's Pod Security Standard lets it have (PodSecurity is a validating
 * admission plugin: it checks the pod *after* this webhook, so a sidecar it refuses would
 * refuse the whole pod, and the app with it):
 * - privileged (no enforce label): root with only CAP_DAC_READ_SEARCH, the one capability
 *   that bypasses read and search permission checks and nothing else. Root because a
 *   capability granted to a non-root container never reaches the process's effective set.
 * - baseline: DAC_READ_SEARCH is not on baseline's list, DAC_OVERRIDE is. It also bypasses
 *   write checks, which buys nothing here: every mount and the root filesystem are read-only.
 * - restricted: no capability and no root at all; the agent runs as the app's own uid and
 *   gid (the pod's fsGroup and supplemental groups apply to both), so it reads what the
 *   app reads. Files the app itself cannot read are reported as unreadable by the job.
 * Always: no privilege escalation, read-only root filesystem, RuntimeDefault seccomp, and
 * runAsNonRoot stated explicitly so a pod-level runAsNonRoot: true cannot stop the sidecar
 * from starting (and with it, the app's containers, which start after it).
 */
function agentSecurityContext(
  pod: V1Pod,
  level: PodSecurityLevel,
  writable: boolean,
): V1Container["securityContext"] {
  const common = {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    seccompProfile: { type: "RuntimeDefault" },
  };
  if (level === "restricted")
    return { ...common, runAsNonRoot: true, ...appIdentity(pod), capabilities: { drop: ["ALL"] } };
  return {
    ...common,
    runAsUser: 0,
    runAsGroup: 0,
    runAsNonRoot: false,
    capabilities: {
      drop: ["ALL"],
      // A standby writes into directories the app owns and sets modes and times on what it
      // replaces: DAC_OVERRIDE and FOWNER, both on baseline's list.
      add: writable
        ? ["DAC_OVERRIDE", "FOWNER"]
        : [level === "baseline" ? "DAC_OVERRIDE" : "DAC_READ_SEARCH"],
    },
  };
}

/** The sidecar container for `pod`. */
export function agentContainer(
  pod: V1Pod,
  settings: SidecarSettings,
  role: AgentRole = BACKUP_ONLY,
): V1Container {
  const reserved = new Set([AGENT_CONTROL_CERTS_DIR, SERVICE_ACCOUNT_TOKEN_DIR, AGENT_STATE_DIR]);
  const { mounts, env } = dataMounts(pod, reserved, role.writable);
  return {
    name: SIDECAR_CONTAINER,
    image: settings.image,
    args: sidecarArguments(role),
    // A native sidecar: started before the app's containers, restarted on its own if it
    // exits, stopped after them; it never keeps a Job's pod from completing.
    restartPolicy: "Always",
    ...(env.length > 0 ? { env } : {}),
    ports: [
      { name: "control", containerPort: AGENT_CONTROL_PORT, protocol: "TCP" },
      { name: "health", containerPort: AGENT_HEALTH_PORT, protocol: "TCP" },
    ],
    // Liveness only. The kubelet starts the app's containers once a restartable init
    // container without a startupProbe is *running* (kuberuntime computeInitContainerActions);
    // a startupProbe would make them wait for the agent, and a sidecar's readinessProbe
    // counts towards the pod's Ready condition, so an agent still waiting for its control
    // Secret would take the app out of its Services. A failed liveness probe restarts the
    // sidecar alone, never the app; the thresholds are generous (about a minute).
    livenessProbe: {
      httpGet: { path: "/healthz", port: "health" },
      initialDelaySeconds: 10,
      periodSeconds: 20,
      timeoutSeconds: 5,
      failureThreshold: 3,
    },
    resources: {
      requests: { cpu: settings.cpuRequest, memory: settings.memoryRequest },
      limits: { memory: settings.memoryLimit },
    },
    terminationMessagePolicy: "FallbackToLogsOnError",
    securityContext: agentSecurityContext(pod, settings.podSecurity, role.writable),
    volumeMounts: [
      ...mounts,
      { name: CONTROL_VOLUME, mountPath: AGENT_CONTROL_CERTS_DIR, readOnly: true },
      noTokenMount(),
      { name: STATE_VOLUME, mountPath: AGENT_STATE_DIR },
    ],
  };
}

/**
 * The ServiceAccount admission plugin runs before mutating webhooks, and again after them
 * whenever a webhook changed the object (the API server reinvokes every in-tree mutating
 * plugin, apiserver admission/reinvocation.go): that second run would mount the pod's API
 * token into the sidecar too. It skips a container that already has a mount at the token
 * path (plugin/pkg/admission/serviceaccount, mountServiceAccountToken), so the sidecar
 * mounts an empty read-only directory there: the agent never holds the pod's token, and
 * the app's own automountServiceAccountToken is left as the app wants it.
 */
function noTokenMount(): V1VolumeMount {
  return { name: NO_TOKEN_VOLUME, mountPath: SERVICE_ACCOUNT_TOKEN_DIR, readOnly: true };
}

/** The agent's volumes: the same for every role (a primary's journal shares the state volume). */
export function sidecarVolumes(): V1Volume[] {
  return [
    { name: STATE_VOLUME, emptyDir: { sizeLimit: STATE_VOLUME_LIMIT } },
    // optional: the pod starts whether or not the BackupJob controller has created the
    // Secret yet; the agent waits for its files (agentFlags.controlCerts).
    {
      name: CONTROL_VOLUME,
      secret: { secretName: AGENT_CONTROL_SECRET, optional: true, defaultMode: 0o440 },
    },
    { name: NO_TOKEN_VOLUME, emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
  ];
}

/** RFC 6901: a key as one JSON Pointer segment. */
const pointer = (key: string) => key.replace(/~/g, "~0").replace(/\//g, "~1");

/**
 * The decision for `pod`, given every BackupJob in its namespace. `pod` is the object the
 * API server admits (with the ServiceAccount plugin's token mount already there, which
 * is a projected volume and so no data).
 */
export function injectionFor(
  pod: V1Pod,
  jobs: readonly InjectionJob[],
  settings: SidecarSettings,
  pairSides: readonly InjectionPairSide[] = [],
): InjectionDecision {
  const matched = matchingJobs(pod, jobs);
  const sides = matchingPairSides(pod, pairSides);
  if (matched.length === 0 && sides.length === 0)
    return { inject: false, reason: "no BackupJob or ReplicationPair selects this pod", notable: false };
  const spec = pod.spec;
  if (!spec) return { inject: false, reason: "the pod has no spec", notable: true };
  const names = new Set([
    SIDECAR_CONTAINER,
    ...matched.map((j) => j.spec.source.containerName ?? SIDECAR_CONTAINER),
    ...sides.map((side) => side.containerName ?? SIDECAR_CONTAINER),
  ]);
  const existing = [
    ...(spec.initContainers ?? []),
    ...(spec.containers ?? []),
    ...(spec.ephemeralContainers ?? []),
  ];
  const present = existing.find((c) => names.has(c.name));
  if (present)
    return {
      inject: false,
      reason: `the pod already has the agent container ${present.name}`,
      notable: false,
    };
  if (spec.os?.name === "windows")
    return { inject: false, reason: "the agent runs on Linux only; this is a Windows pod", notable: true };
  const ports = new Set([AGENT_CONTROL_PORT, AGENT_HEALTH_PORT]);
  const clash = existing.flatMap((c) => c.ports ?? []).find((p) => ports.has(p.containerPort));
  if (clash)
    return {
      inject: false,
      reason: `the pod already uses port ${clash.containerPort}, which the agent listens on`,
      notable: true,
    };
  const role: AgentRole = {
    writable: sides.some((side) => side.side === "standby"),
  };
  const volumes = sidecarVolumes();
  const volumeClash = (spec.volumes ?? []).find((v) => volumes.some((ours) => ours.name === v.name));
  if (volumeClash)
    return { inject: false, reason: `the pod already has a volume named ${volumeClash.name}`, notable: true };
  // A mount of a volume the pod lacks is valid once we add it (admission validates after
  // the webhooks): an app container must not get the agent's state or control certificates.
  const mountClash = existing
    .flatMap((c) => (c.volumeMounts ?? []).map((m) => ({ container: c.name, volume: m.name })))
    .find((m) => volumes.some((ours) => ours.name === m.volume));
  if (mountClash)
    return {
      inject: false,
      reason: `container ${mountClash.container} mounts ${mountClash.volume}, a volume of the agent's`,
      notable: true,
    };

  const container = agentContainer(pod, settings, role);
  const jobNames = matched.map((j) => j.metadata.name ?? "").sort();
  const pairNames = sides.map((side) => `${side.pair}/${side.side}`).sort();
  const patch: JsonPatchOperation[] = [];
  if (spec.initContainers?.length)
    patch.push({ op: "add", path: "/spec/initContainers/-", value: container });
  else patch.push({ op: "add", path: "/spec/initContainers", value: [container] });
  if (spec.volumes?.length)
    for (const v of volumes) patch.push({ op: "add", path: "/spec/volumes/-", value: v });
  else patch.push({ op: "add", path: "/spec/volumes", value: volumes });
  const annotation = [...jobNames, ...pairNames.map((name) => `replicationpair:${name}`)].join(",");
  if (pod.metadata?.annotations)
    patch.push({
      op: "add",
      path: `/metadata/annotations/${pointer(INJECTED_ANNOTATION)}`,
      value: annotation,
    });
  else patch.push({ op: "add", path: "/metadata/annotations", value: { [INJECTED_ANNOTATION]: annotation } });
  return { inject: true, jobs: jobNames, pairs: pairNames, container, volumes, patch };
}
