/**
 * Keeps a local cache of one resource in step with the API server: list, then watch
 * from the list's resourceVersion, and call back on every change.
 *
 * Why our own instead of client-node's informer: that one emits `error` and stops for
 * good on most failures, never relists on its own, and gives no sign of life. Here:
 *  - any failure (network, 5xx, 410 Gone after compaction) leads to a fresh list after
 *    an exponential back-off, and the list is diffed against the cache so deletions
 *    missed while disconnected are still reported;
 *  - the list is repeated every `relistEveryMs` even when all is well (a level-based
 *    safety net that re-delivers every object);
 *  - watches ask for bookmarks, and `lastActivityAt` moves on every list, event and
 *    bookmark, so /healthz can tell a healthy quiet watch from a dead one.
 */
import { Watch, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { backoffDelay } from "./workQueue.ts";
import type { Logger } from "./logger.ts";

export type ChangeType = "ADDED" | "MODIFIED" | "DELETED";

export interface ReflectorOptions<T extends KubernetesObject> {
  /** For logs and metrics, e.g. "offsiteservers". */
  resource: string;
  kc: KubeConfig;
  /** The collection's path, e.g. /apis/apps/v1/statefulsets (all namespaces). */
  path: string;
  list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;
  labelSelector?: string;
  onChange: (object: T, type: ChangeType) => void;
  relistEveryMs?: number;
  logger: Logger;
  onRestart?: (error: unknown) => void;
}

export const objectKey = (object: KubernetesObject) =>
  `${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;

class GoneError extends Error {}

export class Reflector<T extends KubernetesObject> {
  readonly cache = new Map<string, T>();
  readonly resource: string;
  lastActivityAt = 0;
  hasSynced = false;
  private readonly options: ReflectorOptions<T>;
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(options: ReflectorOptions<T>) {
    this.options = options;
    this.resource = options.resource;
  }

  /** Starts the list/watch loop; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    let synced!: () => void;
    const firstSync = new Promise<void>((resolve) => (synced = resolve));
    this.loop = this.run(synced);
    await firstSync;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.loop;
  }

  get(namespace: string, name: string): T | undefined {
    return this.cache.get(`${namespace}/${name}`);
  }

  private async run(synced: () => void): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        let resourceVersion = await this.relist();
        synced();
        failures = 0;
        const relistAt = Date.now() + (this.options.relistEveryMs ?? 10 * 60_000);
        while (!this.stopped && Date.now() < relistAt) {
          resourceVersion = await this.watchOnce(resourceVersion, Math.ceil((relistAt - Date.now()) / 1000));
        }
      } catch (error) {
        if (this.stopped) break;
        failures++;
        const delay = error instanceof GoneError ? 0 : backoffDelay(failures, 500, 30_000);
        if (!(error instanceof GoneError)) {
          this.options.logger.warn(
            { resource: this.options.resource, err: error, retryInMs: delay },
            "list/watch failed; starting again",
          );
          this.options.onRestart?.(error);
        }
        await this.sleep(delay);
      }
    }
  }

  /** Lists, reports what changed against the cache, and returns the list's resourceVersion. */
  private async relist(): Promise<string> {
    const list = await this.options.list();
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = objectKey(item);
      seen.add(key);
      const previous = this.cache.get(key);
      this.cache.set(key, item);
      if (!previous) this.options.onChange(item, "ADDED");
      else if (previous.metadata?.resourceVersion !== item.metadata?.resourceVersion)
        this.options.onChange(item, "MODIFIED");
    }
    for (const [key, item] of [...this.cache]) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.options.onChange(item, "DELETED");
      }
    }
    this.hasSynced = true;
    this.lastActivityAt = Date.now();
    return list.metadata?.resourceVersion ?? "";
  }

  /** Watches until the server ends the request; returns the last resourceVersion seen. */
  private watchOnce(resourceVersion: string, timeoutSeconds: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let latest = resourceVersion;
      const watch = new Watch(this.options.kc);
      const query: Record<string, string | number | boolean> = {
        resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: Math.max(1, Math.min(timeoutSeconds, 300)),
      };
      if (this.options.labelSelector) query.labelSelector = this.options.labelSelector;
      const onEvent = (type: string, object: T & { code?: number }) => {
        this.lastActivityAt = Date.now();
        if (type === "ERROR") {
          reject(
            object.code === 410
              ? new GoneError("resourceVersion too old")
              : new Error(JSON.stringify(object)),
          );
          this.abort?.abort();
          return;
        }
        latest = object.metadata?.resourceVersion ?? latest;
        if (type === "BOOKMARK") return;
        const key = objectKey(object);
        if (type === "DELETED") this.cache.delete(key);
        else this.cache.set(key, object);
        this.options.onChange(object, type as ChangeType);
      };
      watch
        .watch(this.options.path, query, onEvent, (error: unknown) =>
          error && !this.stopped ? reject(error as Error) : resolve(latest),
        )
        .then((controller) => (this.abort = controller), reject);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
