/**
 * The status writer every kind shares: writes a status when it changed, tells the story
 * of the Ready condition in Events, and — when a step failed — writes what failed.
 *
 * A failed step keeps everything the last good run reported and sets Ready=False with
 * the error's stable reason (`Invalid` for a request the API server refused with 422)
 * and message (the API server's own words), at the current observedGeneration, so
 * `kubectl get` shows why an object is stuck instead of its last good state.
 *
 * The subtle point: a failure is not written when it is a 409 Conflict or a 404. Both
 * mean the object changed under us (a newer resourceVersion, or deleted); the watch
 * event brings a fresh run, and writing "Ready=False Conflict" would only make Ready
 * flap. Every write carries the resourceVersion read, so a stale cached object can cost
 * a 409, never an overwrite of a newer status.
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { findCondition, setCondition } from "./conditions.ts";
import type { CustomObject, KindCoordinates, ObjectStatus } from "./controller.ts";
import type { EventRecorder } from "./events.ts";
import { errorMessage, errorReason } from "./kubeApi.ts";

/** Replaces the status when it differs from the object's; says whether it wrote. */
export async function writeStatus(
  kc: KubeConfig,
  kind: KindCoordinates,
  object: CustomObject,
  status: ObjectStatus,
): Promise<boolean> {
  if (JSON.stringify(status) === JSON.stringify(object.status)) return false;
  await kc.makeApiClient(CustomObjectsApi).replaceNamespacedCustomObjectStatus({
    group: kind.group,
    version: kind.version,
    plural: kind.plural,
    namespace: object.metadata.namespace!,
    name: object.metadata.name!,
    body: { ...object, status },
  });
  return true;
}

/** Whether a failed step is reported in status (see the module comment). */
export function reportsFailure(error: unknown): boolean {
  return !["Conflict", "NotFound"].includes(errorReason(error));
}

/** The status after a failed step: the previous one with Ready=False saying why; pure. */
export function failedStatus(
  previous: ObjectStatus | undefined,
  error: unknown,
  generation: number | undefined,
  now: Date,
  phase?: string,
): ObjectStatus {
  const conditions = setCondition(
    previous?.conditions,
    { type: "Ready", status: "False", reason: errorReason(error), message: errorMessage(error) },
    generation,
    now,
  );
  return {
    ...previous,
    ...(phase ? { phase } : {}),
    conditions,
    observedGeneration: generation ?? 0,
  };
}

/** Records an Event when the Ready condition changed status or reason (Warning unless Ready). */
export async function recordReadyChange(
  events: EventRecorder,
  object: CustomObject,
  before: ObjectStatus | undefined,
  after: ObjectStatus,
): Promise<void> {
  const was = findCondition(before?.conditions, "Ready");
  const is = findCondition(after.conditions, "Ready");
  if (!is || (was?.status === is.status && was.reason === is.reason)) return;
  await events.record(object, is.status === "True" ? "Normal" : "Warning", is.reason, is.message);
}
