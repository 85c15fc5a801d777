/**
 * A keyed work queue: the heart of a level-based controller.
 *
 * Keys (namespace/name) are queued, deduplicated, and handed to a reconcile function
 * with at most `concurrency` running at once and never two for the same key. A key
 * added while it is being reconciled is marked dirty and runs again afterwards, so no
 * change is lost and none is processed twice in parallel. A failed reconcile is retried
 * with per-key exponential back-off; a success resets it and may ask to be requeued
 * after a delay (certificate renewal, polling an external address).
 *
 * The subtle part: an event (add) bypasses a pending back-off, as in controller-runtime,
 * because new information deserves a prompt look; a timer only ever moves earlier.
 */

export interface ReconcileResult {
  /** Reconcile this key again after this many milliseconds, even without an event. */
  requeueAfterMs?: number;
}

export interface WorkQueueOptions {
  /** Reconciles one key; throwing schedules a retry with back-off. Must be idempotent. */
  reconcile: (key: string) => Promise<ReconcileResult | void>;
  /** Keys reconciled at once (different keys only). */
  concurrency: number;
  /** First retry delay after a failure; doubles per consecutive failure. */
  baseDelayMs?: number;
  /** Upper bound of the retry delay. */
  maxDelayMs?: number;
  /** Told about every failure and the delay chosen, for logs and metrics. */
  onError?: (key: string, error: unknown, retryInMs: number) => void;
  /** Told after every reconcile, for metrics. */
  onDone?: (key: string, outcome: "success" | "error", durationMs: number) => void;
}

/** The retry delay after `failures` consecutive failures (1 = first failure). */
export function backoffDelay(failures: number, baseDelayMs: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, failures - 1));
}

export class WorkQueue {
  private readonly options: Required<Omit<WorkQueueOptions, "onError" | "onDone">> &
    Pick<WorkQueueOptions, "onError" | "onDone">;
  private readonly pending = new Set<string>(); // insertion-ordered: FIFO
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly inFlight = new Set<Promise<void>>();
  private shuttingDown = false;

  constructor(options: WorkQueueOptions) {
    this.options = { baseDelayMs: 100, maxDelayMs: 5 * 60_000, ...options };
  }

  /** Keys waiting to be reconciled (the queue depth metric). */
  get depth(): number {
    return this.pending.size;
  }

  /** Queues `key` now; a pending delayed retry for it is dropped. */
  add(key: string): void {
    if (this.shuttingDown) return;
    this.clearTimer(key);
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.pending.add(key);
    this.pump();
  }

  /** Queues `key` after `delayMs`, unless it is already due sooner. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Stops taking work and waits for reconciles in flight to finish. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const key of [...this.timers.keys()]) this.clearTimer(key);
    this.pending.clear();
    this.dirty.clear();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private clearTimer(key: string): void {
    const existing = this.timers.get(key);
    if (existing) clearTimeout(existing.timer);
    this.timers.delete(key);
  }

  private pump(): void {
    while (!this.shuttingDown && this.processing.size < this.options.concurrency) {
      const key = this.pending.values().next().value;
      if (key === undefined) return;
      this.pending.delete(key);
      this.processing.add(key);
      const run = this.run(key).finally(() => this.inFlight.delete(run));
      this.inFlight.add(run);
    }
  }

  private async run(key: string): Promise<void> {
    const started = performance.now();
    let outcome: "success" | "error" = "success";
    try {
      const result = await this.options.reconcile(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      outcome = "error";
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const delay = backoffDelay(failures, this.options.baseDelayMs, this.options.maxDelayMs);
      this.options.onError?.(key, error, delay);
      this.addAfter(key, delay);
    } finally {
      this.options.onDone?.(key, outcome, performance.now() - started);
      this.processing.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
