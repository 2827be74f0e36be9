// Departures wait for arrivals (ADR 23): the operator on a real apiserver with kwok pods and the
// EC2 emulator through the SDK. A pod replaced on its node costs the rule calls of going straight
// from the old filter to the new one (each rule rewritten in place), not a delete and a create per
// rule; a pod that leaves without a successor stops being mirrored once the grace ends, and the
// policy stays Ready throughout. The counts are the emulator's: calls it answered, by action.
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { FilterRule, MirrorFilter } from "../../src/api/inventory.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import type { OperatorMetrics } from "../../src/controller/metrics.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { rulesOf } from "../../src/plan/diff.ts";
import { planRuleEdits } from "../../src/plan/rule-edits.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import {
  condition,
  createPod,
  deletePod,
  policyStatus,
  runningPodIp,
  stopScenario,
} from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createPolicy, createSuiteCorner, until } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const FIRST = 790; // 790 runs the collector, 791 the pods
const PREFIX = "depart";
const SYSTEM = "depart-system";
const NS = "depart";
const CLUSTER = "depart";
const GRACE_MS = 8_000;
const world = makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
const nodeName = eksNodeSpec(FIRST + 1, { prefix: PREFIX }).name;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let metrics: OperatorMetrics;

/** A copy of the one owned filter (one ENI holds the pods) as the emulator holds it now. */
function ownedFilter(): MirrorFilter | undefined {
  const owned = [...sim.state.filters.values()].filter((f) => isOwnedBy(f.tags, CLUSTER));
  return owned.length === 1 ? structuredClone(owned[0]) : undefined;
}

/** The addresses the filter's ingress rules name (`/32` each, as these pods are spread out). */
function named(f: MirrorFilter | undefined): string[] {
  return (f?.ingressRules ?? []).map((r) => r.destinationCidrBlock).sort();
}

const ruleCalls = (from: number): string[] =>
  sim.calls
    .slice(from)
    .filter((c) => c.code === "OK" && /FilterRule$/.test(c.action))
    .map((c) => c.action);

async function held(): Promise<number> {
  const m = await metrics.registry.getSingleMetric("tmo_filter_edits_held")!.get();
  return m.values[0]?.value ?? 0;
}

async function ready(): Promise<boolean> {
  const s = await policyStatus(rest, NS, "web");
  return condition(s, "Ready")?.status === "True" && condition(s, "SessionsProgrammed")?.status === "True";
}

describe("departures wait for arrivals on their ENI", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    await createSuiteCorner(rest, {
      first: FIRST,
      count: 2,
      prefix: PREFIX,
      system: SYSTEM,
      ns: NS,
    });
    // Every other address of the node's range runs an unselected pod, so each web pod is a /32.
    for (let k = 1; k <= 8; k++) {
      const app = k % 2 === 1 ? "web" : "other";
      await createPod(rest, { namespace: NS, name: `${app}-${k}`, nodeName, labels: { app } });
      await runningPodIp(rest, NS, `${app}-${k}`);
    }
    await createPolicy(rest, {
      namespace: NS,
      name: "web",
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: NS } },
    });
    ({ runtime, metrics } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: CLUSTER,
      namespace: SYSTEM,
      departureGraceMs: GRACE_MS,
    }));
    await until("the policy Ready with 4 pods mirrored", async () =>
      (await ready()) && named(ownedFilter()).length === 4 ? true : undefined,
    );
  }, 120_000);

  afterAll(() => stopScenario(rest, { runtime, sim, nodePrefix: `${PREFIX}-` }));

  it("makes a pod replaced on its node in the calls of the direct edit from the old filter to the new, no more", async () => {
    const before = ownedFilter()!;
    const from = sim.calls.length;
    // A rolling update's step: the old pod goes, its replacement starts on the same node (kwok
    // may give it the address just freed: then the filter need not change at all).
    await deletePod(rest, NS, "web-3");
    await createPod(rest, { namespace: NS, name: "web-9", nodeName, labels: { app: "web" } });
    const ip = await runningPodIp(rest, NS, "web-9");
    const after = await until("the filter naming web-9 and 3 other pods", async () => {
      const f = ownedFilter();
      const n = named(f);
      return n.includes(`${ip}/32`) && n.length === 4 && (await held()) === 0 ? f : undefined;
    });
    // Applied as they came, the departure alone would cost a call per rule it drops (2), then the
    // arrival as many again: at least 4. Held, it goes out with the arrival.
    const direct = planRuleEdits(ruleList(before), rulesOf(after)).length;
    expect(direct).toBeLessThanOrEqual(2);
    expect(ruleCalls(from).length).toBe(direct);
    expect(await ready()).toBe(true);
  }, 60_000);

  it("lets pods that leave without successors go in one edit once none has left for the grace, Ready all along", async () => {
    const before = ownedFilter()!;
    const gone = [await runningPodIp(rest, NS, "web-5"), await runningPodIp(rest, NS, "web-7")];
    const from = sim.calls.length;
    await deletePod(rest, NS, "web-5");
    await until("the departure held", async () => ((await held()) === 1 ? true : undefined), 10_000);
    // Half a grace later another pod leaves the ENI: the wait runs from this departure.
    await sleep(GRACE_MS / 2);
    const t1 = Date.now();
    await deletePod(rest, NS, "web-7");
    await sleep(1_000);
    // Held: the rules still name both pods, nothing was called, and the policy says Ready.
    expect(named(ownedFilter())).toEqual(expect.arrayContaining(gone.map((ip) => `${ip}/32`)));
    expect(ruleCalls(from)).toEqual([]);
    expect(await held()).toBe(1);
    expect(await ready()).toBe(true);
    const after = await until(
      "the filter without web-5 and web-7",
      () => Promise.resolve(named(ownedFilter()).length === 2 ? ownedFilter() : undefined),
      GRACE_MS + 20_000,
    );
    expect(Date.now() - t1).toBeGreaterThanOrEqual(GRACE_MS - 1_000);
    expect(named(after)).not.toEqual(expect.arrayContaining([`${gone[0]}/32`]));
    // Both departures in one edit: the calls of the direct edit (a delete per rule), no more.
    expect(ruleCalls(from).length).toBe(planRuleEdits(ruleList(before), rulesOf(after)).length);
    expect(ruleCalls(from).length).toBe(4);
    expect(await held()).toBe(0);
    expect(await ready()).toBe(true);
  }, 60_000);
});

/** A filter's rules with their ids, as `planRuleEdits` takes the current ones. */
function ruleList(f: MirrorFilter): FilterRule[] {
  return [...f.ingressRules, ...f.egressRules];
}
