/**
 * The injection webhook as one part of the operator, run by every replica (leader or
 * not): the HTTPS server, and the MutatingWebhookConfiguration that points the API server
 * at it, applied at start-up and again every relist period (a deleted or edited
 * configuration comes back). A failed apply is retried with back-off and reported in
 * /readyz; it never stops the operator, and the webhook keeps serving meanwhile.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import type { CertificateAndKey } from "../../pki/certificates.ts";
import type { OperatorConfig } from "../runtime/config.ts";
import { Applier } from "../runtime/kubeApi.ts";
import type { Logger } from "../runtime/logger.ts";
import {
  WEBHOOK_CONFIGURATION,
  desiredWebhookConfiguration,
  servingHosts,
  type WebhookEndpoint,
} from "./webhookConfiguration.ts";
import { WebhookServer, apiLookups } from "./webhookServer.ts";

export function webhookEndpointOf(config: OperatorConfig): WebhookEndpoint {
  return config.webhookUrl
    ? { url: config.webhookUrl }
    : { service: { namespace: config.namespace, name: config.webhookService } };
}

export class SidecarInjector {
  private readonly config: OperatorConfig & { webhookAddress: string };
  private readonly kc: KubeConfig;
  private readonly logger: Logger;
  private readonly registry: Registry;
  private server: WebhookServer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private applyProblem: string | undefined = "the MutatingWebhookConfiguration is not applied yet";

  constructor(
    config: OperatorConfig & { webhookAddress: string },
    kc: KubeConfig,
    logger: Logger,
    registry: Registry,
  ) {
    this.config = config;
    this.kc = kc;
    this.logger = logger.child({ component: "sidecar-injector" });
    this.registry = registry;
  }

  /** Serves the webhook (resolves once it listens), then applies its configuration in the background. */
  async start(ca: CertificateAndKey): Promise<void> {
    const endpoint = webhookEndpointOf(this.config);
    this.server = new WebhookServer({
      address: this.config.webhookAddress,
      ca,
      hosts: servingHosts(endpoint, this.config.webhookHost),
      lookups: apiLookups(this.kc),
      sidecar: {
        image: this.config.agentImage,
        cpuRequest: this.config.agentCpuRequest,
        memoryRequest: this.config.agentMemoryRequest,
        memoryLimit: this.config.agentMemoryLimit,
      },
      logger: this.logger,
      registry: this.registry,
    });
    await this.server.start();
    this.logger.info(
      { address: this.config.webhookAddress, endpoint },
      "serving the sidecar injection webhook",
    );
    const configuration = desiredWebhookConfiguration(endpoint, ca.certificatePem);
    const applier = new Applier(this.kc);
    let failures = 0;
    const apply = async () => {
      if (this.stopped) return;
      let next = this.config.relistPeriod;
      try {
        await applier.apply(configuration);
        if (this.applyProblem)
          this.logger.info(`applied the MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION}`);
        this.applyProblem = undefined;
        failures = 0;
      } catch (error) {
        failures += 1;
        next = Math.min(5000 * 2 ** (failures - 1), 300_000);
        this.applyProblem = (error as Error).message;
        this.logger.error({ err: error, retryInMs: next }, "could not apply the webhook configuration");
      }
      if (!this.stopped) {
        this.timer = setTimeout(() => void apply(), next);
        this.timer.unref();
      }
    };
    await apply();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.server?.stop();
  }

  /** For /readyz. */
  problems(): string[] {
    return [
      ...(this.server?.problems() ?? ["the sidecar injection webhook is not serving"]),
      ...(this.applyProblem ? [this.applyProblem] : []),
    ];
  }
}
