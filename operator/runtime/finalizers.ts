/**
 * The finalizer of every kind, done one way: which step an object is at (pure), and the
 * merge patch that adds or removes offsite.dev/finalizer.
 *
 * The subtle point: a JSON merge patch replaces the whole finalizers list, so it carries
 * the resourceVersion that list was read at. Had someone added a finalizer of their own
 * meanwhile, the patch fails with 409 Conflict (retried on a fresh read) instead of
 * silently dropping theirs.
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import type { CustomObject, KindCoordinates } from "./controller.ts";
import { FINALIZER } from "./ownership.ts";

export type LifecycleStep =
  /** Not being deleted, finalizer in place (or not wanted): reconcile. */
  | "reconcile"
  /** Not being deleted and the kind has a finalize step, but the finalizer is missing. */
  | "addFinalizer"
  /** Being deleted with our finalizer: run finalize, then remove it. */
  | "finalize"
  /** Being deleted and nothing of ours holds it: leave it alone. */
  | "released";

export function lifecycleStep(object: CustomObject, hasFinalizeStep: boolean): LifecycleStep {
  const holds = object.metadata.finalizers?.includes(FINALIZER) === true;
  if (object.metadata.deletionTimestamp) return holds ? "finalize" : "released";
  return hasFinalizeStep && !holds ? "addFinalizer" : "reconcile";
}

/** Adds (`add`) or removes our finalizer; returns the object as the server stored it. */
export async function patchFinalizer(
  kc: KubeConfig,
  kind: KindCoordinates,
  object: CustomObject,
  change: "add" | "remove",
): Promise<CustomObject> {
  const others = (object.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
  return (await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
    {
      group: kind.group,
      version: kind.version,
      plural: kind.plural,
      namespace: object.metadata.namespace!,
      name: object.metadata.name!,
      body: {
        metadata: {
          resourceVersion: object.metadata.resourceVersion,
          finalizers: change === "add" ? [...others, FINALIZER] : others,
        },
      },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  )) as CustomObject;
}
