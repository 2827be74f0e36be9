/**
 * Status conditions as the Kubernetes API conventions want them: `lastTransitionTime` moves only
 * when `status` changes, every condition carries the generation it was computed for, and the root
 * `Ready` is derived from the others.
 */

/** A condition as stored in status. */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** A condition as computed, before times are settled. */
export type ConditionUpdate = Omit<Condition, "lastTransitionTime">;

/**
 * Merges computed conditions into the stored ones: a condition whose status did not change keeps
 * its `lastTransitionTime` (even if reason or message changed); types not computed are kept.
 */
export function mergeConditions(
  stored: readonly Condition[],
  computed: readonly ConditionUpdate[],
  now: string,
): Condition[] {
  const byType = new Map(stored.map((c) => [c.type, c]));
  for (const c of computed) {
    const old = byType.get(c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : now;
    byType.set(c.type, { ...c, lastTransitionTime });
  }
  return [...byType.values()].sort((a, b) => a.type.localeCompare(b.type));
}

/**
 * The root `Ready` condition derived from the others: True when every one is True; otherwise
 * False (or Unknown if any is Unknown and none False) with the first non-True one's reason.
 */
export function deriveReady(conditions: readonly ConditionUpdate[], generation: number): ConditionUpdate {
  const notTrue = conditions.filter((c) => c.status !== "True");
  if (notTrue.length === 0) {
    return {
      type: "Ready",
      status: "True",
      reason: "Ready",
      message: "All conditions are met",
      observedGeneration: generation,
    };
  }
  const first = notTrue.find((c) => c.status === "False") ?? notTrue[0]!;
  return {
    type: "Ready",
    status: first.status,
    reason: first.reason,
    message: `${first.type}: ${first.message}`,
    observedGeneration: generation,
  };
}

/** Deep equality of two status objects, for "write status only when it changed". */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(
          Object.entries(val as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)),
        )
      : val,
  );
}
