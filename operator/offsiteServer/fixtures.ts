/** Fluent test fixtures: `anOffsiteServer().withPort(6000).suspended().build()`. */
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodCondition,
  V1Service,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { offsiteServerSpec, type OffsiteServerSpec } from "../../crds/schema/offsiteServer.ts";
import { desiredStatefulSet, type ServerIdentity } from "./desiredState.ts";
import { offsiteServerLabels } from "./names.ts";

export function anOffsiteServer(name = "vault", namespace = "backups") {
  const identity: ServerIdentity = { name, namespace, uid: "0b6c1a4e-uid", annotations: {} };
  let raw: Record<string, unknown> = {};
  const builder = {
    with(fields: Record<string, unknown>) {
      raw = { ...raw, ...fields };
      return builder;
    },
    withPort: (port: number) => builder.with({ port }),
    withStorage: (storage: Record<string, unknown>) => builder.with({ storage }),
    withService: (service: Record<string, unknown>) => builder.with({ service }),
    suspended: () => builder.with({ suspend: true }),
    restartedAt(value: string) {
      identity.annotations = { ...identity.annotations, "offsite.dev/restart-at": value };
      return builder;
    },
    identity: () => identity,
    spec: (): OffsiteServerSpec => offsiteServerSpec.parse(raw),
  };
  return builder;
}

/** The receiver container the operator renders for an OffsiteServer with these spec fields. */
export function aReceiverContainer(fields: Record<string, unknown> = {}): V1Container {
  const server = anOffsiteServer().with(fields);
  const sts = desiredStatefulSet({
    server: server.identity(),
    spec: server.spec(),
    defaultImage: "offsite/agent:test",
    tlsChecksum: "c1",
  });
  return sts.spec!.template.spec!.containers[0]!;
}

export function aClaim(size: string, storageClassName?: string, capacity?: string): V1PersistentVolumeClaim {
  return {
    spec: { resources: { requests: { storage: size } }, ...(storageClassName ? { storageClassName } : {}) },
    status: capacity ? { capacity: { storage: capacity } } : {},
  };
}

export function aStatefulSet(ready: number, options: { updating?: boolean } = {}): V1StatefulSet {
  return {
    metadata: { generation: 2 },
    spec: { replicas: 1, selector: {}, serviceName: "x", template: {} },
    status: {
      replicas: 1,
      readyReplicas: ready,
      updatedReplicas: options.updating ? 0 : 1,
      observedGeneration: 2,
      currentRevision: "r1",
      updateRevision: options.updating ? "r2" : "r1",
    },
  };
}

export function aService(nodePort?: number, ingress?: { ip?: string; hostname?: string }): V1Service {
  return {
    spec: { ports: [{ port: 5722, ...(nodePort ? { nodePort } : {}) }] },
    status: ingress ? { loadBalancer: { ingress: [ingress] } } : {},
  };
}

/**
 * The receiver pod `<server>-0` as the kubelet reports it:
 * `aPod().crashLooping({ exitCode: 2, message: "..." }).build()`. Starts Running and Ready.
 */
export function aPod(server = "vault", namespace = "backups") {
  let phase = "Running";
  let conditions: V1PodCondition[] = [
    { type: "PodScheduled", status: "True" },
    { type: "Initialized", status: "True" },
    { type: "ContainersReady", status: "True" },
    { type: "Ready", status: "True" },
  ];
  let container: V1ContainerStatus = {
    name: "receiver",
    image: "offsite/agent:test",
    imageID: "",
    ready: true,
    restartCount: 0,
    started: true,
    state: { running: { startedAt: new Date("2026-11-21T11:00:00Z") } },
  };
  let containers: V1ContainerStatus[] | undefined = [container];
  let deletionTimestamp: Date | undefined;
  const notReady = (message?: string) => {
    conditions = conditions.map((c) =>
      c.type === "Ready" || c.type === "ContainersReady"
        ? { ...c, status: "False", reason: "ContainersNotReady", ...(message ? { message } : {}) }
        : c,
    );
  };
  const withContainer = (state: V1ContainerState, fields: Partial<V1ContainerStatus> = {}) => {
    container = { ...container, ready: false, started: false, state, ...fields };
    containers = [container];
  };
  const builder = {
    /** Running, its readiness probe not passed yet. */
    notReadyYet() {
      notReady("containers with unready status: [receiver]");
      container = { ...container, ready: false };
      containers = [container];
      return builder;
    },
    /** Exited with `exitCode` and `message` (the termination message), now backing off. */
    crashLooping({
      exitCode,
      message,
      restarts = 3,
    }: {
      exitCode: number;
      message?: string;
      restarts?: number;
    }) {
      notReady("containers with unready status: [receiver]");
      withContainer(
        {
          waiting: {
            reason: "CrashLoopBackOff",
            message: `back-off 40s restarting failed container=receiver pod=${server}-0_${namespace}(0b6c1a4e)`,
          },
        },
        {
          restartCount: restarts,
          lastState: {
            terminated: {
              exitCode,
              reason: "Error",
              ...(message !== undefined ? { message } : {}),
              startedAt: new Date("2026-11-21T11:59:00Z"),
              finishedAt: new Date("2026-11-21T11:59:01Z"),
            },
          },
        },
      );
      return builder;
    },
    /** The container waits with `reason` (ImagePullBackOff, CreateContainerConfigError, ...). */
    waiting(reason: string, message?: string) {
      phase = "Pending";
      notReady("containers with unready status: [receiver]");
      withContainer({ waiting: { reason, ...(message ? { message } : {}) } });
      return builder;
    },
    /** Pending: the scheduler found no node. */
    unschedulable(message: string) {
      phase = "Pending";
      conditions = [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message }];
      containers = undefined;
      return builder;
    },
    terminating() {
      deletionTimestamp = new Date("2026-11-21T11:59:30Z");
      return builder;
    },
    build(): V1Pod {
      return {
        metadata: {
          name: `${server}-0`,
          namespace,
          labels: offsiteServerLabels(server),
          ...(deletionTimestamp ? { deletionTimestamp } : {}),
        },
        spec: { containers: [{ name: "receiver", image: "offsite/agent:test" }] },
        status: { phase, conditions, ...(containers ? { containerStatuses: containers } : {}) },
      };
    },
  };
  return builder;
}
