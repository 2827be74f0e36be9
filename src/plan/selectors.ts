/** Label selectors, evaluated as Kubernetes does. */
import type { LabelSelector } from "../api/resources.ts";

/** Whether `labels` match `selector` (an empty selector matches everything). */
export function matches(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const ml = selector.matchLabels;
  if (ml) for (const k in ml) if (labels[k] !== ml[k]) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const inValues = value !== undefined && (e.values ?? []).includes(value);
    const ok =
      e.operator === "In"
        ? inValues
        : e.operator === "NotIn"
          ? !inValues
          : e.operator === "Exists"
            ? has
            : !has;
    if (!ok) return false;
  }
  return true;
}

/**
 * `matches` with the selector fixed: its keys are read once, not once per pod (policies are
 * matched against every pod of their namespace).
 */
export function compileSelector(
  selector: LabelSelector | undefined,
): (labels: Record<string, string>) => boolean {
  if (!selector) return () => false;
  const pairs: [string, string][] = [];
  const ml = selector.matchLabels;
  if (ml) for (const k in ml) pairs.push([k, ml[k]!]);
  const expressions = selector.matchExpressions ?? [];
  if (expressions.length > 0) return (labels) => matches(selector, labels);
  return (labels) => {
    for (const [k, v] of pairs) if (labels[k] !== v) return false;
    return true;
  };
}

/** Whether a node's labels contain every pair of a plain map selector. */
export function matchesMap(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}
