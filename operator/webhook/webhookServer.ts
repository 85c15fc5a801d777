/**
 * The injection webhook's HTTPS endpoint: AdmissionReview v1 in, AdmissionReview v1 out
 * with a base64 JSON Patch (sidecarInjection.ts decides what it holds). Every replica
 * serves it, leader or not, so a pod creation never waits for an election.
 *
 * The rule this file keeps: the answer is always "allowed". A pod no BackupJob selects,
 * one that cannot be injected safely, a lookup that fails or takes too long, a bug in
 * this code: each is admitted unchanged, with a warning where a person should hear it.
 * The API server gives up after 5 s (failurePolicy Ignore does the same), so lookups are
 * cut off well before that and the pod is admitted without the agent instead.
 *
 * The serving certificate is issued in memory from the operator's CA (which the
 * configuration's caBundle names), never stored, and renewed in memory well before it
 * expires; a restart simply issues a new one.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1LabelSelector,
  type V1Pod,
} from "@kubernetes/client-node";
import { Counter, type Registry } from "prom-client";
import { GROUP, VERSION } from "../../crds/definitions.ts";
import { certificateNotAfter, issueCertificate, type CertificateAndKey } from "../../pki/certificates.ts";
import type { Logger } from "../runtime/logger.ts";
import { errorMessage, isNotFound } from "../runtime/kubeApi.ts";
import {
  injectionFor,
  matchingJobs,
  matchingPairSides,
  type InjectionJob,
  type InjectionPairSide,
  type PodSecurityLevel,
  type SidecarSettings,
} from "./sidecarInjection.ts";
import { WEBHOOK_PATH } from "./webhookConfiguration.ts";

const DAY_MS = 24 * 3600 * 1000;
/** Largest AdmissionReview read (the API server's own request limit is 3 MiB). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce";

/** What the webhook reads from the API server at admission. */
export interface AdmissionLookups {
  backupJobs(namespace: string): Promise<InjectionJob[]>;
  podSecurity(namespace: string): Promise<PodSecurityLevel>;
  /** The sides of the namespace's ReplicationPairs, with their workloads' selectors. */
  pairSides?(namespace: string): Promise<InjectionPairSide[]>;
}

/** A ReplicationPair as far as the webhook reads it. */
interface PairForInjection {
  metadata: { name?: string; deletionTimestamp?: unknown };
  spec?: Partial<Record<"primary" | "standby", { kind?: string; name?: string; containerName?: string }>>;
}

/** The lookups against the API server: BackupJobs listed fresh, the namespace's enforce label. */
export function apiLookups(kc: KubeConfig): AdmissionLookups {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async backupJobs(namespace) {
      const list = (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: "backupjobs",
      })) as { items?: InjectionJob[] };
      return list.items ?? [];
    },
    async pairSides(namespace) {
      const apps = kc.makeApiClient(AppsV1Api);
      const list = (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: "replicationpairs",
      })) as { items?: PairForInjection[] };
      const sides: InjectionPairSide[] = [];
      for (const pair of list.items ?? []) {
        if (pair.metadata.deletionTimestamp) continue;
        for (const side of ["primary", "standby"] as const) {
          const workload = pair.spec?.[side];
          if (!workload?.name) continue;
          let selector: V1LabelSelector | undefined;
          try {
            selector =
              workload.kind === "StatefulSet"
                ? (await apps.readNamespacedStatefulSet({ name: workload.name, namespace })).spec?.selector
                : (await apps.readNamespacedDeployment({ name: workload.name, namespace })).spec?.selector;
          } catch (error) {
            // No such workload: its pods are no side's (the pair says WorkloadNotFound). Any
            // other failure is the admission's: the pod is admitted with a warning, never
            // with an agent of the wrong kind (a standby's without its writable mounts).
            if (isNotFound(error)) continue;
            throw error;
          }
          if (!selector?.matchLabels && !selector?.matchExpressions) continue;
          sides.push({
            pair: pair.metadata.name ?? "",
            side,
            selector: selector,
            ...(workload.containerName ? { containerName: workload.containerName } : {}),
          });
        }
      }
      return sides;
    },
    async podSecurity(namespace) {
      const level = (await core.readNamespace({ name: namespace })).metadata?.labels?.[POD_SECURITY_LABEL];
      if (level === undefined || level === "privileged") return "privileged";
      // PodSecurity evaluates an unknown level as restricted; so do we.
      return level === "baseline" ? "baseline" : "restricted";
    },
  };
}

export interface WebhookServerOptions {
  /** host:port to listen on (":9443": every interface). */
  address: string;
  ca: CertificateAndKey;
  /** DNS names and IPs of the serving certificate. */
  hosts: string[];
  lookups: AdmissionLookups;
  sidecar: Omit<SidecarSettings, "podSecurity">;
  logger: Logger;
  registry?: Registry;
  certificateValidityMs?: number;
  /** Renew the serving certificate when less than this is left. */
  renewBeforeMs?: number;
  renewCheckMs?: number;
  /** Give up on the API lookups after this long (the API server waits 5 s in all). */
  lookupTimeoutMs?: number;
}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  subResource?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: "JSONPatch";
  patch?: string;
  warnings?: string[];
}

type Result = "injected" | "unselected" | "declined" | "error";
const RESULTS: readonly Result[] = ["injected", "unselected", "declined", "error"];

const warning = (reason: string) => `offsite: the backup agent sidecar was not injected: ${reason}`;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class WebhookServer {
  private readonly options: WebhookServerOptions;
  private server: Server | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private certificate: CertificateAndKey | undefined;
  private notAfter = 0;
  private readonly admissions: Counter<"result"> | undefined;

  constructor(options: WebhookServerOptions) {
    this.options = options;
    if (options.registry) {
      this.admissions = new Counter({
        name: "offsite_webhook_admissions_total",
        help: "Pods the injection webhook answered, by result: injected, unselected (no BackupJob selects it), declined (selected, not injected: it has the agent or cannot take it safely), error (admitted without the agent).",
        labelNames: ["result"] as const,
        registers: [options.registry],
      });
      for (const result of RESULTS) this.admissions.inc({ result }, 0);
    }
  }

  /** The serving certificate in use (for tests). */
  get servingCertificate(): string | undefined {
    return this.certificate?.certificatePem;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const certificate = await this.issue();
    const server = createServer(
      { cert: certificate.certificatePem, key: certificate.privateKeyPem, minVersion: "TLSv1.2" },
      (request, response) => this.handle(request, response),
    );
    const { address } = this.options;
    const host = address.slice(0, address.lastIndexOf(":")) || undefined;
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (error) => this.options.logger.error({ err: error }, "webhook server error"));
    this.server = server;
    const checkEvery = this.options.renewCheckMs ?? 3600_000;
    this.renewTimer = setInterval(() => void this.renewIfDue(), checkEvery);
    this.renewTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.renewTimer);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** For /readyz: empty while the webhook serves with a valid certificate. */
  problems(): string[] {
    if (!this.server) return ["the sidecar injection webhook is not serving"];
    if (Date.now() >= this.notAfter)
      return ["the sidecar injection webhook's serving certificate has expired"];
    return [];
  }

  private async issue(): Promise<CertificateAndKey> {
    const hosts = this.options.hosts;
    const certificate = await issueCertificate(this.options.ca, {
      commonName: hosts[0] ?? "offsite-operator-webhook",
      hosts,
      usage: "server",
      validForMs: this.options.certificateValidityMs ?? 30 * DAY_MS,
    });
    this.certificate = certificate;
    this.notAfter = certificateNotAfter(certificate.certificatePem).getTime();
    return certificate;
  }

  private async renewIfDue(): Promise<void> {
    const renewBefore = this.options.renewBeforeMs ?? 10 * DAY_MS;
    if (!this.server || this.notAfter - Date.now() > renewBefore) return;
    try {
      const certificate = await this.issue();
      this.server?.setSecureContext({ cert: certificate.certificatePem, key: certificate.privateKeyPem });
      this.options.logger.info(
        { notAfter: new Date(this.notAfter).toISOString() },
        "renewed the webhook's serving certificate",
      );
    } catch (error) {
      this.options.logger.error(
        { err: error },
        "renewing the webhook's serving certificate failed; retrying",
      );
    }
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const reply = (code: number, body: unknown) => {
      response.writeHead(code, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.url?.split("?")[0] !== WEBHOOK_PATH)
      return reply(404, { message: `not found: try ${WEBHOOK_PATH}` });
    if (request.method !== "POST") return reply(405, { message: "POST an AdmissionReview" });
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reply(413, { message: "AdmissionReview too large" });
        request.destroy();
      } else chunks.push(chunk);
    });
    request.on("end", () => {
      if (size > MAX_BODY_BYTES) return;
      let review: { apiVersion?: string; kind?: string; request?: AdmissionRequest };
      try {
        review = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof review;
      } catch {
        return reply(400, { message: "the body is not JSON" });
      }
      const admission = review?.request;
      if (review?.kind !== "AdmissionReview" || typeof admission?.uid !== "string")
        return reply(400, { message: "expected an AdmissionReview with a request.uid" });
      void this.review(admission).then((answer) =>
        reply(200, { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: answer }),
      );
    });
  }

  /** The answer to one admission request; never rejects, never denies. */
  async review(request: AdmissionRequest): Promise<AdmissionResponse> {
    const allowed: AdmissionResponse = { uid: request.uid, allowed: true };
    const count = (result: Result) => this.admissions?.inc({ result });
    const pod = request.object as V1Pod | undefined;
    const namespace = request.namespace || pod?.metadata?.namespace || "";
    const log = this.options.logger.child({
      kind: "Pod",
      namespace,
      name: request.name || pod?.metadata?.name || `${pod?.metadata?.generateName ?? ""}*`,
    });
    try {
      if (request.kind?.kind !== "Pod" || request.operation !== "CREATE" || request.subResource || !pod) {
        count("unselected");
        return allowed;
      }
      const timeout = this.options.lookupTimeoutMs ?? 3000;
      const started = Date.now();
      const [jobs, pairSides] = await withTimeout(
        Promise.all([
          this.options.lookups.backupJobs(namespace),
          this.options.lookups.pairSides?.(namespace) ?? Promise.resolve([]),
        ]),
        timeout,
        "listing BackupJobs and ReplicationPairs",
      );
      if (matchingJobs(pod, jobs).length === 0 && matchingPairSides(pod, pairSides).length === 0) {
        count("unselected");
        return allowed;
      }
      const podSecurity = await withTimeout(
        this.options.lookups.podSecurity(namespace),
        Math.max(1, timeout - (Date.now() - started)),
        "reading the namespace",
      );
      const decision = injectionFor(pod, jobs, { ...this.options.sidecar, podSecurity }, pairSides);
      if (!decision.inject) {
        count("declined");
        log.info({ reason: decision.reason }, "not injecting the agent sidecar");
        return decision.notable ? { ...allowed, warnings: [warning(decision.reason)] } : allowed;
      }
      count("injected");
      log.info(
        {
          backupJobs: decision.jobs,
          replicationPairs: decision.pairs,
          podSecurity,
          dryRun: request.dryRun === true,
        },
        "injecting the agent sidecar",
      );
      return {
        ...allowed,
        patchType: "JSONPatch",
        patch: Buffer.from(JSON.stringify(decision.patch), "utf8").toString("base64"),
      };
    } catch (error) {
      count("error");
      const reason = errorMessage(error);
      log.warn({ err: error }, "admitting the pod without the agent sidecar");
      return { ...allowed, warnings: [warning(reason)] };
    }
  }
}
