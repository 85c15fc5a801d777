/**
 * Runs the operator: the health/metrics server and the sidecar injection webhook at once,
 * on every replica, and — only while this process holds the leader Lease — the watches,
 * the work queue and the reconcilers. The operator CA is loaded once, before either needs
 * it, and shared by both (the webhook's serving certificate, the controllers' context).
 *
 * Losing the Lease stops all reconciling before anyone else may start (renewDeadline <
 * leaseDuration); the elector keeps campaigning and starts the controllers again if it
 * wins later. stop() is the graceful SIGTERM path: take no new work, finish what is in
 * flight, stop the watches, then release the Lease so a standby takes over at once.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Server } from "node:http";
import type { CertificateAndKey } from "../pki/certificates.ts";
import { loadOperatorCa } from "./agentControl/operatorCa.ts";
import { CONTROLLERS } from "./controllers.ts";
import type { OperatorConfig } from "./runtime/config.ts";
import { ControllerRuntime } from "./runtime/controllerRuntime.ts";
import { startHealthServer } from "./runtime/healthServer.ts";
import { LeaderElector } from "./runtime/leaderElection.ts";
import type { Logger } from "./runtime/logger.ts";
import { OperatorMetrics } from "./runtime/metrics.ts";
import { SidecarInjector } from "./webhook/sidecarInjector.ts";

export class OperatorManager {
  readonly metrics = new OperatorMetrics();
  private readonly config: OperatorConfig;
  private readonly kc: KubeConfig;
  private readonly logger: Logger;
  private readonly runtime: ControllerRuntime;
  private elector: LeaderElector | undefined;
  private reconciling = false;
  private starting: Promise<void> | undefined;
  private server: Server | undefined;
  private readonly injector: SidecarInjector | undefined;
  private operatorCa: Promise<CertificateAndKey> | undefined;

  constructor(config: OperatorConfig, kc: KubeConfig, logger: Logger) {
    this.config = config;
    this.kc = kc;
    this.logger = logger;
    this.runtime = new ControllerRuntime({
      kc,
      controllers: CONTROLLERS,
      metrics: this.metrics,
      logger,
      concurrency: config.concurrency,
      relistPeriodMs: config.relistPeriod,
      identity: config.identity,
      defaultImage: config.agentImage,
      loadOperatorCa: () => this.loadOperatorCa(),
      operatorNamespace: config.namespace,
    });
    const { webhookAddress } = config;
    if (webhookAddress !== undefined)
      this.injector = new SidecarInjector({ ...config, webhookAddress }, kc, logger, this.metrics.registry);
  }

  /** The operator CA, read (or created) once per process; a failed load is tried again next time. */
  private loadOperatorCa(): Promise<CertificateAndKey> {
    this.operatorCa ??= loadOperatorCa(this.kc, this.config.namespace).catch((error: unknown) => {
      this.operatorCa = undefined;
      throw error;
    });
    return this.operatorCa;
  }

  async start(): Promise<void> {
    this.server = await startHealthServer(this.config.metricsAddress, this.metrics.registry, {
      liveness: () => this.livenessProblems(),
      readiness: () => this.readinessProblems(),
    });
    this.logger.info({ address: this.config.metricsAddress }, "serving /metrics, /healthz and /readyz");
    // Every replica serves the webhook, before and whatever the election: pod creations
    // must not wait for a leader.
    if (this.injector) await this.injector.start(await this.loadOperatorCa());
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
    // Last: pods created while this replica shuts down are still injected.
    await this.injector?.stop();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.logger.info("stopped");
  }

  private async startControllers(): Promise<void> {
    this.reconciling = true;
    await this.runtime.start();
  }

  private async stopControllers(): Promise<void> {
    await this.starting;
    if (!this.reconciling) return;
    this.reconciling = false;
    await this.runtime.stop();
  }

  private livenessProblems(): string[] {
    const staleAfterMs = 2 * this.config.relistPeriod + 60_000;
    return this.runtime.reflectors
      .filter((r) => r.hasSynced && Date.now() - r.lastActivityAt > staleAfterMs)
      .map((r) => `the ${r.resource} watch has been silent for more than ${staleAfterMs} ms`);
  }

  private readinessProblems(): string[] {
    const webhook = this.injector?.problems() ?? [];
    if (!this.reconciling) return webhook; // a standby replica is ready to take over
    return [
      ...webhook,
      ...this.runtime.reflectors.filter((r) => !r.hasSynced).map(() => "watches are still syncing"),
    ];
  }
}
