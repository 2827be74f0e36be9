// The chart's coverage alerts, judged by Prometheus' own tool: the PrometheusRule the chart renders
// passes `promtool check rules`, and `promtool test rules` shows each alert firing on the series the
// operator exports (coverage below the threshold, slow coverage, a policy not Ready) and not on a
// healthy policy or on a replica that is not the leader.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";

const run = promisify(execFile);
const CHART_DIR = join(REPO_ROOT, "charts", "traffic-mirror-operator");
const work = mkdtempSync(join(tmpdir(), "tmo-rules-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function renderedRules(...set: string[]): Promise<unknown> {
  const { stdout } = await run(
    join(TOOLS_BIN, "helm"),
    [
      "template",
      "tmo",
      CHART_DIR,
      "--set",
      "clusterName=rules",
      "--set",
      "metrics.prometheusRule.enabled=true",
      "--api-versions",
      "monitoring.coreos.com/v1/PrometheusRule",
      ...set.flatMap((s) => ["--set", s]),
    ],
    { cwd: REPO_ROOT },
  );
  const rule = parseAllDocuments(stdout)
    .map((d) => d.toJS() as { kind?: string; spec?: unknown } | null)
    .find((d) => d?.kind === "PrometheusRule");
  if (!rule) throw new Error("the chart rendered no PrometheusRule");
  return rule.spec;
}

async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  return run(join(TOOLS_BIN, "promtool"), args, { cwd: work }).then(
    (r) => ({ code: 0, output: `${r.stdout}${r.stderr}` }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? 1,
      output: `${e.stdout ?? ""}${e.stderr ?? ""}`,
    }),
  );
}

/** Series as the operator exports them: a leader and a former leader with stale gauges. */
const leader = 'instance="op-0:8080",job="tmo"';
const former = 'instance="op-1:8080",job="tmo"';
const series = [
  { series: `tmo_leader{${leader}}`, values: "1x60" },
  { series: `tmo_leader{${former}}`, values: "0x60" },
  // shop/web: 100 selected, 80 mirrored (below 0.95) for the whole hour.
  { series: `tmo_policy_sources{${leader},policy="shop/web",state="selected"}`, values: "100x60" },
  { series: `tmo_policy_sources{${leader},policy="shop/web",state="mirrored"}`, values: "80x60" },
  { series: `tmo_policy_ready{${leader},policy="shop/web"}`, values: "0x60" },
  // shop/db: whole; the former leader's stale gauges say otherwise and must not count.
  { series: `tmo_policy_sources{${leader},policy="shop/db",state="selected"}`, values: "10x60" },
  { series: `tmo_policy_sources{${leader},policy="shop/db",state="mirrored"}`, values: "10x60" },
  { series: `tmo_policy_ready{${leader},policy="shop/db"}`, values: "1x60" },
  { series: `tmo_policy_sources{${former},policy="shop/db",state="selected"}`, values: "10x60" },
  { series: `tmo_policy_sources{${former},policy="shop/db",state="mirrored"}`, values: "0x60" },
  { series: `tmo_policy_ready{${former},policy="shop/db"}`, values: "0x60" },
  // Coverage of collector targets: one pod a minute, each after 45 s (above 30 s).
  ...["0.25", "0.5", "1", "2", "3", "5", "10", "30"].map((le) => ({
    series: `tmo_pod_coverage_seconds_bucket{${leader},target_kind="collector",le="${le}"}`,
    values: "0x60",
  })),
  ...["60", "120", "300", "600", "+Inf"].map((le) => ({
    series: `tmo_pod_coverage_seconds_bucket{${leader},target_kind="collector",le="${le}"}`,
    values: "0+1x60",
  })),
];

describe("the chart's PrometheusRule", () => {
  it("passes promtool check rules", async () => {
    writeFileSync(join(work, "rules.yaml"), stringify(await renderedRules()));
    const r = await promtool("check", "rules", "rules.yaml");
    expect(r.output).toContain("SUCCESS: 3 rules found");
    expect(r.code).toBe(0);
  });

  it("fires each alert on the series the operator exports, and only there", async () => {
    const spec = (await renderedRules()) as {
      groups: { rules: { alert: string; annotations: { description: string } }[] }[];
    };
    writeFileSync(join(work, "rules.yaml"), stringify(spec));
    const description = (name: string) =>
      spec.groups[0]!.rules.find((r) => r.alert === name)!.annotations.description;
    // The summary as Prometheus fills in its template: labels and value.
    const alert = (name: string, labels: Record<string, string>, summary: string) => ({
      eval_time: "30m",
      alertname: name,
      exp_alerts: [
        {
          exp_labels: { severity: "warning", ...labels },
          exp_annotations: { summary, description: description(name) },
        },
      ],
    });
    const tests = {
      rule_files: ["rules.yaml"],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: series,
          alert_rule_test: [
            alert(
              "TrafficMirrorCoverageLow",
              { policy: "shop/web" },
              "TrafficMirrorPolicy shop/web mirrors 80% of its selected sources",
            ),
            alert(
              "TrafficMirrorPolicyNotReady",
              { policy: "shop/web" },
              "TrafficMirrorPolicy shop/web is not Ready",
            ),
            // p99 of one pod a minute covered after 45 s: inside the 30–60 s bucket.
            alert(
              "TrafficMirrorCoverageSlow",
              { target_kind: "collector" },
              "New pods wait 59.7s to be mirrored (collector targets, p99)",
            ),
            // Before the alerts' `for`, nothing fires.
            { eval_time: "5m", alertname: "TrafficMirrorCoverageLow", exp_alerts: [] },
          ],
        },
      ],
    };
    writeFileSync(join(work, "tests.yaml"), stringify(tests));
    const r = await promtool("test", "rules", "tests.yaml");
    expect(r.output).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });

  it("takes the threshold and durations from the values", async () => {
    const spec = JSON.stringify(
      await renderedRules(
        "metrics.prometheusRule.slowCoverageSeconds=5",
        "metrics.prometheusRule.coverageFor=30m",
      ),
    );
    expect(spec).toContain("> 5\\n");
    expect(spec).toContain('"for":"30m"');
  });
});
