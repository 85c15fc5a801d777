/**
 * The status of an OffsiteServer, computed from what the reconcile observed; pure.
 * Ready means: the receiver pod is ready, and sources have an address to reach it.
 */
import type { V1PersistentVolumeClaim, V1Service, V1StatefulSet } from "@kubernetes/client-node";
import { sizeToBytes } from "../../contract/units.ts";
import type { OffsiteServerSpec, OffsiteServerStatus } from "../../crds/schema/offsiteServer.ts";
import { setCondition, type Condition } from "../runtime/conditions.ts";
import type { SpecProblem } from "./desiredState.ts";
import { RESTART_ANNOTATION, offsiteServerNames } from "./names.ts";

export interface ObservedServer {
  name: string;
  namespace: string;
  generation: number | undefined;
  annotations: Record<string, string> | undefined;
  spec: OffsiteServerSpec;
  previous: OffsiteServerStatus | undefined;
  statefulSet: V1StatefulSet | undefined;
  service: V1Service | undefined;
  claim: V1PersistentVolumeClaim | undefined;
  /** An address of a node, for NodePort endpoints without an externalAddress. */
  nodeAddress: string | undefined;
  certificateNotAfter: Date | undefined;
  problems: SpecProblem[];
  now: Date;
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

export function computeStatus(o: ObservedServer): OffsiteServerStatus {
  const names = offsiteServerNames(o.name);
  const internal = `${names.service}.${o.namespace}.svc:${o.spec.port}`;
  const endpoint = externalEndpoint(o.spec, o.service, o.nodeAddress, internal);
  const sts = o.statefulSet;
  const podReady = (sts?.status?.readyReplicas ?? 0) >= 1;
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
  } else if (!podReady) {
    ready = {
      type: "Ready",
      status: "False",
      reason: "ReceiverNotReady",
      message: `Waiting for pod ${names.pod} to become ready.`,
    };
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
  status.sources ??= [];
  return status;
}
