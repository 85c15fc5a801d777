/**
 * Runs the registered controllers (controller.ts): one work queue per controller, one
 * Reflector per watched resource shared by every controller that watches it, and around
 * each reconcile the parts every kind shares — read the object from the cache, the
 * finalizer, the status write (also after a failed step), the Ready Events, metrics.
 *
 * The subtle point: keys are held back until every reflector has synced. A reconcile
 * reads its object from the cache, and before the first list a cache miss would look
 * like a deleted object; the first list of each primary resource queues every object
 * anyway, so nothing is lost by waiting.
 */
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { CertificateAndKey } from "../../pki/certificates.ts";
import type { ControllerContext, ControllerDefinition, CustomObject, ObjectStatus } from "./controller.ts";
import { EventRecorder } from "./events.ts";
import { lifecycleStep, patchFinalizer } from "./finalizers.ts";
import { Applier, KNOWN_ERROR_REASONS, errorMessage, errorReason } from "./kubeApi.ts";
import { forObject, type Logger } from "./logger.ts";
import type { OperatorMetrics } from "./metrics.ts";
import { ownerKeyByLabel } from "./ownership.ts";
import { Reflector, objectKey } from "./reflector.ts";
import { customResource, type WatchedResource } from "./resources.ts";
import { failedStatus, recordReadyChange, reportsFailure, writeStatus } from "./statusWriter.ts";
import { WorkQueue, type ReconcileResult } from "./workQueue.ts";

export interface ControllerRuntimeOptions {
  kc: KubeConfig;
  controllers: readonly ControllerDefinition[];
  metrics: OperatorMetrics;
  logger: Logger;
  /** Reconciles at once per controller (different objects only). */
  concurrency: number;
  /** The reflectors' periodic relist. */
  relistPeriodMs: number;
  /** This replica's name, reported on Events. */
  identity: string;
  defaultImage: string;
  /** Loaded when the controllers start (every start: a new leader reads it again). */
  loadOperatorCa: () => Promise<CertificateAndKey>;
  operatorNamespace: string;
  now?: () => Date;
}

interface Route {
  resource: WatchedResource;
  /** Maps a changed object to keys of one controller. */
  listeners: ((object: KubernetesObject) => void)[];
}

interface Running {
  queues: WorkQueue[];
  reflectors: Reflector<KubernetesObject>[];
  timers: NodeJS.Timeout[];
}

/** The primary resource of a controller: its own kind, every object. */
const primaryOf = (c: ControllerDefinition) => customResource(c.group, c.version, c.plural);

/** Every watched resource of `controllers`, primaries included, each once. */
export function watchedResources(controllers: readonly ControllerDefinition[]): WatchedResource[] {
  const byName = new Map<string, WatchedResource>();
  for (const c of controllers) {
    for (const resource of [primaryOf(c), ...c.watches.map((w) => w.resource)]) {
      byName.set(resource.name, resource);
    }
  }
  return [...byName.values()];
}

export class ControllerRuntime {
  private readonly options: ControllerRuntimeOptions;
  private running: Running | undefined;

  /** Registers the controllers; their metric series exist from here on, at 0. */
  constructor(options: ControllerRuntimeOptions) {
    this.options = options;
    options.metrics.startSeries({
      kinds: options.controllers.map((c) => ({
        kind: c.kind,
        errorReasons: [...KNOWN_ERROR_REASONS, ...(c.errorReasons ?? [])],
      })),
      resources: watchedResources(options.controllers).map((r) => r.name),
    });
  }

  /** The running reflectors (empty while stopped), for /healthz and /readyz. */
  get reflectors(): readonly Reflector<KubernetesObject>[] {
    return this.running?.reflectors ?? [];
  }

  /** Starts the queues and watches; resolves once every watch has synced. */
  async start(): Promise<void> {
    const { kc, metrics, logger } = this.options;
    const caches = new Map<string, Reflector<KubernetesObject>>();
    const ctx: ControllerContext = {
      kc,
      applier: new Applier(kc),
      events: new EventRecorder(kc, "offsite-operator", this.options.identity, logger),
      metrics,
      logger,
      defaultImage: this.options.defaultImage,
      operatorCa: await this.options.loadOperatorCa(),
      operatorNamespace: this.options.operatorNamespace,
      now: this.options.now ?? (() => new Date()),
      cached<T extends KubernetesObject>(resource: WatchedResource, namespace: string, name: string) {
        const reflector = caches.get(resource.name);
        if (!reflector) throw new Error(`${resource.name} is not watched by any controller`);
        return reflector.get(namespace, name) as T | undefined;
      },
    };
    const routes = new Map<string, Route>();
    const route = (resource: WatchedResource) => {
      const existing = routes.get(resource.name) ?? { resource, listeners: [] };
      routes.set(resource.name, existing);
      return existing;
    };
    let synced = false;
    const held: { queue: WorkQueue; keys: Set<string> }[] = [];
    const running: Running = { queues: [], reflectors: [], timers: [] };

    for (const controller of this.options.controllers) {
      const queue = this.queueFor(controller, ctx, (namespace, name) =>
        caches.get(primaryOf(controller).name)?.get(namespace, name),
      );
      const waiting = { queue, keys: new Set<string>() };
      held.push(waiting);
      const enqueue = (key: string | undefined) => {
        if (key === undefined) return;
        if (synced) queue.add(key);
        else waiting.keys.add(key);
      };
      route(primaryOf(controller)).listeners.push((object) => enqueue(objectKey(object)));
      for (const watch of controller.watches) {
        const ownerKey = watch.ownerKey ?? ownerKeyByLabel(controller.kind);
        route(watch.resource).listeners.push((object) => enqueue(ownerKey(object)));
      }
      const timer = setInterval(
        () => metrics.workQueueDepth.set({ kind: controller.kind }, queue.depth),
        1000,
      );
      timer.unref();
      running.queues.push(queue);
      running.timers.push(timer);
    }

    for (const { resource, listeners } of routes.values()) {
      const reflector = new Reflector<KubernetesObject>({
        resource: resource.name,
        kc,
        path: resource.path,
        ...(resource.labelSelector ? { labelSelector: resource.labelSelector } : {}),
        list: () => resource.list(kc),
        onChange: (object) => listeners.forEach((listener) => listener(object)),
        relistEveryMs: this.options.relistPeriodMs,
        logger,
        onRestart: () => metrics.watchRestartsTotal.inc({ resource: resource.name }),
      });
      caches.set(resource.name, reflector);
      running.reflectors.push(reflector);
    }
    this.running = running;
    await Promise.all(running.reflectors.map((r) => r.start()));
    synced = true;
    for (const { queue, keys } of held) keys.forEach((key) => queue.add(key));
    logger.info({ resources: running.reflectors.length }, "watches synced; reconciling");
  }

  /** Takes no new work, finishes reconciles in flight, then stops the watches. */
  async stop(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    if (!running) return;
    running.timers.forEach(clearInterval);
    await Promise.all(running.queues.map((q) => q.shutdown()));
    await Promise.all(running.reflectors.map((r) => r.stop()));
  }

  private queueFor(
    controller: ControllerDefinition,
    ctx: ControllerContext,
    cached: (namespace: string, name: string) => KubernetesObject | undefined,
  ): WorkQueue {
    const { kind } = controller;
    const { metrics, logger } = this.options;
    return new WorkQueue({
      concurrency: this.options.concurrency,
      reconcile: (key) => {
        const [namespace, name] = key.split("/") as [string, string];
        const end = metrics.reconcileDuration.startTimer({ kind });
        const object = cached(namespace, name) as CustomObject | undefined;
        return reconcileObject(ctx, controller, namespace, name, object).finally(end);
      },
      onDone: (_key, outcome) => metrics.reconcileTotal.inc({ kind, result: outcome }),
      onError: (key, error, retryInMs) => {
        const reason = errorReason(error);
        metrics.reconcileErrorsTotal.inc({ kind, reason });
        const [namespace, name] = key.split("/");
        logger.warn(
          { kind, namespace, name, reason, retryInMs, err: errorMessage(error) },
          "reconcile failed; retrying",
        );
      },
    });
  }
}

/**
 * One run for one object: the finalizer steps, the controller's reconcile or finalize,
 * and the status — on success the controller's, on failure Ready=False with the error.
 * Throws the step's error so the queue retries it with back-off.
 */
export async function reconcileObject(
  ctx: ControllerContext,
  controller: ControllerDefinition,
  namespace: string,
  name: string,
  cached: CustomObject | undefined,
): Promise<ReconcileResult> {
  if (!cached) {
    controller.forget?.(ctx, namespace, name);
    return {};
  }
  const log = forObject(ctx.logger, controller.kind, namespace, name);
  let object = cached;
  try {
    switch (lifecycleStep(object, controller.finalize !== undefined)) {
      case "released":
        controller.forget?.(ctx, namespace, name);
        return {};
      case "finalize": {
        const done = await controller.finalize?.(ctx, object, log);
        await patchFinalizer(ctx.kc, controller, object, "remove");
        if (done) await ctx.events.record(object, "Normal", "Finalized", done);
        controller.forget?.(ctx, namespace, name);
        return {};
      }
      case "addFinalizer":
        object = await patchFinalizer(ctx.kc, controller, object, "add");
        break;
      case "reconcile":
        break;
    }
    const { status, requeueAfterMs } = await controller.reconcile(ctx, object, log);
    await writeStatus(ctx.kc, controller, object, status);
    await recordReadyChange(ctx.events, object, object.status, status);
    controller.publish?.(ctx, object, status);
    return requeueAfterMs === undefined ? {} : { requeueAfterMs };
  } catch (error) {
    if (reportsFailure(error)) await reportFailure(ctx, controller, object, error, log);
    throw error;
  }
}

/** Writes Ready=False with the error, records the Warning Event; never throws. */
async function reportFailure(
  ctx: ControllerContext,
  controller: ControllerDefinition,
  object: CustomObject,
  error: unknown,
  log: Logger,
): Promise<void> {
  const status: ObjectStatus = failedStatus(
    object.status,
    error,
    object.metadata.generation,
    ctx.now(),
    controller.failurePhase,
  );
  try {
    await writeStatus(ctx.kc, controller, object, status);
  } catch (writeError) {
    // The retry of the step will try again; the step's own error is what matters.
    log.warn({ err: errorMessage(writeError) }, "could not write the failure into status");
    return;
  }
  await recordReadyChange(ctx.events, object, object.status, status);
  controller.publish?.(ctx, object, status);
}
