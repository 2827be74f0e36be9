// The incremental planner against the full one (the oracle): random clusters, random sequences of
// events, and after every event the incremental plan must deep-equal `planMirroring`'s (fast-check).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TAG_KEY } from "../api/tags.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { caseArb, ipv6CaseArb, type WorldCase } from "../../test/fixtures/plan-cases.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import {
  appliedKeepingIdentity as applied,
  makeForeignSession,
  makePolicy,
  makeTarget,
  makeWorld,
  planInputOf,
  podAddresses,
  type WorldOptions,
} from "../../test/fixtures/world.ts";
import { IncrementalPlanner } from "./incremental.ts";
import { indexInventory } from "./inventory-index.ts";
import { formatIp, parseCidr } from "./ipv4.ts";
import { planMirroring } from "./plan.ts";
import type { Plan, PlanInput } from "./types.ts";

/** An event, with random numbers that pick what it applies to. */
const eventArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("podAdd" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("podRemove" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("podRelabel" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("podMove" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("podPhase" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("apply" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("policy" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("target" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("nodeGone" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("foreign" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("quota" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("tighten" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("drift" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("noop" as const), a: fc.nat(), b: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("nodeStatus" as const), a: fc.nat(), b: fc.nat() }) },
);
type Event = typeof eventArb extends fc.Arbitrary<infer E> ? E : never;

let podSeq = 0;

/** The IP family of a world made by `makeWorld`, read from its ENIs. */
function familyOf(input: PlanInput): NonNullable<WorldOptions["ipFamily"]> {
  const enis = input.inventory.networkInterfaces;
  if (!enis.some((e) => e.ipv6Prefixes?.length)) return "IPv4";
  // An IPv6 cluster's ENI holds the node's IPv4 address alone: no IPv4 prefix, no secondary IP.
  return enis.some((e) => e.ipv4Prefixes.length > 0 || e.privateIps.length > 1) ? "DualStack" : "IPv6";
}

/** A pod's addresses on node `nodeIndex`: address `k` of its ranges, or (`lost`) one no ENI holds. */
function newPodIps(input: PlanInput, nodeIndex: number, k: number, lost: boolean): string[] {
  const family = familyOf(input);
  const v4 = formatIp(parseCidr(eksNodeSpec(nodeIndex).podCidr)!.base + 1 + (lost ? 70 : k));
  if (family === "IPv4") return [v4];
  // Outside every ENI's /80 (another /64 of the VPC).
  if (lost) return family === "IPv6" ? ["2600:1f14:abc:deff::1"] : [v4, "2600:1f14:abc:deff::1"];
  return podAddresses(nodeIndex, k, family);
}

function newPod(input: PlanInput, a: number, b: number): LeanPod {
  const nodeIndex = a % Math.max(1, input.nodes.length + 1);
  const spec = eksNodeSpec(nodeIndex);
  const n = ++podSeq;
  return {
    namespace: b % 11 === 0 ? "elsewhere" : "shop",
    name: `new-${n}`,
    uid: `new-${n}`,
    labels: { app: ["a", "b", "c"][b % 3]! },
    nodeName: spec.name,
    // Mostly a free-looking address on the node; now and then one no ENI holds.
    podIPs: newPodIps(input, nodeIndex, (b >> 2) % 63, b % 17 === 0),
    hostNetwork: b % 23 === 0,
    phase: "Running",
    deleting: false,
  };
}

/** The input after one event, and the planner's plan of the input before it. */
function step(input: PlanInput, e: Event, plan: Plan): PlanInput {
  if (e.kind.startsWith("pod")) return podStep(input, e);
  if (e.kind === "apply" || e.kind === "foreign" || e.kind === "drift") return ec2Step(input, e, plan);
  return clusterStep(input, e);
}

function podStep(input: PlanInput, e: Event): PlanInput {
  const pods = input.pods;
  const at = pods.length > 0 ? e.a % pods.length : -1;
  switch (e.kind) {
    case "podAdd": {
      const list = [...pods];
      list.splice(e.b % 5 === 0 ? e.a % (pods.length + 1) : pods.length, 0, newPod(input, e.a, e.b));
      return { ...input, pods: list };
    }
    case "podRemove":
      return at < 0 ? input : { ...input, pods: pods.filter((_, i) => i !== at) };
    case "podRelabel":
      if (at < 0) return input;
      return {
        ...input,
        pods: pods.map((p, i) => (i === at ? { ...p, labels: { app: ["a", "b", "c"][e.b % 3]! } } : p)),
      };
    case "podMove": {
      if (at < 0) return input;
      const moved = { ...newPod(input, e.b, e.a), name: pods[at]!.name, labels: pods[at]!.labels };
      return { ...input, pods: [...pods.filter((_, i) => i !== at), moved] };
    }
    case "podPhase": {
      if (at < 0) return input;
      const change = [{ phase: "Pending" }, { phase: "Succeeded" }, { deleting: true }, { podIPs: [] }][
        e.b % 4
      ]!;
      return { ...input, pods: pods.map((p, i) => (i === at ? { ...p, ...change } : p)) };
    }
    default:
      return input;
  }
}

function ec2Step(input: PlanInput, e: Event, plan: Plan): PlanInput {
  switch (e.kind) {
    case "apply":
      return { ...input, inventory: applied(input.inventory, plan, input.clusterName) };
    case "foreign": {
      const enis = input.inventory.networkInterfaces;
      const eni = enis[e.a % enis.length]!.networkInterfaceId;
      const taken = input.inventory.sessions.filter((s) => s.networkInterfaceId === eni);
      if (taken.length >= 3) return input;
      const session = makeForeignSession(eni, 30_000 + (e.b % 700), 100 + (e.b % 1000));
      return {
        ...input,
        inventory: { ...input.inventory, sessions: [...input.inventory.sessions, session] },
      };
    }
    case "drift":
      return driftStep(input, e);
    default:
      return input;
  }
}

function clusterStep(input: PlanInput, e: Event): PlanInput {
  switch (e.kind) {
    case "policy": {
      const k = e.a % input.policies.length;
      const policies = input.policies.map((p, i) =>
        i === k
          ? {
              ...p,
              spec: {
                ...p.spec,
                priority: e.b % 1001,
                suspend: e.b % 7 === 0 ? !p.spec.suspend : p.spec.suspend,
              },
            }
          : p,
      );
      return { ...input, policies };
    }
    case "target": {
      const k = e.a % input.targets.length;
      const targets = input.targets.map((t, i) =>
        i === k ? { ...t, spec: { ...t.spec, allowNodeSources: !t.spec.allowNodeSources } } : t,
      );
      return { ...input, targets };
    }
    case "nodeStatus": {
      // A node's status was written: a new object; now and then its labels changed too.
      const k = e.a % input.nodes.length;
      const nodes = input.nodes.map((n, i) =>
        i === k ? { ...n, ...(e.b % 5 === 0 ? { labels: { ...n.labels, extra: "yes" } } : {}) } : n,
      );
      return { ...input, nodes };
    }
    case "nodeGone":
      return input.nodes.length === 0
        ? input
        : { ...input, nodes: input.nodes.filter((_, i) => i !== e.a % input.nodes.length) };
    case "quota":
      return { ...input, sessionBudget: e.b % 4 === 0 ? undefined : e.b % 9 };
    case "tighten": {
      const enis = input.inventory.networkInterfaces.filter((_, i) => (e.b >> i) % 2 === 1);
      return { ...input, tightenEnis: new Set(enis.map((x) => x.networkInterfaceId)) };
    }
    default:
      return { ...input };
  }
}

/** Someone deletes one of the operator's sessions, changes its VNI, or edits one of its filters by hand. */
function driftStep(input: PlanInput, e: Event): PlanInput {
  const inv = input.inventory;
  const owned = inv.sessions.filter((s) => s.tags[TAG_KEY]);
  if (e.b % 3 === 0 && owned.length > 0) {
    const gone = owned[e.a % owned.length]!;
    return { ...input, inventory: { ...inv, sessions: inv.sessions.filter((s) => s !== gone) } };
  }
  if (e.b % 2 === 1 && owned.length > 1) {
    // Or gives one session another's VNI: the VNIs of sessions on other ENIs may move.
    const s = owned[e.a % owned.length]!;
    const vni = owned[(e.a + 1) % owned.length]!.virtualNetworkId;
    const changed = { ...s, virtualNetworkId: vni };
    return {
      ...input,
      inventory: { ...inv, sessions: inv.sessions.map((x) => (x === s ? changed : x)) },
    };
  }
  const filters = inv.filters.filter((f) => f.tags[TAG_KEY] && f.ingressRules.length > 0);
  if (filters.length === 0) return input;
  const f = filters[e.a % filters.length]!;
  const edited = { ...f, ingressRules: f.ingressRules.slice(1) };
  return { ...input, inventory: { ...inv, filters: inv.filters.map((x) => (x === f ? edited : x)) } };
}

const FAMILIES: [string, WorldCase, number][] = [
  ["IPv4 clusters", caseArb, 300],
  ["IPv6 and dual-stack clusters", ipv6CaseArb, 150],
];

describe.each(FAMILIES)("incremental planner on %s", (_family, caseArb, runs) => {
  it("plans exactly what a full plan does, after every event of a random sequence", () => {
    const counts = { incremental: 0, full: 0 };
    fc.assert(
      fc.property(caseArb, fc.array(eventArb, { minLength: 1, maxLength: 30 }), ({ input }, events) => {
        const planner = new IncrementalPlanner();
        let current = input;
        let plan = planner.plan(current);
        expect(plan).toEqual(planMirroring(current));
        for (const e of events) {
          current = step(current, e, plan);
          plan = planner.plan(current);
          counts[planner.last.kind]++;
          // Falling back is allowed for the reasons the planner names, never for its own error.
          expect(planner.last.reason ?? "").not.toMatch(/failed/);
          expect(plan, `after ${e.kind} (${planner.last.kind} ${planner.last.reason ?? ""})`).toEqual(
            planMirroring(current),
          );
          // The index it keeps for applying the plan is the inventory's.
          const fresh = indexInventory(current.inventory, current.clusterName);
          expect(planner.index!.ownedSessions).toEqual(fresh.ownedSessions);
          expect(planner.index!.ownedFilters).toEqual(fresh.ownedFilters);
        }
      }),
      { numRuns: runs },
    );
    // The sequences must exercise the incremental path, not only its fall-backs.
    expect(counts.incremental).toBeGreaterThan(counts.full);
  }, 300_000);

  it("replans a pod coming, going and relabelled on an ENI with room without a full plan", () => {
    fc.assert(
      fc.property(caseArb, fc.nat(), ({ input }, b) => {
        const planner = new IncrementalPlanner();
        const first = planner.plan(input);
        const steady = { ...input, inventory: applied(input.inventory, first, input.clusterName) };
        planner.plan(steady);
        const added = { ...steady, pods: [...steady.pods, newPod(steady, b, b >> 3)] };
        expect(planner.plan(added)).toEqual(planMirroring(added));
        const relabelled = {
          ...added,
          pods: added.pods.map((p, i) => (i === 0 ? { ...p, labels: { app: "b" } } : p)),
        };
        expect(planner.plan(relabelled)).toEqual(planMirroring(relabelled));
        const gone = { ...relabelled, pods: relabelled.pods.slice(1) };
        expect(planner.plan(gone)).toEqual(planMirroring(gone));
        // Without the quota or a target that fills up, nothing here is global.
        if (!planner.last.reason) expect(planner.last.kind).toBe("incremental");
      }),
      { numRuns: runs / 3 },
    );
  }, 120_000);
});

describe("incremental planner", () => {
  it("gives a session back its VNI when the session that took it goes", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 4 });
    const nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/0123456789abcdef";
    let input = planInputOf(world, {
      cluster: "vni",
      policies: [
        makePolicy("web", { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "nlb" } }),
      ],
      targets: [makeTarget("nlb", { networkLoadBalancerArn: nlb })],
    });
    const planner = new IncrementalPlanner();
    input = { ...input, inventory: applied(input.inventory, planner.plan(input), "vni") };
    planner.plan(input);
    // The first session (in key order) is given the second's VNI: the first keeps it, the second
    // gets another (a full plan: two sessions claim one VNI).
    const owned = [...input.inventory.sessions].sort((a, b) =>
      a.tags[TAG_KEY]! < b.tags[TAG_KEY]! ? -1 : 1,
    );
    expect(owned.length).toBeGreaterThan(1);
    const [first, second] = [owned[0]!, owned[1]!];
    const clash = { ...first, virtualNetworkId: second.virtualNetworkId };
    const sessions = input.inventory.sessions.map((x) => (x === first ? clash : x));
    input = { ...input, inventory: { ...input.inventory, sessions } };
    expect(planner.plan(input)).toEqual(planMirroring(input));
    // The first session's pods go: its VNI is free, and the second session has it back.
    const gone = new Set(planMirroring(input).desired.sessions[0]!.pods.map((p) => p.name));
    input = { ...input, pods: input.pods.filter((p) => !gone.has(`${p.namespace}/${p.name}`)) };
    const plan = planner.plan(input);
    expect(plan).toEqual(planMirroring(input));
    expect(plan.desired.sessions.find((x) => x.key === second.tags[TAG_KEY])?.virtualNetworkId).toBe(
      second.virtualNetworkId,
    );
  });
});
