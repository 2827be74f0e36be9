// The coverage metrics from a plan's reports: gauges per policy, and Ready → covered timed once per
// pod, only for pods whose session exists and that became Ready recently.
import { describe, expect, it } from "vitest";
import type { LeanPod } from "../k8s/lean.ts";
import type { Plan, PolicyReport } from "../plan/types.ts";
import { CoverageTracker } from "./coverage.ts";
import { makeOperatorMetrics } from "./metrics.ts";

const NOW = Date.parse("2026-12-01T12:00:00Z");

function pod(name: string, readyAgoMs?: number): LeanPod {
  return {
    namespace: "shop",
    name,
    uid: name,
    labels: {},
    nodeName: "n",
    podIPs: ["10.0.0.1"],
    hostNetwork: false,
    phase: "Running",
    deleting: false,
    ...(readyAgoMs === undefined ? {} : { readySince: NOW - readyAgoMs }),
  };
}

function planOf(report: PolicyReport): Plan {
  return { policies: new Map([[report.policy, report]]) } as Plan;
}

const report: PolicyReport = {
  policy: "shop/web",
  sessionKeys: ["s1", "s2"],
  shadowedBy: [],
  sources: [
    { kind: "Pod", name: "shop/a", sessionKey: "s1", networkInterfaceId: "eni-1" },
    { kind: "Pod", name: "shop/b", sessionKey: "s1", networkInterfaceId: "eni-1" },
    { kind: "Pod", name: "shop/old", sessionKey: "s1", networkInterfaceId: "eni-1" },
    { kind: "Pod", name: "shop/c", sessionKey: "s2", networkInterfaceId: "eni-2" },
    { kind: "Pod", name: "shop/d", networkInterfaceId: "eni-3", reason: "EniFull", message: "" },
  ],
};
const pods = [pod("a", 1_500), pod("b", 4_000), pod("old", 3_600_000), pod("c", 500), pod("d", 100)];

async function sample(
  m: ReturnType<typeof makeOperatorMetrics>,
  name: string,
): Promise<Record<string, number>> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name)!;
  return Object.fromEntries(
    (metric.values as { labels: Record<string, string | number>; value: number; metricName?: string }[]).map(
      (v) => [`${v.metricName ?? name}${JSON.stringify(v.labels)}`, v.value],
    ),
  );
}

describe("CoverageTracker", () => {
  it("sets each policy's gauges and times pods whose session exists, once", async () => {
    const m = makeOperatorMetrics();
    const t = new CoverageTracker(m);
    const input = {
      plan: planOf(report),
      pods,
      programmed: new Set(["s1"]), // s2 failed this cycle
      targetKind: () => "collector",
      ready: new Set<string>(),
      nowMs: NOW,
    };
    t.record(input);
    expect(await sample(m, "tmo_policy_sources")).toEqual({
      'tmo_policy_sources{"policy":"shop/web","state":"selected"}': 5,
      'tmo_policy_sources{"policy":"shop/web","state":"mirrored"}': 3,
      'tmo_policy_sources{"policy":"shop/web","state":"unmirrored"}': 1,
      'tmo_policy_sources{"policy":"shop/web","state":"pending"}': 1,
    });
    expect(await sample(m, "tmo_policy_unmirrored_sources")).toEqual({
      'tmo_policy_unmirrored_sources{"policy":"shop/web","reason":"EniFull"}': 1,
    });
    expect(await sample(m, "tmo_policy_ready")).toEqual({ 'tmo_policy_ready{"policy":"shop/web"}': 0 });
    // a (1.5 s) and b (4 s); "old" became Ready an hour ago and is not a new arrival.
    const h = await sample(m, "tmo_pod_coverage_seconds");
    expect(h['tmo_pod_coverage_seconds_count{"target_kind":"collector"}']).toBe(2);
    expect(h['tmo_pod_coverage_seconds_sum{"target_kind":"collector"}']).toBeCloseTo(5.5);
    expect(h['tmo_pod_coverage_seconds_bucket{"le":2,"target_kind":"collector"}']).toBe(1);

    // Next cycle: s2 exists now; a and b are not timed again, c is.
    t.record({
      ...input,
      programmed: new Set(["s1", "s2"]),
      ready: new Set(["shop/web"]),
      nowMs: NOW + 1000,
    });
    const h2 = await sample(m, "tmo_pod_coverage_seconds");
    expect(h2['tmo_pod_coverage_seconds_count{"target_kind":"collector"}']).toBe(3);
    expect(h2['tmo_pod_coverage_seconds_sum{"target_kind":"collector"}']).toBeCloseTo(7);
    expect(await sample(m, "tmo_policy_ready")).toEqual({ 'tmo_policy_ready{"policy":"shop/web"}': 1 });
  });

  it("forgets a policy that is gone", async () => {
    const m = makeOperatorMetrics();
    const t = new CoverageTracker(m);
    const base = {
      pods,
      programmed: new Set(["s1"]),
      targetKind: () => "collector",
      ready: new Set<string>(),
      nowMs: NOW,
    };
    t.record({ ...base, plan: planOf(report) });
    t.record({ ...base, plan: { policies: new Map() } as Plan });
    expect(await sample(m, "tmo_policy_sources")).toEqual({});
  });
});
