// Time-boxed policies on a real apiserver and the EC2 emulator: a policy with spec.duration
// mirrors until its end, then the operator removes every session and filter it made and reports
// Ready=False, reason Expired, with the time; the next cycle is timed at the end (the resync is a
// minute here, so a cleanup within seconds shows it), and an operator that was stopped across the
// end cleans up on start. Bad durations and times are refused by the apiserver.
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ConditionType, Reason } from "../../src/api/reasons.ts";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import type { Ec2Sim } from "../ec2-sim/server.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createPolicy, startCollectorScenario, stopCollectorScenario, until } from "../fixtures/scenario.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const FIRST = 812; // 812 runs the collector; 813–814 are mirrored as whole nodes
const CLUSTER = "it-timeboxed";
const NS = "timeboxed";
const TARGET = "timeboxed-collector";
const NODE_LABEL = { "timeboxed.twtech.io/collector": "true" };
const nodes = { nodeSelector: { matchLabels: { "example.com/pool": "timeboxed" } } };

const policyPath = (name: string): string =>
  `/apis/${API_VERSION}/namespaces/${NS}/trafficmirrorpolicies/${name}`;
type Policy = { metadata: { creationTimestamp: string }; status?: PolicyStatus };
const read = (name: string): Promise<Policy> => rest.get<Policy>(policyPath(name), "reading policy");
const ready = (p: Policy) => p.status?.conditions?.find((c) => c.type === ConditionType.Ready);
/** The policy once its Ready condition has `reason` ("Ready" when True). */
const readyWith = (name: string, reason: string, timeoutMs?: number): Promise<Policy> =>
  until(
    `${name} ${reason}`,
    async () => {
      const p = await read(name);
      return ready(p)?.reason === reason ? p : undefined;
    },
    timeoutMs,
  );

describe("time-boxed policies", () => {
  let sim: Ec2Sim;
  let runtime: OperatorRuntime | undefined;
  const owned = (kind: "sessions" | "filters") =>
    [...sim.state[kind].values()].filter((x) => isOwnedBy(x.tags, CLUSTER));
  const start = async (): Promise<void> => {
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: CLUSTER,
      namespace: "timeboxed-system",
      resyncMs: 60_000,
    }));
  };

  beforeAll(async () => {
    sim = await startCollectorScenario(rest, {
      first: FIRST,
      count: 3,
      prefix: "timeboxed",
      collectorLabels: NODE_LABEL,
      namespaces: ["timeboxed-system", NS],
      target: TARGET,
      allowed: [NS],
    });
  });

  afterAll(() =>
    stopCollectorScenario(rest, {
      policies: ["short", "restart", "fixed"].map((name) => [NS, name] as const),
      target: TARGET,
      prefix: "timeboxed",
      runtime,
      sim,
    }),
  );

  it("mirrors until the end of spec.duration, then leaves nothing in EC2 and says Expired", async () => {
    await start();
    await createPolicy(rest, {
      namespace: NS,
      name: "short",
      spec: { ...nodes, targetRef: { name: TARGET }, duration: "8s" },
    });
    const running = await readyWith("short", "Ready");
    const end = Date.parse(running.metadata.creationTimestamp) + 8_000;
    expect(running.status?.expiresAt).toBe(new Date(end).toISOString());
    expect(Date.now()).toBeLessThan(end);
    expect(owned("sessions").length).toBeGreaterThan(0);
    const expired = await readyWith("short", Reason.Expired, 30_000);
    // Timed at the end, not found by the minute's resync.
    expect(Date.now() - end).toBeLessThan(10_000);
    expect(ready(expired)).toMatchObject({
      status: "False",
      message: `SourcesResolved: mirroring ended at ${new Date(end).toISOString()} (spec.duration)`,
    });
    expect(Date.parse(ready(expired)!.lastTransitionTime)).toBeGreaterThanOrEqual(end - 1_000);
    expect(owned("sessions")).toEqual([]);
    expect(owned("filters")).toEqual([]);
    expect(expired.status?.sessionCount).toBe(0);
  });

  it("cleans up on start when the operator was down across the end", async () => {
    if (!runtime) await start();
    await createPolicy(rest, {
      namespace: NS,
      name: "restart",
      spec: { ...nodes, targetRef: { name: TARGET }, duration: "6s" },
    });
    const p = await readyWith("restart", "Ready");
    const end = Date.parse(p.metadata.creationTimestamp) + 6_000;
    await runtime!.stop();
    runtime = undefined;
    expect(owned("sessions").length).toBeGreaterThan(0);
    await sleep(Math.max(0, end - Date.now()) + 1_500);
    // Nobody removed them while the operator was away.
    expect(owned("sessions").length).toBeGreaterThan(0);
    await start();
    await readyWith("restart", Reason.Expired);
    expect(owned("sessions")).toEqual([]);
    expect(owned("filters")).toEqual([]);
  });

  it("ends at spec.expiresAt, and a time already past never makes a session", async () => {
    if (!runtime) await start();
    const past = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, "Z");
    await createPolicy(rest, {
      namespace: NS,
      name: "fixed",
      spec: { ...nodes, targetRef: { name: TARGET }, expiresAt: past },
    });
    const p = await readyWith("fixed", Reason.Expired);
    expect(ready(p)?.message).toContain("(spec.expiresAt)");
    expect(p.status?.expiresAt).toBe(new Date(past).toISOString());
    expect(owned("sessions")).toEqual([]);
  });

  it("refuses durations and times the apiserver cannot read", async () => {
    for (const [field, value] of [
      ["duration", "10"],
      ["duration", "1.5h"],
      ["duration", "0s"],
      ["duration", "9000h"],
      ["duration", ""],
      ["expiresAt", "tomorrow"],
      ["expiresAt", "2026-13-01T00:00:00Z"],
    ] as const) {
      const err = await createPolicy(rest, {
        namespace: NS,
        name: "bad",
        spec: { ...nodes, targetRef: { name: TARGET }, [field]: value },
      }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err, `${field}: ${value}`).toBeDefined();
      expect(
        String(err?.message) + String((err?.cause as Error | undefined)?.message),
        `${field}: ${value}`,
      ).toMatch(new RegExp(`spec\\.${field}`));
    }
  });
});
