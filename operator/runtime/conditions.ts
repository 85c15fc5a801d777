/**
 * Status conditions in the Kubernetes conventions. `setCondition` keeps
 * lastTransitionTime when the status did not change, so a level-based reconcile that
 * recomputes every condition each run does not make them flap in time.
 */
import type { Condition } from "../../crds/schema/fields.ts";

export type { Condition };

export interface ConditionInput {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
}

export function setCondition(
  existing: readonly Condition[] | undefined,
  input: ConditionInput,
  observedGeneration: number | undefined,
  now: Date,
): Condition[] {
  const previous = existing?.find((c) => c.type === input.type);
  const next: Condition = {
    ...input,
    ...(observedGeneration !== undefined ? { observedGeneration } : {}),
    lastTransitionTime:
      previous && previous.status === input.status ? previous.lastTransitionTime : now.toISOString(),
  };
  return [...(existing ?? []).filter((c) => c.type !== input.type), next].sort((a, b) =>
    a.type.localeCompare(b.type),
  );
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
