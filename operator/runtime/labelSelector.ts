/**
 * Label selectors (`matchLabels` / `matchExpressions`) evaluated against an object's
 * labels, as the API server does (apimachinery's LabelSelectorAsSelector): every
 * requirement must hold; an empty selector matches everything, an absent one nothing.
 * @kubernetes/client-node has no matcher of its own (it only passes selector strings).
 *
 * A selector the API server would refuse (In/NotIn without values, Exists/DoesNotExist
 * with values, an unknown operator) matches nothing, so a malformed BackupJob never
 * selects pods by accident.
 */
export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

function requirementHolds(
  { key, operator, values = [] }: LabelSelectorRequirement,
  labels: Record<string, string>,
): boolean {
  const has = Object.hasOwn(labels, key);
  switch (operator) {
    case "In":
      return values.length > 0 && has && values.includes(labels[key]!);
    case "NotIn":
      return values.length > 0 && (!has || !values.includes(labels[key]!));
    case "Exists":
      return values.length === 0 && has;
    case "DoesNotExist":
      return values.length === 0 && !has;
    default:
      return false;
  }
}

export function selectorMatches(
  selector: LabelSelector | undefined | null,
  labels: Record<string, string> | undefined,
): boolean {
  if (!selector) return false;
  const actual = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {}))
    if (!Object.hasOwn(actual, key) || actual[key] !== value) return false;
  return (selector.matchExpressions ?? []).every((requirement) => requirementHolds(requirement, actual));
}
