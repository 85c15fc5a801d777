/**
 * Runs the operator: the health/metrics server at once, and — only while this process
 * holds the leader Lease — the watches, the work queue and the reconcilers.
 *
 * Losing the Lease stops all reconciling before anyone else may start (renewDeadline <
 * leaseDuration); the elector keeps campaigning and starts the controllers again if it
 * wins later. stop() is the graceful SIGTERM path: take no new work, finish what is in
 * flight, stop the watches, then release the Lease so a standby takes over at once.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";
import type { Server } from "node:http";
import { GROUP, VERSION } from "../crds/definitions.ts";
import type { OperatorConfig } from "./runtime/config.ts";
import { EventRecorder } from "./runtime/events.ts";
import { startHealthServer } from "./runtime/healthServer.ts";
import { Applier, errorMessage, errorReason } from "./runtime/kubeApi.ts";
import { LeaderElector } from "./runtime/leaderElection.ts";
import type { Logger } from "./runtime/logger.ts";
import { OperatorMetrics } from "./runtime/metrics.ts";
import { Reflector, type ReflectorOptions } from "./runtime/reflector.ts";
import { WorkQueue } from "./runtime/workQueue.ts";
import { MANAGED_BY, SERVER_LABEL } from "./offsiteServer/names.ts";
import { PLURAL, reconcileOffsiteServer } from "./offsiteServer/reconcileOffsiteServer.ts";

interface Controllers {
  queue: WorkQueue;
  reflectors: Reflector<KubernetesObject>[];
  depthTimer: NodeJS.Timeout;
}

export class OperatorManager {
  readonly metrics = new OperatorMetrics();
  private readonly config: OperatorConfig;
  private readonly kc: KubeConfig;
  private readonly logger: Logger;
  private elector: LeaderElector | undefined;
  private controllers: Controllers | undefined;
  private starting: Promise<void> | undefined;
  private server: Server | undefined;

  constructor(config: OperatorConfig, kc: KubeConfig, logger: Logger) {
    this.config = config;
    this.kc = kc;
    this.logger = logger;
  }

  async start(): Promise<void> {
    this.server = await startHealthServer(this.config.metricsAddress, this.metrics.registry, {
      liveness: () => this.livenessProblems(),
      readiness: () => this.readinessProblems(),
    });
    this.logger.info({ address: this.config.metricsAddress }, "serving /metrics, /healthz and /readyz");
    if (!this.config.leaderElection) {
      this.metrics.isLeader.set(1);
      await this.startControllers();
      return;
    }
    this.elector = new LeaderElector({
      kc: this.kc,
      namespace: this.config.namespace,
      leaseName: this.config.leaseName,
      identity: this.config.identity,
      leaseDurationMs: this.config.leaseDuration,
      renewDeadlineMs: this.config.renewDeadline,
      retryPeriodMs: this.config.retryPeriod,
      logger: this.logger,
      onStartedLeading: () => {
        this.metrics.isLeader.set(1);
        this.metrics.leaderTransitionsTotal.inc();
        this.starting = this.startControllers().catch((error: unknown) => {
          this.logger.error(
            { err: error },
            "could not start the controllers; exiting so a fresh process retries",
          );
          process.exit(1);
        });
      },
      onStoppedLeading: async (reason) => {
        this.metrics.isLeader.set(0);
        this.metrics.leaderTransitionsTotal.inc();
        this.logger.warn({ reason }, "stopped leading: reconciling stops");
        await this.stopControllers();
      },
    });
    this.elector.start();
  }

  /** The graceful shutdown path (SIGTERM). */
  async stop(): Promise<void> {
    this.logger.info("shutting down: finishing reconciles in flight");
    if (this.elector) await this.elector.stop();
    else await this.stopControllers();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.logger.info("stopped");
  }

  private async startControllers(): Promise<void> {
    const ctx = {
      kc: this.kc,
      applier: new Applier(this.kc),
      events: new EventRecorder(this.kc, "offsite-operator", this.config.identity, this.logger),
      metrics: this.metrics,
      logger: this.logger,
      defaultImage: this.config.agentImage,
    };
    const kind = "OffsiteServer";
    const queue = new WorkQueue({
      concurrency: this.config.concurrency,
      reconcile: (key) => {
        const [namespace, name] = key.split("/") as [string, string];
        const end = this.metrics.reconcileDuration.startTimer({ kind });
        return reconcileOffsiteServer(ctx, namespace, name).finally(end);
      },
      onDone: (_key, outcome) => this.metrics.reconcileTotal.inc({ kind, result: outcome }),
      onError: (key, error, retryInMs) => {
        const reason = errorReason(error);
        this.metrics.reconcileErrorsTotal.inc({ kind, reason });
        const [namespace, name] = key.split("/");
        this.logger.warn(
          { kind, namespace, name, reason, retryInMs, err: errorMessage(error) },
          "reconcile failed; retrying",
        );
      },
    });
    const custom = this.kc.makeApiClient(CustomObjectsApi);
    const core = this.kc.makeApiClient(CoreV1Api);
    const apps = this.kc.makeApiClient(AppsV1Api);
    const owned = `app.kubernetes.io/managed-by=${MANAGED_BY},${SERVER_LABEL}`;
    const enqueueOwner = (object: KubernetesObject) => {
      const owner = object.metadata?.labels?.[SERVER_LABEL];
      if (owner) queue.add(`${object.metadata?.namespace}/${owner}`);
    };
    const reflector = (options: Omit<ReflectorOptions<KubernetesObject>, "kc" | "logger">) =>
      new Reflector<KubernetesObject>({
        kc: this.kc,
        logger: this.logger,
        relistEveryMs: this.config.relistPeriod,
        onRestart: () => this.metrics.watchRestartsTotal.inc({ resource: options.resource }),
        ...options,
      });
    const reflectors = [
      reflector({
        resource: PLURAL,
        path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
        list: () =>
          custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }) as Promise<{
            items: KubernetesObject[];
          }>,
        onChange: (object) => queue.add(`${object.metadata?.namespace}/${object.metadata?.name}`),
      }),
      reflector({
        resource: "statefulsets",
        path: "/apis/apps/v1/statefulsets",
        labelSelector: owned,
        list: () => apps.listStatefulSetForAllNamespaces({ labelSelector: owned }),
        onChange: enqueueOwner,
      }),
      reflector({
        resource: "services",
        path: "/api/v1/services",
        labelSelector: owned,
        list: () => core.listServiceForAllNamespaces({ labelSelector: owned }),
        onChange: enqueueOwner,
      }),
      reflector({
        resource: "secrets",
        path: "/api/v1/secrets",
        labelSelector: owned,
        list: () => core.listSecretForAllNamespaces({ labelSelector: owned }),
        onChange: enqueueOwner,
      }),
      reflector({
        resource: "persistentvolumeclaims",
        path: "/api/v1/persistentvolumeclaims",
        labelSelector: owned,
        list: () => core.listPersistentVolumeClaimForAllNamespaces({ labelSelector: owned }),
        onChange: enqueueOwner,
      }),
    ];
    const depthTimer = setInterval(() => this.metrics.workQueueDepth.set({ kind }, queue.depth), 1000);
    depthTimer.unref();
    this.controllers = { queue, reflectors, depthTimer };
    await Promise.all(reflectors.map((r) => r.start()));
    this.logger.info({ resources: reflectors.length }, "watches synced; reconciling");
  }

  private async stopControllers(): Promise<void> {
    await this.starting;
    const controllers = this.controllers;
    this.controllers = undefined;
    if (!controllers) return;
    clearInterval(controllers.depthTimer);
    await controllers.queue.shutdown();
    await Promise.all(controllers.reflectors.map((r) => r.stop()));
  }

  private livenessProblems(): string[] {
    const staleAfterMs = 2 * this.config.relistPeriod + 60_000;
    return (this.controllers?.reflectors ?? [])
      .filter((r) => r.hasSynced && Date.now() - r.lastActivityAt > staleAfterMs)
      .map((r) => `the ${r.resource} watch has been silent for more than ${staleAfterMs} ms`);
  }

  private readinessProblems(): string[] {
    if (!this.controllers) return []; // a standby replica is healthy and ready to take over
    return this.controllers.reflectors.filter((r) => !r.hasSynced).map(() => "watches are still syncing");
  }
}
