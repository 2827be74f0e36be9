// promtool against the metrics code: prom-client's defaults as they come break Prometheus' naming
// rules (so the check in the process tests can fail), and the operator's registry passes it.
import { collectDefaultMetrics, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { makeOperatorMetrics } from "../../src/controller/metrics.ts";
import { promtoolCheckMetrics } from "../fixtures/promtool.ts";

describe("promtool check metrics", () => {
  it("flags prom-client's default gauges named like counters", async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: "tmo_operator_" });
    const { code, output } = promtoolCheckMetrics(await registry.metrics());
    expect(code).not.toBe(0);
    const flagged = output
      .split("\n")
      .filter((l) => l.includes('non-counter metrics should not have "_total" suffix'))
      .map((l) => l.split(" ")[0])
      .sort();
    expect(flagged).toEqual([
      "tmo_operator_nodejs_active_handles_total",
      "tmo_operator_nodejs_active_requests_total",
      "tmo_operator_nodejs_active_resources_total",
    ]);
  });

  it("passes the operator's registry with its default metrics", async () => {
    const metrics = makeOperatorMetrics({ defaultMetrics: true });
    metrics.cycles.inc({ outcome: "success" });
    metrics.cycleDuration.observe({ outcome: "success" }, 0.2);
    expect(promtoolCheckMetrics(await metrics.registry.metrics())).toEqual({ code: 0, output: "" });
  });
});
