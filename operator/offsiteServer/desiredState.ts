/**
 * What should exist for an OffsiteServer, as pure functions of the observed state:
 * the receiver StatefulSet, its Service and its data claim. No I/O here, so every
 * decision is unit-tested without a cluster; reconcileOffsiteServer applies the result.
 *
 * The data claim is a plain PVC rather than a volumeClaimTemplate because templates are
 * immutable: growing the volume must be a patch of the claim. It never carries an owner
 * reference, so garbage collection cannot delete data; only the finalizer does, and
 * only when retainPolicy is Delete.
 */
import type { V1PersistentVolumeClaim, V1Service, V1StatefulSet } from "@kubernetes/client-node";
import { renderFlags } from "../../contract/flags.ts";
import { DEFAULT_RETENTION } from "../../contract/retention.ts";
import { DEFAULT_CONTROL_PORT } from "../../contract/reports.ts";
import { DEFAULT_HEALTH_PORT, receiveFlags, type ReceiveOptions } from "../../contract/roles.ts";
import { durationToMs, sizeToBytes } from "../../contract/units.ts";
import type { OffsiteServerSpec } from "../../crds/schema/offsiteServer.ts";
import { AGENT_CONTROL_CERTS_DIR, AGENT_CONTROL_SECRET } from "../agentControl/names.ts";
import {
  RECEIVER_CONTAINER,
  RECEIVER_PORT_NAME,
  RESTART_ANNOTATION,
  offsiteServerLabels,
  offsiteServerNames,
  offsiteServerSelector,
  serverOwnerReference,
} from "./names.ts";

export const AGENT_UID = 65532;
/** Where the receiver container sees its data volume and its TLS Secret. */
export const RECEIVER_DATA_DIR = "/data";
export const RECEIVER_CERTS_DIR = "/etc/offsite/tls";

/**
 * The receiver container's args: `offsite receive` with what the spec says, rendered from
 * the contract's flag table (contract/roles.ts), so the agent parses exactly these.
 */
const HEALTH_PORT_NAME = "health";
export const CONTROL_PORT_NAME = "control";

/** The receiver's probe port: the contract's default, unless the spec's port takes it. */
function healthPortOf(spec: OffsiteServerSpec): number {
  return spec.port === DEFAULT_HEALTH_PORT ? DEFAULT_HEALTH_PORT + 1 : DEFAULT_HEALTH_PORT;
}

/**
 * The receiver's control port (GET /v1/receiver, which the operator polls by pod IP): the
 * contract's default, or the next port that neither spec.port nor the probe port takes.
 */
export function receiverControlPort(spec: OffsiteServerSpec): number {
  const taken = new Set([spec.port, healthPortOf(spec)]);
  let port = DEFAULT_CONTROL_PORT;
  while (taken.has(port)) port++;
  return port;
}

export function receiverArguments(spec: OffsiteServerSpec): string[] {
  const options: ReceiveOptions = {
    root: RECEIVER_DATA_DIR,
    certs: RECEIVER_CERTS_DIR,
    host: "0.0.0.0",
    port: spec.port,
    ...DEFAULT_RETENTION,
    ...spec.retention,
    maxConcurrentJobs: spec.maxConcurrentJobs,
    suspendedSources: spec.suspendedSources,
    idleTimeout: durationToMs(spec.idleTimeout),
    healthPort: healthPortOf(spec),
    // Check-ins and usage for status.sources and status.capacity (agent/CONTROL.md).
    controlPort: receiverControlPort(spec),
    controlCerts: AGENT_CONTROL_CERTS_DIR,
  };
  return ["receive", ...renderFlags(receiveFlags, options)];
}

export interface ServerIdentity {
  name: string;
  namespace: string;
  uid: string;
  annotations?: Record<string, string>;
}

export interface StatefulSetInputs {
  server: ServerIdentity;
  spec: OffsiteServerSpec;
  /** The agent image when the spec names none. */
  defaultImage: string;
  /** A digest of the serving certificate: a new certificate rolls the pod. */
  tlsChecksum: string;
}

export function desiredStatefulSet({
  server,
  spec,
  defaultImage,
  tlsChecksum,
}: StatefulSetInputs): V1StatefulSet {
  const names = offsiteServerNames(server.name);
  const labels = offsiteServerLabels(server.name);
  const restartAt = server.annotations?.[RESTART_ANNOTATION];
  const claimName = spec.storage.existingClaim ?? names.dataClaim;
  const resources = spec.resources
    ? {
        ...(spec.resources.requests ? { requests: stringValues(spec.resources.requests) } : {}),
        ...(spec.resources.limits ? { limits: stringValues(spec.resources.limits) } : {}),
      }
    : undefined;
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: {
      name: names.statefulSet,
      namespace: server.namespace,
      labels,
      ownerReferences: [serverOwnerReference(server)],
    },
    spec: {
      replicas: spec.suspend ? 0 : 1,
      serviceName: names.service,
      selector: { matchLabels: offsiteServerSelector(server.name) },
      updateStrategy: { type: "RollingUpdate" },
      template: {
        metadata: {
          labels,
          annotations: {
            "offsite.dev/tls-checksum": tlsChecksum,
            ...(restartAt ? { "offsite.dev/restarted-at": restartAt } : {}),
          },
        },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: AGENT_UID,
            runAsGroup: AGENT_UID,
            fsGroup: AGENT_UID,
            fsGroupChangePolicy: "OnRootMismatch",
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: RECEIVER_CONTAINER,
              image: spec.image ?? defaultImage,
              args: receiverArguments(spec),
              // A receiver that exits on an error leaves its last log lines (the agent's
              // JSON error line) as the termination message, which status reports.
              terminationMessagePolicy: "FallbackToLogsOnError",
              ports: [
                { name: RECEIVER_PORT_NAME, containerPort: spec.port, protocol: "TCP" },
                { name: HEALTH_PORT_NAME, containerPort: healthPortOf(spec), protocol: "TCP" },
                { name: CONTROL_PORT_NAME, containerPort: receiverControlPort(spec), protocol: "TCP" },
              ],
              // HTTP probes answered by the receiver's event loop (agent/receiver/healthServer.ts):
              // a TCP probe of the TLS port passes even when the process hangs. Ready once it
              // accepts TLS connections; restarted after ~30 s without an answer.
              readinessProbe: { httpGet: { path: "/readyz", port: HEALTH_PORT_NAME }, periodSeconds: 5 },
              livenessProbe: {
                httpGet: { path: "/healthz", port: HEALTH_PORT_NAME },
                periodSeconds: 10,
                timeoutSeconds: 5,
                failureThreshold: 3,
              },
              ...(resources ? { resources } : {}),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              volumeMounts: [
                { name: "data", mountPath: RECEIVER_DATA_DIR },
                { name: "tls", mountPath: RECEIVER_CERTS_DIR, readOnly: true },
                { name: "control", mountPath: AGENT_CONTROL_CERTS_DIR, readOnly: true },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [
            { name: "data", persistentVolumeClaim: { claimName } },
            { name: "tls", secret: { secretName: names.serverTlsSecret, defaultMode: 0o440 } },
            // The namespace's agent control Secret (operator/agentControl): optional, so the
            // pod never waits for it; without it the receiver serves data and refuses control
            // connections until the kubelet mounts it (the agent reads the directory again).
            {
              name: "control",
              secret: { secretName: AGENT_CONTROL_SECRET, defaultMode: 0o440, optional: true },
            },
            { name: "tmp", emptyDir: {} },
          ],
        },
      },
    },
  };
}

function stringValues(values: Record<string, string | number | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) out[key] = String(value);
  return out;
}

export function desiredService(server: ServerIdentity, spec: OffsiteServerSpec): V1Service {
  const names = offsiteServerNames(server.name);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: names.service,
      namespace: server.namespace,
      labels: offsiteServerLabels(server.name),
      ...(spec.service.annotations ? { annotations: spec.service.annotations } : {}),
      ownerReferences: [serverOwnerReference(server)],
    },
    spec: {
      type: spec.service.type,
      selector: offsiteServerSelector(server.name),
      ports: [
        {
          name: RECEIVER_PORT_NAME,
          port: spec.port,
          targetPort: RECEIVER_PORT_NAME,
          protocol: "TCP",
          ...(spec.service.type === "NodePort" && spec.service.nodePort
            ? { nodePort: spec.service.nodePort }
            : {}),
        },
      ],
    },
  };
}

/** A problem the reconcile reports in status instead of acting on it. */
export interface SpecProblem {
  reason: string;
  message: string;
}

export interface ClaimDecision {
  /** The claim to apply, or undefined when the user's existing claim is used. */
  claim?: V1PersistentVolumeClaim;
  problems: SpecProblem[];
}

/**
 * The data claim: created at the requested size, grown when the spec grows, never
 * shrunk (Kubernetes cannot) and never moved to another class (immutable) — those
 * two are reported instead.
 */
export function desiredDataClaim(
  server: ServerIdentity,
  spec: OffsiteServerSpec,
  observed: V1PersistentVolumeClaim | undefined,
): ClaimDecision {
  if (spec.storage.existingClaim) return { problems: [] };
  const names = offsiteServerNames(server.name);
  const requested = String(spec.storage.size ?? "10Gi");
  const problems: SpecProblem[] = [];
  let size = requested;
  const current = observed?.spec?.resources?.requests?.storage;
  if (current !== undefined && sizeToBytes(requested) < sizeToBytes(current)) {
    problems.push({
      reason: "StorageShrinkRefused",
      message: `storage.size ${requested} is smaller than the data claim's ${current}; Kubernetes cannot shrink a volume, so it stays ${current}. Set the size back to at least ${current}.`,
    });
    size = current;
  }
  const observedClass = observed?.spec?.storageClassName;
  let storageClassName = spec.storage.storageClassName;
  if (observed && storageClassName !== undefined && observedClass !== storageClassName) {
    problems.push({
      reason: "StorageClassImmutable",
      message: `storage.storageClassName ${storageClassName} differs from the data claim's ${observedClass ?? "(default)"}; a claim's class cannot change. Move the data to a new OffsiteServer instead.`,
    });
    storageClassName = observedClass;
  }
  return {
    claim: {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: names.dataClaim,
        namespace: server.namespace,
        labels: offsiteServerLabels(server.name),
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        resources: { requests: { storage: size } },
        ...(storageClassName !== undefined ? { storageClassName } : {}),
      },
    },
    problems,
  };
}
