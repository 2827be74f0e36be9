// Golden output of the planner: plans a set of worlds (the benchmark's cluster at a small size, a
// mixed variant with collectors, node sources, foreign sessions and odd pods, and random worlds
// from the property tests' generator), each from an empty account, in steady state and after some
// churn, and writes one SHA-256 per plan. Optimisations must leave every line unchanged.
// Run: node bench/plan/golden.ts > new.txt && diff bench/plan/golden.sha256 new.txt
//      node bench/plan/golden.ts --dump DIR   (also writes each plan's JSON, to find a difference)
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import fc from "fast-check";
import type { PolicyFilterRule } from "../../src/api/resources.ts";
import { caseArb, ipv6CaseArb } from "../../test/fixtures/plan-cases.ts";
import { applyDiff } from "../../src/plan/diff.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import type { Plan, PlanInput } from "../../src/plan/types.ts";
import { makeForeignSession, makePolicy, makeTarget } from "../../test/fixtures/world.ts";
import { makeBenchInput, makeCrowdedInput } from "./world.ts";

const dumpDir = process.argv[2] === "--dump" ? process.argv[3] : undefined;
if (dumpDir) mkdirSync(dumpDir, { recursive: true });

function serialise(plan: Plan): string {
  return JSON.stringify(plan, (_k, v: unknown) => (v instanceof Map ? { map: [...v.entries()] } : v));
}

function emit(name: string, plan: Plan): void {
  const json = serialise(plan);
  if (dumpDir) writeFileSync(`${dumpDir}/${name}.json`, json);
  console.log(`${createHash("sha256").update(json).digest("hex")}  ${name}`);
}

/** Plans from empty, then in steady state, then after `churn` changed the steady input. */
function lifecycle(name: string, input: PlanInput, churn?: (i: PlanInput) => PlanInput): void {
  const first = planMirroring(input);
  emit(`${name}-cold`, first);
  const steady = { ...input, inventory: applyDiff(input.inventory, first.diff, input.clusterName) };
  emit(`${name}-steady`, planMirroring(steady));
  if (churn) emit(`${name}-churn`, planMirroring(churn(steady)));
}

function mixed(nodes: number): PlanInput {
  const base = makeBenchInput(nodes);
  const enis = base.inventory.networkInterfaces;
  for (let k = 0; k < 40; k++)
    base.inventory.sessions.push(
      makeForeignSession(enis[(k * 7) % enis.length]!.networkInterfaceId, 1 + k * 3, k),
    );
  const pods = base.pods.map((p, k) => {
    if (k % 97 === 0) return { ...p, deleting: true };
    if (k % 89 === 0) return { ...p, hostNetwork: true };
    if (k % 83 === 0) return { ...p, podIPs: [] };
    if (k % 79 === 0) return { ...p, phase: "Pending" };
    if (k % 73 === 0) return { ...p, podIPs: ["fd00::1"] };
    return p;
  });
  const web: PolicyFilterRule = {
    direction: "both",
    action: "accept",
    protocol: "TCP",
    localPorts: { from: 80, to: 80 },
  };
  const policies = base.policies.map((p, k) => {
    if (k % 11 === 0) return { ...p, spec: { ...p.spec, filter: { rules: [web], mirrorDns: k % 2 === 0 } } };
    if (k % 13 === 0) return { ...p, spec: { ...p.spec, suspend: true } };
    if (k % 17 === 0) return { ...p, spec: { ...p.spec, packetLength: 128 } };
    if (k % 19 === 0) return { ...p, spec: { ...p.spec, targetRef: { name: "collector" } } };
    if (k % 23 === 0)
      return {
        ...p,
        spec: {
          ...p.spec,
          podSelector: {
            matchExpressions: [{ key: "app", operator: "In" as const, values: ["app-1", "app-2"] }],
          },
        },
      };
    return p;
  });
  policies.push(
    makePolicy(
      "nodes",
      { nodeSelector: { matchLabels: { role: "worker" } }, targetRef: { name: "collector" }, priority: 5 },
      "team-3",
    ),
    makePolicy("missing", { podSelector: {}, targetRef: { name: "nope" } }, "team-4"),
    makePolicy("everything", { podSelector: {}, targetRef: { name: "ids-0" }, priority: 999 }, "team-7"),
  );
  const targets = [
    ...base.targets,
    makeTarget("collector", {
      collector: { nodeSelector: { role: "collector" }, selectionMode: "Pod" },
      allowNodeSources: true,
    }),
    makeTarget("picky", {
      networkLoadBalancerArn: "arn:x",
      allowedNamespaces: { from: "List", names: ["team-9"] },
    }),
  ];
  policies.push(makePolicy("picky", { podSelector: {}, targetRef: { name: "picky" } }, "team-8"));
  return { ...base, pods, policies, targets };
}

function churn(i: PlanInput): PlanInput {
  return {
    ...i,
    pods: i.pods.filter((_, k) => k % 10 !== 3),
    policies: i.policies.map((p, k) =>
      k % 9 === 0 ? { ...p, spec: { ...p.spec, priority: (p.spec.priority + 500) % 1000 } } : p,
    ),
  };
}

lifecycle("bench-300", makeBenchInput(300), churn);
lifecycle("mixed-120", mixed(120), churn);
// 20 consecutive selected pods per ENI over two /28 prefixes (the operator's scale run).
lifecycle("crowded-40", makeCrowdedInput(40), churn);

// The property tests' generator (test/fixtures/plan-cases.ts), sampled with a fixed seed.
fc.sample(caseArb, { seed: 20261125, numRuns: 300 }).forEach(({ input }, n) =>
  lifecycle(`random-${n}`, input, churn),
);

// IPv6 and dual-stack clusters: the benchmark's cluster in both, and random worlds of both.
lifecycle("bench-ipv6-300", makeBenchInput(300, "IPv6"), churn);
lifecycle("bench-dual-300", makeBenchInput(300, "DualStack"), churn);
fc.sample(ipv6CaseArb, { seed: 20261201, numRuns: 100 }).forEach(({ input }, n) =>
  lifecycle(`random-ipv6-${n}`, input, churn),
);
