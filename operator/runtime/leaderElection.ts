/**
 * Leader election on a coordination.k8s.io/v1 Lease, so two operator replicas never
 * reconcile at once.
 *
 * A candidate takes the Lease when it is free or its holder stopped renewing for
 * leaseDuration; the leader renews every retryPeriod and steps down when it could not
 * renew for renewDeadline (< leaseDuration, so it stops acting before anyone else may
 * start). Updates carry the resourceVersion read, so two candidates racing for a free
 * Lease cannot both win: one gets 409 Conflict.
 *
 * The subtle part, as in client-go: expiry is judged by *this process's* clock, from
 * when it last saw the Lease record change, never by comparing renewTime with local
 * time — so clock skew between nodes cannot make two leaders.
 */
import {
  ApiException,
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
} from "@kubernetes/client-node";
import type { Logger } from "./logger.ts";

export interface LeaderElectionOptions {
  kc: KubeConfig;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  logger: Logger;
  onStartedLeading: () => void | Promise<void>;
  /** Called when leadership is lost or given up; the process should stop reconciling. */
  onStoppedLeading: (reason: string) => void | Promise<void>;
}

export class LeaderElector {
  private readonly options: LeaderElectionOptions;
  private readonly api: CoordinationV1Api;
  private leading = false;
  private stopped = false;
  private observedRecord = "";
  private observedAt = 0;
  private lastRenewedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(options: LeaderElectionOptions) {
    if (options.renewDeadlineMs >= options.leaseDurationMs) {
      throw new Error("leader election: renewDeadline must be shorter than leaseDuration");
    }
    this.options = options;
    this.api = options.kc.makeApiClient(CoordinationV1Api);
  }

  /** Runs the election loop in the background until stop(). */
  start(): void {
    this.loop = this.run();
  }

  /** Stops campaigning; a leader releases the Lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    if (this.leading) {
      this.leading = false;
      await this.release();
      await this.options.onStoppedLeading("shutdown");
    }
  }

  private async run(): Promise<void> {
    const { retryPeriodMs, renewDeadlineMs, logger } = this.options;
    while (!this.stopped) {
      const held = await this.tryAcquireOrRenew().catch((error: unknown) => {
        logger.warn(
          { err: error, lease: this.options.leaseName },
          "leader election: could not read or update the Lease",
        );
        return false;
      });
      if (this.stopped) break;
      if (held) {
        this.lastRenewedAt = Date.now();
        if (!this.leading) {
          this.leading = true;
          logger.info({ lease: this.options.leaseName }, "became the leader");
          await this.options.onStartedLeading();
        }
      } else if (this.leading && Date.now() - this.lastRenewedAt > renewDeadlineMs) {
        this.leading = false;
        logger.error(
          { lease: this.options.leaseName },
          "lost the leader Lease: could not renew within the renew deadline",
        );
        await this.options.onStoppedLeading("renew deadline exceeded");
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, retryPeriodMs);
      });
    }
  }

  /** One attempt; true when this process holds the Lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, leaseName: name, identity, leaseDurationMs } = this.options;
    const now = new V1MicroTime();
    const leaseDurationSeconds = Math.ceil(leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (!(error instanceof ApiException) || error.code !== 404) throw error;
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (createError) {
        if (createError instanceof ApiException && createError.code === 409) return false; // another candidate won
        throw createError;
      }
    }

    const spec = lease.spec ?? {};
    // Only equality matters here; renewTime may come back as a Date or a string.
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseTransitions]);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = Date.now();
    }
    const holder = spec.holderIdentity ?? "";
    const heldByOther = holder !== "" && holder !== identity;
    const expired = Date.now() - this.observedAt > (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (heldByOther && !expired) return false;

    const takingOver = holder !== identity;
    try {
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds,
            acquireTime: takingOver ? now : spec.acquireTime,
            renewTime: now,
            leaseTransitions: (spec.leaseTransitions ?? 0) + (takingOver ? 1 : 0),
          },
        },
      });
      return true;
    } catch (error) {
      if (error instanceof ApiException && error.code === 409) return false;
      throw error;
    }
  }

  /** Gives the Lease up (empty holder), so a standby need not wait for it to expire. */
  private async release(): Promise<void> {
    const { namespace, leaseName: name, identity, logger } = this.options;
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
          spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: new V1MicroTime() },
        },
      });
      logger.info({ lease: name }, "released the leader Lease");
    } catch (error) {
      logger.warn({ err: error, lease: name }, "could not release the leader Lease; it expires by itself");
    }
  }
}
