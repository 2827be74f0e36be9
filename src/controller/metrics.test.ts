import { describe, expect, it } from "vitest";
import { makeOperatorMetrics } from "./metrics.ts";

describe("makeOperatorMetrics with the default metrics", () => {
  it("names only counters *_total, and keeps the per-type gauges of the ones it drops", async () => {
    const metrics = await makeOperatorMetrics({ defaultMetrics: true }).registry.getMetricsAsJSON();
    const typeOf = new Map(metrics.map((m) => [m.name, String(m.type)]));
    const misnamed = [...typeOf].filter(([name, type]) => name.endsWith("_total") && type !== "counter");
    expect(misnamed).toEqual([]);
    for (const what of ["handles", "requests", "resources"])
      expect(typeOf.get(`tmo_operator_nodejs_active_${what}`), what).toBe("gauge");
    // The rest of prom-client's defaults are still there.
    expect(typeOf.get("tmo_operator_process_cpu_seconds_total")).toBe("counter");
    expect(typeOf.get("tmo_operator_nodejs_eventloop_lag_seconds")).toBe("gauge");
  });
});
