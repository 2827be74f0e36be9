/**
 * Coverage as metrics a security team can alert on: per policy, how many sources are selected,
 * mirrored, unmirrored (by reason) and still pending, whether it is Ready; and how long pods wait
 * from Ready to covered. A pod counts as covered when its session exists in AWS and, for a
 * collector target, the VNI map that selects it is published (the collector follows the map
 * within a second: bench/operator/coverage.ts measures the first packet kept).
 */
import type { LeanPod } from "../k8s/lean.ts";
import type { Plan } from "../plan/types.ts";
import type { OperatorMetrics } from "./metrics.ts";

/** Pods that became Ready longer ago than this are not new arrivals: their coverage is not timed. */
const NEW_POD_MS = 15 * 60_000;

/** What one cycle tells the tracker. */
export interface CoverageInput {
  plan: Plan;
  pods: readonly LeanPod[];
  /** Session keys that exist in AWS after this cycle's apply. */
  programmed: ReadonlySet<string> | ReadonlyMap<string, unknown>;
  /** The kind of each policy's target (`collector`, `network-load-balancer`, …), by policy key. */
  targetKind: (policy: string) => string;
  /** Policies whose Ready condition is True. */
  ready: ReadonlySet<string>;
  nowMs: number;
}

/** Keeps the coverage metrics; remembers which pods it has already seen covered. */
export class CoverageTracker {
  readonly #m: OperatorMetrics;
  /** `policy` NUL `pod` of the pods covered as of the last cycle. */
  #covered = new Set<string>();

  constructor(metrics: OperatorMetrics) {
    this.#m = metrics;
  }

  /** Updates the gauges and times the pods covered since the last cycle. */
  record(c: CoverageInput): void {
    const m = this.#m;
    // Reset and set in one synchronous run: a scrape never sees the gauges half written.
    m.policySources.reset();
    m.policyUnmirrored.reset();
    m.policyReady.reset();
    const covered = new Set<string>();
    const fresh: { key: string; policy: string; pod: string }[] = [];
    for (const [policy, r] of c.plan.policies) {
      let mirrored = 0;
      let unmirrored = 0;
      const reasons = new Map<string, number>();
      for (const s of r.sources) {
        if (s.reason) {
          unmirrored++;
          reasons.set(s.reason, (reasons.get(s.reason) ?? 0) + 1);
        } else if (s.sessionKey && c.programmed.has(s.sessionKey)) {
          mirrored++;
          if (s.kind !== "Pod") continue;
          const key = `${policy}\u0000${s.name}`;
          covered.add(key);
          if (!this.#covered.has(key)) fresh.push({ key, policy, pod: s.name });
        }
      }
      const selected = r.sources.length;
      m.policySources.set({ policy, state: "selected" }, selected);
      m.policySources.set({ policy, state: "mirrored" }, mirrored);
      m.policySources.set({ policy, state: "unmirrored" }, unmirrored);
      m.policySources.set({ policy, state: "pending" }, selected - mirrored - unmirrored);
      for (const [reason, n] of reasons) m.policyUnmirrored.set({ policy, reason }, n);
      m.policyReady.set({ policy }, c.ready.has(policy) ? 1 : 0);
    }
    this.#covered = covered;
    if (fresh.length === 0) return;
    // Only the newly covered pods are looked up (a map of every pod per cycle would cost more).
    const wanted = new Set(fresh.map((f) => f.pod));
    const readySince = new Map<string, number | undefined>();
    for (const p of c.pods) {
      const name = `${p.namespace}/${p.name}`;
      if (wanted.has(name)) readySince.set(name, p.readySince);
    }
    for (const f of fresh) {
      const since = readySince.get(f.pod);
      if (since === undefined || c.nowMs - since > NEW_POD_MS) continue;
      m.coverage.observe({ target_kind: c.targetKind(f.policy) }, Math.max(0, c.nowMs - since) / 1000);
    }
  }
}
