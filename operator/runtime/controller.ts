/**
 * What a controller is: a registration the runtime (controllerRuntime.ts) runs. It names
 * its kind, the resources whose changes map back to one of its objects, and a reconcile
 * function; the runtime owns everything else — the work queue, the shared reflectors,
 * the finalizer, the status write (also after a failed step), the Ready Events and the
 * metrics. Registering a kind is a few lines:
 *
 *   export const backupJobController: ControllerDefinition<BackupJob> = {
 *     kind: "BackupJob", group: GROUP, version: VERSION, plural: "backupjobs",
 *     watches: [{ resource: SECRETS }],           // mapped back by the offsite.dev/backupjob label
 *     reconcile: reconcileBackupJob,              // returns { status, requeueAfterMs? }
 *   };
 *
 * The subtle point: `reconcile` gets the object from the reflector's cache, which may be
 * a little behind the API server. That is safe for the primary object (a stale
 * resourceVersion costs one 409 on the status write, which is retried), but a reconcile
 * must read anything whose absence it would act on — a CA Secret, whose cache miss would
 * mint a second CA — from the API server itself. What a reconcile only reports on (a
 * pod's state, for status) it reads from the cache with `ctx.cached`: a stale or missing
 * entry costs one run with an old status, and the next change of it queues a new run.
 * Cached objects are shared: never mutate them.
 */
import type { KubeConfig, KubernetesObject, V1ObjectMeta } from "@kubernetes/client-node";
import type { CertificateAndKey } from "../../pki/certificates.ts";
import type { Condition } from "./conditions.ts";
import type { EventRecorder } from "./events.ts";
import type { Applier } from "./kubeApi.ts";
import type { Logger } from "./logger.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { WatchedResource } from "./resources.ts";

/** What every reconcile may use from the outside world; no globals. */
export interface ControllerContext {
  kc: KubeConfig;
  applier: Applier;
  events: EventRecorder;
  metrics: OperatorMetrics;
  logger: Logger;
  /** The agent image when a spec names none. */
  defaultImage: string;
  /** The operator's CA (agentControl/operatorCa.ts): signs the control plane's certificates. */
  operatorCa: CertificateAndKey;
  /** The operator's own namespace. */
  operatorNamespace: string;
  now: () => Date;
  /**
   * An object of a watched resource from the runtime's cache, or undefined when the cache
   * has none. For what a reconcile reports on, never for what it would act on when absent.
   * Throws for a resource no controller watches (a programming error).
   */
  cached<T extends KubernetesObject>(
    resource: WatchedResource,
    namespace: string,
    name: string,
  ): T | undefined;
}

/** The status fields the runtime reads and writes on every kind. */
export interface ObjectStatus {
  phase?: string;
  conditions?: Condition[];
  observedGeneration?: number;
}

/** One of our custom resources, as the API server (or the cache) returns it. */
export interface CustomObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  status?: ObjectStatus;
}

export interface Watch {
  resource: WatchedResource;
  /**
   * The key (namespace/name) of this controller's object a changed object belongs to, or
   * undefined when it belongs to none. Defaults to the owner label of the controller's
   * kind (ownership.ts: ownerKeyByLabel).
   */
  ownerKey?: (object: KubernetesObject) => string | undefined;
}

export interface ReconcileOutcome<T extends CustomObject> {
  /** The whole new status; written when it differs from the object's. */
  status: NonNullable<T["status"]>;
  /** Reconcile again after this long even without an event (renewals, polling). */
  requeueAfterMs?: number;
}

export interface ControllerDefinition<T extends CustomObject = CustomObject> {
  kind: string;
  group: string;
  version: string;
  plural: string;
  /** Owned or related resources whose changes requeue an object of this kind. */
  watches: readonly Watch[];
  /** ReconcileError reasons of its own, so their error series exist from the start. */
  errorReasons?: readonly string[];
  /** status.phase written when a step fails (for kinds with a phase). */
  failurePhase?: string;
  /**
   * Drives the object one step towards its spec and returns its status. Must be
   * idempotent. Throwing is a failed step: the runtime writes Ready=False with the
   * error's reason and message, records a Warning Event, and retries with back-off.
   */
  reconcile(ctx: ControllerContext, object: T, log: Logger): Promise<ReconcileOutcome<T>>;
  /**
   * With a finalize step the runtime keeps the finalizer on every object of the kind and,
   * once the object is being deleted, runs this (idempotent; throwing retries) before
   * removing the finalizer. It returns what it did; the runtime records that as the
   * `Finalized` Event once the finalizer is gone, so a retried removal (a 409 on a stale
   * read) runs the step again but never tells the story twice.
   */
  finalize?(ctx: ControllerContext, object: T, log: Logger): Promise<string>;
  /** Exports an object's status as metrics; called after every status the runtime writes. */
  publish?(ctx: ControllerContext, object: T, status: NonNullable<T["status"]>): void;
  /** Drops what is kept about an object that is gone (its metric series). */
  forget?(ctx: ControllerContext, namespace: string, name: string): void;
}

/** Where a kind's objects live in the API: what a finalizer patch or a status write needs. */
export type KindCoordinates = Pick<ControllerDefinition, "group" | "version" | "plural">;
