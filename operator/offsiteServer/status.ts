/**
 * The status of an OffsiteServer, computed from what the reconcile observed; pure.
 * Ready means: the receiver pod is Running and Ready by its own probe, and sources have
 * an address to reach it.
 *
 * The subtle point: readiness comes from the pod, not from the StatefulSet's
 * readyReplicas, because only the pod says *why* it is not ready — its receiver
 * container waiting in CrashLoopBackOff or ImagePullBackOff, its last run's exit code and
 * termination message (the container's FallbackToLogsOnError policy makes that the
 * agent's last error line), or the scheduler's PodScheduled condition. Those reasons
 * become the Ready condition's reason, so `kubectl get offsiteserver` tells the story.
 */
import type {
  V1ContainerStatus,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Service,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { sizeToBytes } from "../../contract/units.ts";
import type { OffsiteServerSpec, OffsiteServerStatus } from "../../crds/schema/offsiteServer.ts";
import { AGENT_CONTROL_SECRET } from "../agentControl/names.ts";
import { setCondition, type Condition } from "../runtime/conditions.ts";
import type { SpecProblem } from "./desiredState.ts";
import { RECEIVER_CONTAINER, RESTART_ANNOTATION, SERVER_LABEL, offsiteServerNames } from "./names.ts";
import type { ReceiverPoll } from "./receiverPoll.ts";
import { MAX_STATUS_SOURCES, reportedFromStatus, sourcesStatus, type ExpectedSource } from "./sources.ts";

export interface ObservedServer {
  name: string;
  namespace: string;
  generation: number | undefined;
  annotations: Record<string, string> | undefined;
  spec: OffsiteServerSpec;
  previous: OffsiteServerStatus | undefined;
  statefulSet: V1StatefulSet | undefined;
  /** The receiver pod `<name>-0` (from the cache), when it exists. */
  pod: V1Pod | undefined;
  service: V1Service | undefined;
  claim: V1PersistentVolumeClaim | undefined;
  /** An address of a node, for NodePort endpoints without an externalAddress. */
  nodeAddress: string | undefined;
  certificateNotAfter: Date | undefined;
  problems: SpecProblem[];
  now: Date;
  /** This reconcile's poll of the receiver's control endpoint; undefined when it was not asked (not Ready). */
  receiverPoll?: ReceiverPoll;
  /** Where the poll went (pod IP:control port), for its condition's message. */
  controlAddress?: string;
  /** The sources BackupJobs send here (sources.ts: expectedSources). */
  expectedSources?: ExpectedSource[];
}

/** host:port where sources in other clusters reach the server, when known. */
export function externalEndpoint(
  spec: OffsiteServerSpec,
  service: V1Service | undefined,
  nodeAddress: string | undefined,
  internal: string,
): string | undefined {
  const external = spec.service.externalAddress;
  switch (spec.service.type) {
    case "ClusterIP":
      return external ? `${external}:${spec.port}` : internal;
    case "NodePort": {
      const nodePort = service?.spec?.ports?.[0]?.nodePort;
      const host = external ?? nodeAddress;
      return nodePort && host ? `${host}:${nodePort}` : undefined;
    }
    case "LoadBalancer": {
      const ingress = service?.status?.loadBalancer?.ingress?.[0];
      const host = external ?? ingress?.ip ?? ingress?.hostname;
      return host ? `${host}:${spec.port}` : undefined;
    }
  }
}

/** The receiver pod's readiness, and when not ready the reason and what to do. */
export interface ReceiverReadiness {
  ready: boolean;
  /** The container or scheduler reason (CrashLoopBackOff, Unschedulable, ...), or ReceiverNotReady. */
  reason: string;
  message: string;
  /** Not a wait that ends by itself: the receiver fails and needs someone to look. */
  failing: boolean;
}

/** Waiting reasons of a container on its way up; every other waiting reason is a failure. */
const STARTING = new Set(["ContainerCreating", "PodInitializing"]);
const IMAGE_REASONS = new Set([
  "ImagePullBackOff",
  "ErrImagePull",
  "ErrImageNeverPull",
  "InvalidImageName",
  "ImageInspectError",
  "RegistryUnavailable",
  "SignatureValidationFailed",
]);
const CONFIG_REASONS = new Set(["CreateContainerConfigError", "CreateContainerError"]);
/** A termination message in a condition: plenty for an error line, never a whole log. */
const MAX_TERMINATION_TEXT = 1024;

/**
 * The last thing the receiver said before it exited: the termination message's last
 * line, or its `message` field when that line is the agent's JSON error line
 * (`{"event":"error","message":"Unknown option '--tls-cert'. ..."}`), on one line.
 */
export function lastWords(terminationMessage: string | undefined): string | undefined {
  const lines = (terminationMessage ?? "").split("\n").filter((line) => line.trim() !== "");
  const fromJson = (line: string) => {
    try {
      const parsed = JSON.parse(line) as unknown;
      const message = (parsed as { message?: unknown } | null)?.message;
      return typeof message === "string" ? message : undefined;
    } catch {
      return undefined;
    }
  };
  const errorLine = [...lines].reverse().find((line) => fromJson(line) !== undefined);
  const text = (errorLine ? fromJson(errorLine)! : lines.at(-1))?.replace(/\s+/g, " ").trim();
  if (!text) return undefined;
  return text.length > MAX_TERMINATION_TEXT ? `${text.slice(0, MAX_TERMINATION_TEXT - 1)}…` : text;
}

/** `text` ended by exactly one full stop (a scheduler message brings its own). */
const sentence = (text: string) => `${text.replace(/[.\s]+$/, "")}.`;

/** A container reason as a condition reason (CamelCase), or the fallback. */
function asReason(reason: string | undefined, fallback: string): string {
  const cleaned = (reason ?? "").replace(/[^A-Za-z0-9_]/g, "").slice(0, 128);
  return /^[A-Za-z]/.test(cleaned) ? cleaned : fallback;
}

/**
 * Ready only when the pod is Running, not being deleted, and its Ready condition is True
 * (its readiness probe passed). Otherwise why not, from the most telling evidence: a
 * failing receiver container, the scheduler's refusal, or what is still being waited for.
 */
export function receiverReadiness(
  pod: V1Pod | undefined,
  context: {
    name: string;
    namespace: string;
    port: number;
    claimName: string;
    statefulSet: V1StatefulSet | undefined;
  },
): ReceiverReadiness {
  const podName = offsiteServerNames(context.name).pod;
  const notReady = (message: string): ReceiverReadiness => ({
    ready: false,
    reason: "ReceiverNotReady",
    message,
    failing: false,
  });
  if (!pod || pod.metadata?.labels?.[SERVER_LABEL] !== context.name) {
    const sts = context.statefulSet;
    return notReady(
      sts
        ? `Waiting for pod ${podName} to be created; StatefulSet ${context.name} has ${sts.status?.readyReplicas ?? 0} of ${sts.spec?.replicas ?? 1} replicas ready.`
        : `Waiting for StatefulSet ${context.name} and its pod ${podName}.`,
    );
  }
  const describe = `kubectl describe pod -n ${context.namespace} ${podName}`;
  const podCondition = (type: string) => pod.status?.conditions?.find((c) => c.type === type);
  const phase = pod.status?.phase ?? "Pending";
  if (pod.metadata?.deletionTimestamp) {
    return notReady(`Pod ${podName} is terminating (a restart or a rollout); waiting for its replacement.`);
  }
  if (phase === "Running" && podCondition("Ready")?.status === "True") {
    return {
      ready: true,
      reason: "ReceiverReady",
      message: `Pod ${podName} is Running and Ready.`,
      failing: false,
    };
  }

  const scheduled = podCondition("PodScheduled");
  if (phase === "Pending" && scheduled?.status === "False") {
    return {
      ready: false,
      reason: asReason(scheduled.reason, "Unschedulable"),
      message:
        `${sentence(`Pod ${podName} cannot be scheduled: ${scheduled.message ?? scheduled.reason ?? "no reason given"}`)} ` +
        `Check spec.nodeSelector and spec.resources.requests against the nodes, and that the data claim ${context.claimName} can bind (${describe}).`,
      failing: false,
    };
  }

  const container = pod.status?.containerStatuses?.find((c) => c.name === RECEIVER_CONTAINER);
  const image = container?.image ?? pod.spec?.containers.find((c) => c.name === RECEIVER_CONTAINER)?.image;
  const failure = container && containerFailure(container);
  if (container && failure) {
    const { reason, what } = failure;
    const restarts = container.restartCount ? ` It restarted ${container.restartCount} times.` : "";
    const hint = IMAGE_REASONS.has(reason)
      ? `Check the image ${image ?? "(none)"} (spec.image, or the operator's default agent image): that it exists and that the node can pull it, or has it loaded when imagePullPolicy is Never.`
      : CONFIG_REASONS.has(reason)
        ? `${describe} shows what is missing (a Secret, a volume) or what the runtime refused.`
        : reason === "OOMKilled"
          ? `Raise spec.resources.limits.memory; kubectl logs -n ${context.namespace} ${podName} -c ${RECEIVER_CONTAINER} --previous shows what it did.`
          : `kubectl logs -n ${context.namespace} ${podName} -c ${RECEIVER_CONTAINER} --previous shows its output; an image (spec.image) that does not match this operator's version is a common cause.`;
    return {
      ready: false,
      reason,
      message: `${sentence(`The receiver container of pod ${podName} ${what}`)}${restarts} ${hint}`,
      failing: true,
    };
  }

  if (phase === "Failed" || phase === "Succeeded") {
    const why = [pod.status?.reason, pod.status?.message].filter(Boolean).join(": ");
    return notReady(
      `Pod ${podName} is ${phase}${why ? ` (${why})` : ""}; the StatefulSet replaces it. ${describe} shows more.`,
    );
  }
  const waiting = container?.state?.waiting?.reason;
  if (waiting) return notReady(`Waiting for pod ${podName}: the receiver container is ${waiting}.`);
  if (container?.state?.running) {
    const probe = podCondition("Ready")?.message;
    return notReady(
      `Pod ${podName} runs, but its readiness probe has not passed yet: the receiver does not accept connections on port ${context.port}${probe ? ` (${probe})` : ""}.`,
    );
  }
  return notReady(`Waiting for pod ${podName} to start (${phase}).`);
}

/** Why the receiver container fails, when it does: its own reason and what happened. */
function containerFailure(container: V1ContainerStatus): { reason: string; what: string } | undefined {
  const last = container.lastState?.terminated;
  const lastSaid = lastWords(last?.message);
  const lastRun = last
    ? `; its last run exited with code ${last.exitCode}${last.reason ? ` (${last.reason})` : ""}${lastSaid ? `: ${lastSaid}` : ""}`
    : "";
  const waiting = container.state?.waiting;
  if (waiting?.reason && !STARTING.has(waiting.reason)) {
    return {
      reason: asReason(waiting.reason, "ContainerWaiting"),
      what: `is waiting in ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ""}${lastRun}`,
    };
  }
  const terminated = container.state?.terminated;
  if (terminated) {
    const said = lastWords(terminated.message);
    return {
      reason: asReason(terminated.reason, terminated.exitCode === 0 ? "Completed" : "Error"),
      what: `exited with code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ""}${said ? `: ${said}` : ""}`,
    };
  }
  if (container.state?.running && !container.ready && last && last.exitCode !== 0) {
    return {
      reason: asReason(last.reason, "Error"),
      what: `runs again but is not ready${lastRun}`,
    };
  }
  return undefined;
}

export function computeStatus(o: ObservedServer): OffsiteServerStatus {
  const names = offsiteServerNames(o.name);
  const internal = `${names.service}.${o.namespace}.svc:${o.spec.port}`;
  const endpoint = externalEndpoint(o.spec, o.service, o.nodeAddress, internal);
  const sts = o.statefulSet;
  const receiver = receiverReadiness(o.pod, {
    name: o.name,
    namespace: o.namespace,
    port: o.spec.port,
    claimName: o.spec.storage.existingClaim ?? names.dataClaim,
    statefulSet: sts,
  });
  const rolledOut =
    sts !== undefined &&
    (sts.status?.observedGeneration ?? 0) >= (sts.metadata?.generation ?? 0) &&
    (sts.status?.updatedReplicas ?? 0) >= (sts.spec?.replicas ?? 0) &&
    sts.status?.currentRevision === sts.status?.updateRevision;

  let ready: Parameters<typeof setCondition>[1];
  if (o.spec.suspend) {
    ready = {
      type: "Ready",
      status: "False",
      reason: "Suspended",
      message: "spec.suspend is true: the receiver is scaled to zero; its data is kept.",
    };
  } else if (!receiver.ready) {
    ready = { type: "Ready", status: "False", reason: receiver.reason, message: receiver.message };
  } else if (!endpoint) {
    ready = {
      type: "Ready",
      status: "False",
      reason: o.spec.service.type === "LoadBalancer" ? "LoadBalancerPending" : "EndpointUnknown",
      message:
        o.spec.service.type === "LoadBalancer"
          ? "The receiver runs, but the load balancer has no address yet; set service.externalAddress to publish one yourself."
          : "The receiver runs, but no node address is known for the NodePort; set service.externalAddress.",
    };
  } else {
    ready = {
      type: "Ready",
      status: "True",
      reason: "ReceiverReady",
      message: `Sources reach the receiver at ${endpoint}.`,
    };
  }

  let conditions: Condition[] = setCondition(o.previous?.conditions, ready, o.generation, o.now);
  conditions = setCondition(
    conditions,
    o.problems.length > 0
      ? {
          type: "Degraded",
          status: "True",
          reason: o.problems[0]!.reason,
          message: o.problems.map((p) => p.message).join(" "),
        }
      : {
          type: "Degraded",
          status: "False",
          reason: "AsSpecified",
          message: "Everything is as the spec asks.",
        },
    o.generation,
    o.now,
  );
  conditions = setCondition(
    conditions,
    !o.spec.suspend && !rolledOut
      ? {
          type: "Progressing",
          status: "True",
          reason: "RollingOut",
          message: "The receiver is being created or updated.",
        }
      : {
          type: "Progressing",
          status: "False",
          reason: "RolledOut",
          message: "The receiver runs the current spec.",
        },
    o.generation,
    o.now,
  );

  const phase: OffsiteServerStatus["phase"] = o.spec.suspend
    ? "Suspended"
    : ready.status === "True"
      ? o.problems.length > 0
        ? "Degraded"
        : "Ready"
      : sts === undefined
        ? "Pending"
        : receiver.failing
          ? "Degraded"
          : "Provisioning";

  const capacityText = o.claim?.status?.capacity?.storage;
  const status: OffsiteServerStatus = {
    ...o.previous,
    phase,
    internalEndpoint: internal,
    caSecretName: names.caSecret,
    serverCertificateSecretName: names.serverTlsSecret,
    conditions,
    observedGeneration: o.generation ?? 0,
  };
  if (endpoint) status.endpoint = endpoint;
  else delete status.endpoint;
  if (o.certificateNotAfter)
    status.certificateNotAfter = o.certificateNotAfter.toISOString().replace(/\.\d{3}Z$/, "Z");
  if (capacityText) status.capacity = { ...o.previous?.capacity, totalBytes: sizeToBytes(capacityText) };
  const restartAt = o.annotations?.[RESTART_ANNOTATION];
  if (restartAt) status.restartedAt = restartAt;

  // Check-ins and usage: this poll's report, or the last one's as status kept it.
  const poll = o.receiverPoll;
  const report = poll?.ok ? poll.report : undefined;
  const { sources, total } = sourcesStatus({
    reported: report ? report.sources : reportedFromStatus(o.previous?.sources),
    expected: o.expectedSources ?? [],
    suspended: o.spec.suspendedSources,
    now: o.now,
  });
  status.sources = sources;
  if (report) {
    status.capacity = {
      ...status.capacity,
      totalBytes: capacityText ? sizeToBytes(capacityText) : report.volume.totalBytes,
      usedBytes: report.volume.usedBytes,
      reportedAt: report.reportedAt,
    };
  }
  status.conditions = setCondition(
    status.conditions,
    sourcesReported(o, poll, sources.length, total),
    o.generation,
    o.now,
  );
  return status;
}

/** The SourcesReported condition: whether status.sources and capacity are this reconcile's report. */
function sourcesReported(
  o: ObservedServer,
  poll: ReceiverPoll | undefined,
  listed: number,
  total: number,
): Parameters<typeof setCondition>[1] {
  const bounded =
    total > listed
      ? ` status.sources lists the first ${MAX_STATUS_SOURCES} of ${total} by site and source.`
      : "";
  const kept = o.previous?.capacity?.reportedAt
    ? ` status.sources and status.capacity keep the report of ${o.previous.capacity.reportedAt}.`
    : " status.sources lists only the sources BackupJobs and spec.suspendedSources name.";
  if (poll?.ok) {
    const { volume, reportedAt } = poll.report;
    return {
      type: "SourcesReported",
      status: "True",
      reason: "ReceiverReported",
      message: `The receiver reported ${poll.report.sources.length} sources and ${volume.usedBytes} of ${volume.totalBytes} bytes used at ${reportedAt}.${bounded}`,
    };
  }
  if (poll) {
    return {
      type: "SourcesReported",
      status: "False",
      reason: poll.reason,
      message:
        `Asking the receiver for its check-ins${o.controlAddress ? ` at ${o.controlAddress}` : ""} failed: ${sentence(poll.message)}` +
        `${kept}${bounded} The receiver serves its control endpoint with Secret ${AGENT_CONTROL_SECRET} of namespace ${o.namespace} (the operator issues it); ` +
        "the operator must reach the pod's IP on its control port.",
    };
  }
  return {
    type: "SourcesReported",
    status: "False",
    reason: o.spec.suspend ? "Suspended" : "ReceiverNotReady",
    message: `${o.spec.suspend ? "spec.suspend is true" : "The receiver is not Ready"}, so it was not asked for its check-ins.${kept}${bounded}`,
  };
}
