/**
 * Kubernetes Events on the objects the operator acts on, so `kubectl describe` tells
 * the story (CertificateIssued, ReceiverReady, InvalidSpec, ...). Recording an Event
 * never fails a reconcile: a lost Event is logged, not retried.
 */
import { CoreV1Api, type KubeConfig, type V1ObjectReference } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import type { Logger } from "./logger.ts";

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export class EventRecorder {
  private readonly api: CoreV1Api;
  private readonly component: string;
  private readonly identity: string;
  private readonly logger: Logger;

  constructor(kc: KubeConfig, component: string, identity: string, logger: Logger) {
    this.api = kc.makeApiClient(CoreV1Api);
    this.component = component;
    this.identity = identity;
    this.logger = logger;
  }

  async record(
    target: EventTarget,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    const namespace = target.metadata.namespace ?? "default";
    const involvedObject: V1ObjectReference = {
      apiVersion: target.apiVersion,
      kind: target.kind,
      name: target.metadata.name,
      namespace,
      uid: target.metadata.uid,
      resourceVersion: target.metadata.resourceVersion,
    };
    const now = new Date();
    try {
      await this.api.createNamespacedEvent({
        namespace,
        body: {
          metadata: { name: `${target.metadata.name}.${randomBytes(8).toString("hex")}`, namespace },
          involvedObject,
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: this.component },
          reportingComponent: `offsite.dev/${this.component}`,
          reportingInstance: this.identity,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      this.logger.warn({ err: error, reason }, "could not record an Event");
    }
  }
}
