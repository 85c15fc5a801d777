/** Fluent test fixtures: `anOffsiteServer().withPort(6000).suspended().build()`. */
import type { V1Container, V1PersistentVolumeClaim, V1Service, V1StatefulSet } from "@kubernetes/client-node";
import { offsiteServerSpec, type OffsiteServerSpec } from "../../crds/schema/offsiteServer.ts";
import { desiredStatefulSet, type ServerIdentity } from "./desiredState.ts";

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
