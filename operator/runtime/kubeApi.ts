/**
 * The few ways the operator talks to the API server, each done one way:
 * server-side apply for everything it owns (idempotent: the same desired object twice
 * is a no-op, and a restart mid-reconcile converges to the same objects), reads that
 * treat 404 as "absent", and one error type whose `reason` ends up in metrics.
 */
import {
  ApiException,
  KubernetesObjectApi,
  PatchStrategy,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";

export const FIELD_MANAGER = "offsite-operator";

/** A failed reconcile step, with a stable CamelCase reason for metrics and conditions. */
export class ReconcileError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ReconcileError";
    this.reason = reason;
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiException && error.code === 404;
}

// The reasons of the API's Status codes (metav1.StatusReason), and one for every other
// code, so the label set of offsite_reconcile_errors_total is known and bounded from the start.
const API_ERROR_REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  422: "Invalid",
  429: "TooManyRequests",
  500: "ServerError",
  503: "Unavailable",
  504: "Timeout",
};
const OTHER_HTTP_ERROR = "HttpError";

/** Every reason errorReason gives without a ReconcileError of a controller's own (metrics start with these). */
export const KNOWN_ERROR_REASONS: readonly string[] = [
  ...Object.values(API_ERROR_REASONS),
  OTHER_HTTP_ERROR,
  "Unexpected",
];

/** The stable reason of any error a reconcile may throw. */
export function errorReason(error: unknown): string {
  if (error instanceof ReconcileError) return error.reason;
  if (error instanceof ApiException) return API_ERROR_REASONS[error.code] ?? OTHER_HTTP_ERROR;
  return "Unexpected";
}

/** The API server's message of a failed request, or the error's own. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiException) {
    try {
      const body = (typeof error.body === "string" ? JSON.parse(error.body) : error.body) as {
        message?: string;
      };
      if (body?.message) return `${body.message} (HTTP ${error.code})`;
    } catch {
      // not a Status body
    }
    return `HTTP ${error.code}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Resolves to undefined when the object does not exist. */
export async function readOptional<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export class Applier {
  private readonly objects: KubernetesObjectApi;
  constructor(kc: KubeConfig) {
    this.objects = KubernetesObjectApi.makeApiClient(kc);
  }

  /** Server-side applies `object` as the operator's field manager; returns what the server stored. */
  async apply<T extends KubernetesObject>(object: T): Promise<T> {
    try {
      return await this.objects.patch(
        object,
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      );
    } catch (error) {
      const what = `${object.kind} ${object.metadata?.namespace}/${object.metadata?.name}`;
      throw new ReconcileError(errorReason(error), `applying ${what} failed: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }
}
