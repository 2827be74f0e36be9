import { describe, expect, it } from "vitest";
import { Reason } from "../api/reasons.ts";
import { ownershipTags } from "../api/tags.ts";
import {
  COLLECTOR_LABEL,
  makeCollectorTarget,
  makeForeignSession,
  makePolicy,
  makeTarget,
  makeWorld,
  planInputOf,
  type World,
} from "../../test/fixtures/world.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import { mirrorFilterAccepts } from "../../test/ec2-sim/dataplane.ts";
import type { MirrorFilter } from "../api/inventory.ts";
import { applyDiff, diffSize, isEmptyDiff } from "./diff.ts";
import { MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";
import { contains, formatIp, parseCidr, parseIp, size } from "./ipv4.ts";
import { MAX_SESSIONS_PER_ACCOUNT, planMirroring, unmirroredSources } from "./plan.ts";
import type { PolicySpec } from "../api/resources.ts";
import type { PlanInput, PolicyInput, TargetInput } from "./types.ts";

const cluster = "test";
/** A policy filter of HTTP to the pods, both directions. */
const http: PolicySpec["filter"] = {
  rules: [{ direction: "both", action: "accept", protocol: "TCP", localPorts: { from: 80, to: 80 } }],
  mirrorDns: false,
};
/** Every address of a CIDR block. */
function addressesIn(cidr: string): string[] {
  const b = parseCidr(cidr)!;
  return Array.from({ length: size(b.len) }, (_, k) => formatIp(b.base + k));
}

const NLB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/0123456789abcdef";

function input(
  world: World,
  policies: PolicyInput[],
  targets: TargetInput[] = [makeCollectorTarget()],
): PlanInput {
  return planInputOf(world, { cluster, policies, targets });
}

/** The first ingress rule (lowest number) whose local side holds `ip`. */
function firstIngressAction(rules: readonly DesiredRule[], ip: string): string | undefined {
  return [...rules]
    .filter((r) => r.direction === "ingress")
    .sort((a, b) => a.ruleNumber - b.ruleNumber)
    .find((r) => contains(parseCidr(r.destinationCidrBlock)!, parseIp(ip)!))?.action;
}

/**
 * Plans a 2-node world whose pods at positions `out` are not selected, checks every filter accepts
 * exactly the pods reported as mirrored on its ENI, and returns how many filters use the reject form.
 */
function checkTwoLeftOut(addressing: "prefix" | "secondary", podsPerNode: number, out: number[]): number {
  const world = makeWorld({
    nodes: 2,
    podsPerNode,
    addressing,
    podLabels: (_i, j) => ({ app: out.includes(j) ? "db" : "web" }),
  });
  const nlb = makeTarget("nlb", { networkLoadBalancerArn: NLB_ARN, allowNodeSources: true });
  const policy = makePolicy("web", {
    podSelector: { matchLabels: { app: "web" } },
    targetRef: { name: "nlb" },
  });
  const plan = planMirroring(input(world, [policy], [nlb]));
  const filters = new Map(plan.desired.filters.map((f) => [f.key, f]));
  const left = world.pods.filter((p) => p.labels.app === "db").map((p) => p.podIPs[0]!);
  const what = `${addressing} ${podsPerNode} pods, ${out.join(",")} left out`;
  let rejectForms = 0;
  for (const s of plan.desired.sessions) {
    const rules = filters.get(s.filterKey)!.rules;
    if (rules.some((r) => r.action === "reject")) rejectForms++;
    for (const p of s.pods) expect(firstIngressAction(rules, p.ip), `${what}: ${p.ip}`).toBe("accept");
    // Only this ENI's addresses are ever the local side of its packets.
    const eni = world.inventory.networkInterfaces.find((e) => e.networkInterfaceId === s.networkInterfaceId)!;
    const holds = (ip: string) =>
      eni.privateIps.includes(ip) || eni.ipv4Prefixes.some((c) => contains(parseCidr(c)!, parseIp(ip)!));
    for (const ip of left.filter(holds))
      expect(firstIngressAction(rules, ip), `${what}: ${ip}`).not.toBe("accept");
  }
  return rejectForms;
}

const web = (extra = {}) =>
  makePolicy("web", {
    podSelector: { matchLabels: { app: "web" } },
    targetRef: { name: "collector" },
    ...extra,
  });

describe("planMirroring: selection and placement", () => {
  it("mirrors each selected pod through a session on the ENI that holds its IP", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    const plan = planMirroring(input(world, [web()]));
    const report = plan.policies.get("shop/web")!;
    // Nodes 1 and 2 are sources (node 0's primary ENI is the collector target, so its pods on that ENI are refused).
    const webPods = world.pods.filter((p) => p.labels.app === "web");
    expect(report.sources).toHaveLength(webPods.length);
    for (const s of report.sources.filter((x) => !x.reason)) {
      const pod = world.pods.find((p) => `${p.namespace}/${p.name}` === s.name)!;
      const session = plan.desired.sessions.find((x) => x.key === s.sessionKey)!;
      const eni = world.inventory.networkInterfaces.find(
        (e) => e.networkInterfaceId === session.networkInterfaceId,
      )!;
      expect(eni.instanceId).toBe(
        world.nodes
          .find((n) => n.name === pod.nodeName)!
          .providerID!.split("/")
          .at(-1),
      );
      expect(session.pods.map((p) => p.ip)).toContain(pod.podIPs[0]);
    }
    const onTarget = report.sources.filter((s) => s.reason === Reason.SourceIsTarget);
    expect(onTarget.map((s) => s.name).sort()).toEqual(["shop/pod-0-0", "shop/pod-0-2"]);
    expect(plan.diff.createTargets).toHaveLength(1);
    expect(plan.diff.createTargets[0]!.networkInterfaceId).toBe(
      world.inventory.networkInterfaces[0]!.networkInterfaceId,
    );
  });

  it("finds pods held as secondary IPs on a secondary ENI, not only in prefixes", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 40, collectors: [0], addressing: "secondary" });
    const plan = planMirroring(
      input(world, [
        makePolicy("p", { podSelector: { matchLabels: { name: "x" } }, targetRef: { name: "collector" } }),
      ]),
    );
    expect(plan.desired.sessions).toHaveLength(0);
    world.pods[75]!.labels = { name: "x" }; // node 1, pod 35: the 36th address, on the secondary ENI
    const plan2 = planMirroring(
      input(world, [
        makePolicy("p", { podSelector: { matchLabels: { name: "x" } }, targetRef: { name: "collector" } }),
      ]),
    );
    expect(plan2.desired.sessions).toHaveLength(1);
    expect(plan2.desired.sessions[0]!.networkInterfaceId).toBe(
      world.inventory.networkInterfaces[3]!.networkInterfaceId,
    );
  });

  it("mirrors whole nodes on every ENI when the target allows node sources", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 2, collectors: [0] });
    const nodePolicy = makePolicy("nodes", {
      nodeSelector: { matchLabels: { "topology.kubernetes.io/zone": "us-east-1b" } },
      targetRef: { name: "collector" },
    });
    const allowed = planMirroring(
      input(world, [nodePolicy], [makeCollectorTarget("collector", { allowNodeSources: true })]),
    );
    expect(allowed.desired.sessions.map((s) => s.networkInterfaceId)).toEqual(
      world.inventory.networkInterfaces
        .filter((e) => e.availabilityZone === "us-east-1b")
        .map((e) => e.networkInterfaceId),
    );
    expect(
      allowed.desired.filters[0]!.rules.map((r) => [r.direction, r.sourceCidrBlock, r.destinationCidrBlock]),
    ).toEqual([
      ["ingress", "0.0.0.0/0", "0.0.0.0/0"],
      ["egress", "0.0.0.0/0", "0.0.0.0/0"],
    ]);
    const refused = planMirroring(input(world, [nodePolicy]));
    expect(refused.policies.get("shop/nodes")!.blocked?.reason).toBe(Reason.NodeSourcesNotAllowed);
    expect(refused.desired.sessions).toHaveLength(0);
  });
});

describe("planMirroring: reasons, not exceptions", () => {
  const reasonsOf = (world: World, policies = [web()], targets?: TargetInput[]) =>
    unmirroredSources(planMirroring(input(world, policies, targets))).map((s) => s.reason);

  it("reports an unsupported instance type per pod", () => {
    const world = makeWorld({
      nodes: 2,
      podsPerNode: 2,
      collectors: [0],
      instanceType: (i) => (i === 1 ? "m6i.large" : "m5.large"),
    });
    const plan = planMirroring(input(world, [web()]));
    const src = plan.policies.get("shop/web")!.sources.find((s) => s.name === "shop/pod-1-0")!;
    expect(src.reason).toBe(Reason.UnsupportedInstanceType);
    expect(src.message).toContain("m6i.large");
  });

  it("reports branch ENIs, missing providerIDs, unknown instances, pods without IPs or not running", () => {
    const world = makeWorld({ nodes: 6, podsPerNode: 2, collectors: [0] });
    world.inventory.networkInterfaces[2]!.interfaceType = "branch"; // node 1 eth0
    world.nodes[2]!.providerID = undefined;
    world.inventory.instances = world.inventory.instances.filter(
      (i) => i.instanceId !== world.nodes[3]!.providerID!.split("/").at(-1),
    );
    world.pods.find((p) => p.name === "pod-4-0")!.podIPs = [];
    world.pods.find((p) => p.name === "pod-5-0")!.phase = "Pending";
    expect(reasonsOf(world).sort()).toEqual(
      [
        Reason.SourceIsTarget,
        Reason.UnsupportedEniType,
        Reason.MissingProviderId,
        Reason.InstanceNotFound,
        Reason.PodHasNoIp,
        Reason.PodNotRunning,
      ].sort(),
    );
  });

  it("does not select pods that have finished or are being deleted", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    const [a, b, c] = world.pods.filter((p) => p.labels["app"] === "web" && !p.nodeName?.endsWith("-0"));
    a!.phase = "Succeeded";
    b!.phase = "Failed";
    c!.deleting = true;
    const plan = planMirroring(input(world, [web()]));
    const names = plan.policies.get("shop/web")!.sources.map((s) => s.name);
    for (const gone of [a, b, c]) expect(names).not.toContain(`shop/${gone!.name}`);
    expect(names.length).toBeGreaterThan(0);
  });

  it("refuses host-network pods unless the target allows node sources", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 1, collectors: [0] });
    const pod = world.pods[1]!;
    pod.hostNetwork = true;
    pod.podIPs = [world.nodes[1]!.internalIP!];
    expect(reasonsOf(world, [web()])).toContain(Reason.HostNetworkPod);
    const allowed = planMirroring(
      input(world, [web()], [makeCollectorTarget("collector", { allowNodeSources: true })]),
    );
    expect(
      allowed.desired.sessions.some((s) => s.pods.some((p) => p.ip === world.nodes[1]!.internalIP)),
    ).toBe(true);
  });

  it("blocks a policy whose namespace the target does not allow, or whose target is missing, or that is suspended", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0] });
    const t = makeCollectorTarget("collector", { allowedNamespaces: { from: "List", names: ["payments"] } });
    const blocked = (p: PolicyInput, targets = [t]) =>
      planMirroring(input(world, [p], targets)).policies.get(`${p.namespace}/${p.name}`)!.blocked?.reason;
    expect(blocked(web())).toBe(Reason.NamespaceNotAllowed);
    expect(blocked(web(), [makeCollectorTarget("collector", { allowedNamespaces: undefined })])).toBe(
      Reason.NamespaceNotAllowed,
    );
    expect(blocked(web({ targetRef: { name: "nope" } }))).toBe(Reason.TargetNotFound);
    expect(blocked(web({ suspend: true }), [makeCollectorTarget()])).toBe(Reason.Suspended);
    const bySelector = makeCollectorTarget("collector", {
      allowedNamespaces: { from: "Selector", selector: { matchLabels: { team: "a" } } },
    });
    const plan = planMirroring({
      ...input(world, [web()], [bySelector]),
      namespaces: [{ name: "shop", labels: { team: "a" } }],
    });
    expect(plan.policies.get("shop/web")!.blocked).toBeUndefined();
  });
});

describe("planMirroring: limits and arbitration", () => {
  /** Four policies on one pod, each to a different target: four sessions wanted on one ENI. */
  function fourPolicies() {
    const world = makeWorld({ nodes: 2, podsPerNode: 1, collectors: [0], podLabels: () => ({ app: "api" }) });
    const targets = [1, 2, 3, 4].map((i) =>
      makeTarget(`nlb-${i}`, {
        networkLoadBalancerArn: `arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n${i}/0123456789abcdef`,
      }),
    );
    const policies = [10, 20, 30, 40].map((prio, i) =>
      makePolicy(`p${i + 1}`, {
        podSelector: { matchLabels: { app: "api" } },
        targetRef: { name: `nlb-${i + 1}` },
        priority: prio,
      }),
    );
    return { world, targets, policies };
  }

  it("gives an ENI's three slots to the highest priorities and reports the fourth as EniFull", () => {
    const { world, targets, policies } = fourPolicies();
    const plan = planMirroring(input(world, policies, targets));
    const eni = world.inventory.networkInterfaces[2]!.networkInterfaceId; // node 1 eth0 holds pod-1-0
    expect(
      plan.desired.sessions.filter((s) => s.networkInterfaceId === eni).map((s) => s.owners[0]),
    ).toHaveLength(3);
    const lowest = plan.policies.get("shop/p1")!;
    expect(lowest.sources.filter((s) => s.reason === Reason.EniFull).map((s) => s.name)).toContain(
      "shop/pod-1-0",
    );
    // Higher priority gets the lower session number, so AWS evaluates it first.
    const num = (owner: string) =>
      plan.desired.sessions.find((s) => s.owners.includes(owner) && s.networkInterfaceId === eni)!
        .sessionNumber;
    expect(num("shop/p4")).toBeLessThan(num("shop/p3"));
    expect(num("shop/p3")).toBeLessThan(num("shop/p2"));
  });

  it("counts sessions it does not own and never touches them", () => {
    const { world, targets, policies } = fourPolicies();
    const eni = world.inventory.networkInterfaces[2]!.networkInterfaceId;
    const foreign = makeForeignSession(eni, (1000 - 20) * 32 + 1); // holds the number p2 would like
    world.inventory.sessions.push(foreign);
    const plan = planMirroring(input(world, policies, targets));
    expect(plan.desired.sessions.filter((s) => s.networkInterfaceId === eni)).toHaveLength(2);
    const numbers = plan.desired.sessions
      .filter((s) => s.networkInterfaceId === eni)
      .map((s) => s.sessionNumber);
    expect(numbers).not.toContain(foreign.sessionNumber);
    expect(JSON.stringify(plan.diff)).not.toContain(foreign.trafficMirrorSessionId);
  });

  it("reports shadowing: an earlier session to another target takes the overlapping packets", () => {
    const { world, targets, policies } = fourPolicies();
    const plan = planMirroring(input(world, policies.slice(2), targets));
    // Both nodes' primary ENIs hold an "api" pod, each with sessions for p3 and p4.
    const enis = [0, 2].map((i) => world.inventory.networkInterfaces[i]!.networkInterfaceId);
    expect(plan.policies.get("shop/p3")!.shadowedBy).toEqual(
      enis.map((networkInterfaceId) => ({ networkInterfaceId, policies: ["shop/p4"] })),
    );
    expect(plan.policies.get("shop/p4")!.shadowedBy).toEqual([]);
  });

  it("shares one session between policies with the same target and filter", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 4, collectors: [0] });
    const a = makePolicy("a", {
      podSelector: { matchLabels: { app: "web" } },
      targetRef: { name: "collector" },
    });
    const b = makePolicy("b", {
      podSelector: { matchLabels: { app: "db" } },
      targetRef: { name: "collector" },
    });
    const plan = planMirroring(input(world, [a, b]));
    const shared = plan.desired.sessions.filter((s) => s.owners.length === 2);
    expect(shared.length).toBeGreaterThan(0);
    expect(shared[0]!.owners).toEqual(["shop/a", "shop/b"]);
  });

  it("drops the lowest-priority pods when one filter's 10 rules cannot select them all", () => {
    const world = makeWorld({
      nodes: 2,
      podsPerNode: 30,
      collectors: [0],
      addressing: "secondary",
      podLabels: (_i, j) => ({ app: j % 3 === 0 ? "web" : "other" }),
    });
    const plan = planMirroring(input(world, [web()]));
    for (const f of plan.desired.filters) expect(f.rules.length).toBeLessThanOrEqual(MAX_RULES_PER_FILTER);
    const tooLarge = plan.policies.get("shop/web")!.sources.filter((s) => s.reason === Reason.FilterTooLarge);
    expect(tooLarge.length).toBeGreaterThan(0);
    expect(plan.desired.sessions.length).toBeGreaterThan(0);
  });

  it("accepts every pod it reports as mirrored and no other, whichever filter form it picks", () => {
    // Pod names are not in address order (pod-1-10 sorts before pod-1-2); two pods left out, at every
    // pair of positions. On a full ENI of secondary IPs the reject form is the shorter one.
    let rejectForms = 0;
    for (const [addressing, podsPerNode] of [
      ["prefix", 14],
      ["secondary", 14],
      ["secondary", 30],
    ] as const)
      for (let a = 0; a < podsPerNode; a++)
        for (let b = a + 1; b < podsPerNode; b++)
          rejectForms += checkTwoLeftOut(addressing, podsPerNode, [a, b]);
    expect(rejectForms).toBeGreaterThan(0);
  });

  it("spreads sources over collector targets, same zone first, at most 10 each", () => {
    const world = makeWorld({ nodes: 30, podsPerNode: 2, collectors: [0, 3] });
    const plan = planMirroring(input(world, [web()]));
    const perTarget = new Map<string, number>();
    for (const s of plan.desired.sessions) {
      const key = "key" in s.target ? s.target.key : s.target.id;
      perTarget.set(key, (perTarget.get(key) ?? 0) + 1);
    }
    expect([...perTarget.values()].every((n) => n <= 10)).toBe(true);
    expect(
      plan.policies.get("shop/web")!.sources.filter((s) => s.reason === Reason.TargetFull).length,
    ).toBeGreaterThan(0);
    // Collectors 0 and 3 are both in us-east-1a: every mirrored source there uses one of them.
    const report = plan.targets.get("collector")!;
    expect(report.awsTargets.map((t) => t.sessions)).toEqual([10, 10]);
  });
});

/** 14 nodes (0 a collector), one pod each on its own ENI: app=low on nodes 0–6, app=high on 7–13. */
const lowAndHigh = (): World =>
  makeWorld({
    nodes: 14,
    podsPerNode: 1,
    collectors: [0],
    podLabels: (i) => ({ app: i < 7 ? "low" : "high" }),
  });

/** A policy selecting `app=<name>`. */
const appPolicy = (name: string, priority: number, target: string): PolicyInput =>
  makePolicy(name, { podSelector: { matchLabels: { app: name } }, targetRef: { name: target }, priority });

describe("planMirroring: crowded ENIs (the operator's scale run)", () => {
  // 20 pods on .1–.20 of each node's first ENI, every one selected (web and db policies). With two
  // /28 prefixes the ENI also holds .0 and .21–.31 (free, where a new pod may land): an accept
  // list needs 6 blocks (12 rules), the ordered table 4 entries (8 rules).
  it.each([
    { addressing: "prefix" as const, target: "nlb", rules: 8 },
    { addressing: "secondary" as const, target: "nlb", rules: 6 },
    { addressing: "prefix" as const, target: "collector", rules: 8 },
  ])("mirrors all 20 pods of an ENI in one filter: $addressing, $target", ({ addressing, target, rules }) => {
    const world = makeWorld({ nodes: 3, podsPerNode: 20, collectors: [0], addressing });
    const nlb = makeTarget("nlb", { networkLoadBalancerArn: NLB_ARN });
    const policies = ["web", "db"].map((app) =>
      makePolicy(app, { podSelector: { matchLabels: { app } }, targetRef: { name: target } }),
    );
    const plan = planMirroring(input(world, policies, [nlb, makeCollectorTarget()]));
    const refused = unmirroredSources(plan).filter((s) => s.reason !== Reason.SourceIsTarget);
    expect(refused).toEqual([]);
    const filters = new Map(plan.desired.filters.map((f) => [f.key, f]));
    for (const node of [1, 2]) {
      const eni = world.inventory.networkInterfaces[2 * node]!;
      const session = plan.desired.sessions.find((s) => s.networkInterfaceId === eni.networkInterfaceId)!;
      expect(session.pods).toHaveLength(20);
      const f = filters.get(session.filterKey)!;
      expect(f.rules).toHaveLength(rules);
      const filter: MirrorFilter = {
        trafficMirrorFilterId: "tmf-1",
        ingressRules: f.rules.filter((r) => r.direction === "ingress"),
        egressRules: f.rules.filter((r) => r.direction === "egress"),
        networkServices: [],
        tags: {},
      };
      const podIps = new Set(session.pods.map((p) => p.ip));
      const held = [eni.primaryIp, ...eni.privateIps, ...eni.ipv4Prefixes.flatMap(addressesIn)];
      for (const ip of new Set(held)) {
        const mirrored = podIps.has(ip);
        expect(mirrorFilterAccepts(filter, { src: "10.9.0.1", dst: ip }, "ingress"), ip).toBe(mirrored);
        expect(mirrorFilterAccepts(filter, { src: ip, dst: "10.9.0.1" }, "egress"), ip).toBe(mirrored);
      }
    }
  });
});

describe("planMirroring: collector targets by priority", () => {
  // One collector (an m5.large ENI target takes 10 sources) and 13 sources on 13 ENIs: the six
  // low-priority pods sit on the lower ENI ids, the seven high-priority ones on the higher.
  const lowOnLowerEnis = lowAndHigh;
  const policy = (name: string, priority: number) => appPolicy(name, priority, "collector");
  const full = (plan: ReturnType<typeof planMirroring>, name: string) =>
    plan.policies.get(`shop/${name}`)!.sources.filter((s) => s.reason === Reason.TargetFull).length;

  it("leaves the lower-priority policy TargetFull when a collector fills, whatever the ENI ids", () => {
    const plan = planMirroring(input(lowOnLowerEnis(), [policy("low", 10), policy("high", 900)]));
    expect(full(plan, "high")).toBe(0);
    expect(full(plan, "low")).toBe(3);
    expect(plan.desired.sessions).toHaveLength(10);
  });

  it("moves a target to a higher-priority policy that arrives, and back when it goes", () => {
    const world = lowOnLowerEnis();
    const low = policy("low", 10);
    const first = planMirroring(input(world, [low]));
    expect(full(first, "low")).toBe(0);
    world.inventory = applyDiff(world.inventory, first.diff, cluster);
    const both = planMirroring(input(world, [low, policy("high", 900)]));
    expect(full(both, "high")).toBe(0);
    expect(both.diff.deleteSessions).toHaveLength(3); // three of low's sessions give way
    world.inventory = applyDiff(world.inventory, both.diff, cluster);
    const after = planMirroring(input(world, [low]));
    expect(full(after, "low")).toBe(0);
    expect(after.diff.createSessions).toHaveLength(3);
  });
});

describe("planMirroring: the account's session quota", () => {
  // 14 nodes with one pod each on its own ENI (an NLB target: every node is a source), so 14
  // sessions are wanted; the budget stands in for AWS's 10,000.
  const world = lowAndHigh;
  const nlb = makeTarget("nlb", { networkLoadBalancerArn: NLB_ARN });
  const policy = (name: string, priority: number) => appPolicy(name, priority, "nlb");
  const quotaFull = (plan: ReturnType<typeof planMirroring>, name: string) =>
    plan.policies.get(`shop/${name}`)!.sources.filter((s) => s.reason === Reason.QuotaFull);

  it("makes no more sessions than the quota allows, and the lower priority waits", () => {
    const w = world();
    const plan = planMirroring({
      ...input(w, [policy("low", 10), policy("high", 900)], [nlb]),
      sessionBudget: 9,
    });
    expect(plan.desired.sessions).toHaveLength(9);
    expect(plan.diff.createSessions).toHaveLength(9);
    expect(quotaFull(plan, "high")).toHaveLength(0);
    expect(quotaFull(plan, "low")).toHaveLength(14 - 9);
    expect(quotaFull(plan, "low")[0]!.message).toContain(
      "AWS allows 9 mirror sessions per account and Region",
    );
  });

  it("counts sessions others made, and keeps existing sessions before new ones of equal priority", () => {
    const w = world();
    const first = planMirroring({ ...input(w, [policy("low", 10)], [nlb]), sessionBudget: 6 });
    w.inventory = applyDiff(w.inventory, first.diff, cluster);
    const kept = new Set(w.inventory.sessions.map((s) => s.networkInterfaceId));
    // Two sessions someone made by hand elsewhere use up two more of the account's quota.
    const spare = w.inventory.networkInterfaces.filter((e) => !kept.has(e.networkInterfaceId));
    w.inventory.sessions.push(
      makeForeignSession(spare[0]!.networkInterfaceId, 1),
      makeForeignSession(spare[1]!.networkInterfaceId, 2),
    );
    const next = planMirroring({ ...input(w, [policy("low", 10)], [nlb]), sessionBudget: 6 });
    expect(next.desired.sessions).toHaveLength(4);
    expect(next.diff.createSessions).toHaveLength(0);
    expect(next.diff.deleteSessions).toHaveLength(2);
    expect(next.desired.sessions.every((s) => kept.has(s.networkInterfaceId))).toBe(true);
  });

  it("orders a priority outside 0–1000 (a policy stored under an older CRD) rather than lose it", () => {
    const plan = planMirroring({
      ...input(world(), [policy("low", 10), policy("high", 5000)], [nlb]),
      sessionBudget: 9,
    });
    expect(plan.desired.sessions).toHaveLength(9);
    expect(quotaFull(plan, "high")).toHaveLength(0);
    expect(quotaFull(plan, "low")).toHaveLength(5);
  });

  it("is AWS's 10,000 when no budget is given", () => {
    expect(MAX_SESSIONS_PER_ACCOUNT).toBe(10_000);
    const plan = planMirroring(input(world(), [policy("low", 10), policy("high", 900)], [nlb]));
    expect(plan.desired.sessions).toHaveLength(14);
  });
});

describe("planMirroring: diff against what exists", () => {
  it("makes nothing twice: after applying a plan, the next plan is empty", () => {
    const world = makeWorld({ nodes: 4, podsPerNode: 6, collectors: [0] });
    const first = planMirroring(input(world, [web()]));
    expect(first.diff.createSessions.length).toBeGreaterThan(0);
    world.inventory = applyDiff(world.inventory, first.diff, cluster);
    const second = planMirroring(input(world, [web()]));
    expect(isEmptyDiff(second.diff)).toBe(true);
    expect(second.vniMap.sessions.every((e) => e.sessionId?.startsWith("tms-"))).toBe(true);
  });

  it("removes everything it made when the policy goes, and nothing else", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    world.inventory = applyDiff(world.inventory, planMirroring(input(world, [web()])).diff, cluster);
    world.inventory.sessions.push(
      makeForeignSession(world.inventory.networkInterfaces[2]!.networkInterfaceId, 7),
    );
    const other = structuredClone(world.inventory.sessions[0]!);
    other.trafficMirrorSessionId = "tms-othercluster000001";
    other.tags = ownershipTags("another-cluster", "k");
    world.inventory.sessions.push(other);
    const gone = planMirroring(input(world, []));
    expect(gone.diff.deleteSessions).toHaveLength(world.inventory.sessions.length - 2);
    expect(gone.diff.deleteFilters.length).toBe(world.inventory.filters.length);
    // The TrafficMirrorTarget resource still exists, so its AWS target stays ready for use…
    expect(gone.diff.deleteTargets.length).toBe(0);
    // …and goes with the resource.
    expect(planMirroring(input(world, [], [])).diff.deleteTargets.length).toBe(1);
    const deleted = new Set(gone.diff.deleteSessions.map((d) => d.sessionId));
    expect(deleted.has("tms-othercluster000001")).toBe(false);
    expect([...deleted].some((id) => id.includes("foreign"))).toBe(false);
  });

  it("modifies a session in place when only its packet length changes, keeping its VNI", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0] });
    const first = planMirroring(input(world, [web()]));
    world.inventory = applyDiff(world.inventory, first.diff, cluster);
    const next = planMirroring(input(world, [web({ packetLength: 128 })]));
    // The group key includes packetLength, so this is a new session replacing the old one.
    expect(next.diff.createSessions).toHaveLength(first.diff.createSessions.length);
    expect(next.diff.deleteSessions).toHaveLength(first.diff.createSessions.length);
    world.inventory = applyDiff(world.inventory, next.diff, cluster);
    const vnis = new Set(world.inventory.sessions.map((s) => s.virtualNetworkId));
    expect(vnis.size).toBe(world.inventory.sessions.length);
  });

  it("repairs a filter whose rules someone changed", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0] });
    world.inventory = applyDiff(world.inventory, planMirroring(input(world, [web()])).diff, cluster);
    world.inventory.filters[0]!.ingressRules[0]!.action = "reject";
    const plan = planMirroring(input(world, [web()]));
    expect(plan.diff.editFilters).toHaveLength(1);
    // The changed rule is set right in place, and nothing else is touched.
    expect(plan.diff.editFilters[0]!.rules).toEqual([
      expect.objectContaining({
        op: "modify",
        ruleId: world.inventory.filters[0]!.ingressRules[0]!.trafficMirrorFilterRuleId,
      }),
    ]);
    expect(plan.diff.createSessions).toHaveLength(0);
  });

  it("replaces a session whose key tag names another ENI rather than take it for that ENI's", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    world.inventory = applyDiff(world.inventory, planMirroring(input(world, [web()])).diff, cluster);
    const [a, b] = world.inventory.sessions;
    expect(a!.networkInterfaceId).not.toBe(b!.networkInterfaceId);
    // Someone copies a's tags onto b: b now claims to be a's session.
    const stray = b!;
    stray.tags = { ...a!.tags };
    world.inventory.sessions = [stray];
    const plan = planMirroring(input(world, [web()]));
    // Both ENIs get their sessions made again; the stray one, on neither's terms, is removed.
    expect(plan.diff.createSessions.map((s) => s.networkInterfaceId).sort()).toEqual(
      [a!.networkInterfaceId, b!.networkInterfaceId].sort(),
    );
    expect(plan.diff.deleteSessions.map((d) => d.sessionId)).toEqual([stray.trafficMirrorSessionId]);
    expect(plan.diff.modifySessions).toHaveLength(0);
  });

  it("deletes an owned session or filter that repeats another's key, so none is left behind", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    world.inventory = applyDiff(world.inventory, planMirroring(input(world, [web()])).diff, cluster);
    const session = world.inventory.sessions[0]!;
    const filter = world.inventory.filters[0]!;
    // Copies carrying the same key tags (say, a create that was made twice); the later one counts.
    world.inventory.sessions.push({
      ...structuredClone(session),
      trafficMirrorSessionId: "tms-copy0000000000001",
    });
    world.inventory.filters.push({
      ...structuredClone(filter),
      trafficMirrorFilterId: "tmf-copy0000000000001",
    });
    const plan = planMirroring(input(world, [web()]));
    expect(plan.diff.deleteSessions.map((d) => d.sessionId)).toEqual([session.trafficMirrorSessionId]);
    expect(plan.diff.deleteFilters.map((d) => d.filterId)).toEqual([filter.trafficMirrorFilterId]);
    // Sessions that stay and used the earlier filter move to the copy before it goes.
    const users = world.inventory.sessions.filter(
      (s) => s !== session && s.trafficMirrorFilterId === filter.trafficMirrorFilterId,
    );
    expect(users.length).toBeGreaterThan(0);
    expect(plan.diff.modifySessions.map((m) => m.filterKey)).toHaveLength(users.length);
    expect(plan.diff.createSessions).toHaveLength(0);
    world.inventory = applyDiff(world.inventory, plan.diff, cluster);
    expect(isEmptyDiff(planMirroring(input(world, [web()])).diff)).toBe(true);
  });

  it("keeps COLLECTOR_LABEL in step with the chart's default", () => {
    expect(COLLECTOR_LABEL).toEqual({ "traffic-mirror.twtech.io/collector": "true" });
  });
});

describe("planMirroring: tenants sharing an ENI", () => {
  // Node 1's primary ENI holds pods of two namespaces; node 0 runs the collector.
  const world = makeWorld({
    nodes: 2,
    podsPerNode: 4,
    collectors: [0],
    namespace: (_i, j) => (j % 2 === 0 ? "team-a" : "team-b"),
    podLabels: () => ({ app: "web" }),
  });
  const eni = world.inventory.networkInterfaces[2]!.networkInterfaceId;
  const ipsOf = (ns: string) =>
    world.pods
      .filter((p) => p.namespace === ns && p.nodeName === world.nodes[1]!.name)
      .map((p) => p.podIPs[0]!);
  const web = { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "collector" } };
  const nlb = makeTarget("nlb", { networkLoadBalancerArn: NLB_ARN });

  it("shares a session between tenants and tells the collector each one's own pods", () => {
    const a = makePolicy("http", { ...web, filter: http }, "team-a");
    const b = makePolicy("http", { ...web, filter: http }, "team-b");
    const plan = planMirroring(input(world, [a, b]));
    const entries = plan.vniMap.sessions.filter((e) => e.networkInterfaceId === eni);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.policies).toEqual(["team-a/http", "team-b/http"]);
    expect(entries[0]!.selections).toEqual([
      { policy: "team-a/http", ips: ipsOf("team-a") },
      { policy: "team-b/http", ips: ipsOf("team-b") },
    ]);
    expect(plan.vniMap.policies).toEqual({
      "team-a/http": { target: "collector", ...http },
      "team-b/http": { target: "collector", ...http },
    });
    for (const p of ["team-a/http", "team-b/http"]) expect(plan.policies.get(p)!.shadowedBy).toEqual([]);
  });

  it("does not call a policy shadowed by a session to the same collector target", () => {
    // Two sessions on one pod to one collector: AWS sends the overlap through the first, and the
    // collector gives it to both.
    const all = makePolicy("all", { ...web, priority: 500 }, "team-a");
    const onlyHttp = makePolicy("http", { ...web, filter: http }, "team-a");
    const plan = planMirroring(input(world, [all, onlyHttp]));
    expect(plan.desired.sessions.filter((s) => s.networkInterfaceId === eni)).toHaveLength(2);
    expect(plan.policies.get("team-a/http")!.shadowedBy).toEqual([]);
    expect(plan.policies.get("team-a/all")!.shadowedBy).toEqual([]);
  });

  it("judges shadowing per policy: a tenant sharing a session with a shadowed one is not shadowed", () => {
    const ids = makePolicy("ids", { ...web, targetRef: { name: "nlb" }, priority: 900 }, "team-a");
    const a = makePolicy("http", { ...web, filter: http }, "team-a");
    const b = makePolicy("http", { ...web, filter: http }, "team-b");
    const plan = planMirroring(input(world, [ids, a, b], [makeCollectorTarget(), nlb]));
    const shared = plan.desired.sessions.find((s) => s.networkInterfaceId === eni && s.owners.length === 2)!;
    expect(shared.owners).toEqual(["team-a/http", "team-b/http"]);
    expect(plan.policies.get("team-a/http")!.shadowedBy).toEqual([
      { networkInterfaceId: eni, policies: ["team-a/ids"] },
    ]);
    expect(plan.policies.get("team-b/http")!.shadowedBy).toEqual([]);
  });

  it("gives the collector the ENI's addresses for a whole-node selection", () => {
    const nodes = makePolicy("nodes", { nodeSelector: {}, targetRef: { name: "collector" } }, "ops");
    const plan = planMirroring(
      input(world, [nodes], [makeCollectorTarget("collector", { allowNodeSources: true })]),
    );
    const e = plan.vniMap.sessions.find((x) => x.networkInterfaceId === eni)!;
    const held = world.inventory.networkInterfaces[2]!;
    expect(e.selections).toEqual([{ policy: "ops/nodes", ips: [], whole: true }]);
    expect(e.localAddresses).toEqual([...held.privateIps, ...held.ipv4Prefixes]);
  });
});

describe("planMirroring: selection at the collector (selectionMode Eni)", () => {
  const eniMode = () =>
    makeCollectorTarget("collector", { collector: { nodeSelector: COLLECTOR_LABEL, selectionMode: "Eni" } });
  const podMode = () => makeCollectorTarget();
  const webHttp = () =>
    makePolicy("web", {
      podSelector: { matchLabels: { app: "web" } },
      targetRef: { name: "collector" },
      filter: http,
    });

  it("gives AWS one filter of the policy's rules only, shared by its sessions, and the collector the pods", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    const plan = planMirroring(input(world, [webHttp()], [eniMode()]));
    expect(plan.desired.sessions).toHaveLength(2);
    expect(plan.desired.filters).toHaveLength(1);
    expect(new Set(plan.desired.sessions.map((s) => s.filterKey))).toEqual(
      new Set([plan.desired.filters[0]!.key]),
    );
    // Ports only: every rule's local side is any address.
    for (const r of plan.desired.filters[0]!.rules) {
      expect(r.direction === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock).toBe("0.0.0.0/0");
      expect(r.protocol).toBe(6);
    }
    for (const e of plan.vniMap.sessions) {
      expect(e.selectionAtCollector).toBe(true);
      const web = world.pods
        .filter((p) => p.labels.app === "web" && e.nodeName === p.nodeName)
        .map((p) => p.podIPs[0]!);
      expect(e.selections).toEqual([{ policy: "shop/web", ips: web }]);
    }
  });

  it("covers a new pod with no AWS call where its ENI already has the session", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    const first = planMirroring(input(world, [webHttp()], [eniMode()]));
    world.inventory = applyDiff(world.inventory, first.diff, cluster);
    // A fifth pod on node 1, inside the ENI's prefix (its four pods are at base+1 … base+4).
    const base = parseCidr(eksNodeSpec(1).podCidr)!.base;
    world.pods.push({
      ...world.pods[4]!,
      name: "pod-new",
      uid: "pod-new",
      labels: { app: "web" },
      podIPs: [formatIp(base + 20)],
    });
    const second = planMirroring(input(world, [webHttp()], [eniMode()]));
    expect(isEmptyDiff(second.diff)).toBe(true);
    const ip = world.pods.at(-1)!.podIPs[0]!;
    expect(second.vniMap.sessions.some((e) => e.selections?.some((s) => s.ips.includes(ip)))).toBe(true);
    expect(
      second.policies.get("shop/web")!.sources.find((s) => s.name === "shop/pod-new")?.sessionKey,
    ).toBeDefined();
    // The same arrival in Pod mode edits the pod filter.
    const podWorld = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
    podWorld.inventory = applyDiff(
      podWorld.inventory,
      planMirroring(input(podWorld, [webHttp()], [podMode()])).diff,
      cluster,
    );
    podWorld.pods.push(world.pods.at(-1)!);
    expect(isEmptyDiff(planMirroring(input(podWorld, [webHttp()], [podMode()])).diff)).toBe(false);
  });

  it("mirrors every pod of a crowded ENI, where pod-precise filters run out of rules", () => {
    const world = makeWorld({
      nodes: 2,
      podsPerNode: 30,
      collectors: [0],
      podLabels: (i, j) => ({ app: i === 0 || j % 3 === 0 ? "db" : "web" }),
    });
    const pod = planMirroring(input(world, [webHttp()], [podMode()]));
    expect(unmirroredSources(pod).some((s) => s.reason === Reason.FilterTooLarge)).toBe(true);
    const eni = planMirroring(input(world, [webHttp()], [eniMode()]));
    expect(unmirroredSources(eni)).toEqual([]);
  });

  it("moves a session to the shared filter in place when the admin switches Pod to Eni", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 4, collectors: [0] });
    world.inventory = applyDiff(
      world.inventory,
      planMirroring(input(world, [webHttp()], [podMode()])).diff,
      cluster,
    );
    const switched = planMirroring(input(world, [webHttp()], [eniMode()]));
    expect(switched.diff.createSessions).toEqual([]);
    expect(switched.diff.deleteSessions).toEqual([]);
    expect(switched.diff.modifySessions.map((m) => m.filterKey)).toEqual([switched.desired.filters[0]!.key]);
    expect(switched.diff.createFilters).toHaveLength(1);
    expect(switched.diff.deleteFilters).toHaveLength(1);
  });

  it("refuses selectionMode Eni when the collectors run in kernel mode", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0] });
    const plan = planMirroring({ ...input(world, [webHttp()], [eniMode()]), collectorKernelMode: true });
    expect(plan.desired.sessions).toEqual([]);
    expect(plan.policies.get("shop/web")!.blocked).toMatchObject({
      reason: Reason.TargetNotReady,
      message: expect.stringContaining("kernel mode") as unknown,
    });
    expect(
      planMirroring({ ...input(world, [webHttp()], [podMode()]), collectorKernelMode: true }).desired
        .sessions,
    ).toHaveLength(1);
  });
});

describe("planMirroring: selectionMode Auto", () => {
  const auto = () =>
    makeCollectorTarget("collector", { collector: { nodeSelector: COLLECTOR_LABEL, selectionMode: "Auto" } });
  const web = () =>
    makePolicy("web", { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "collector" } });
  const world = () => makeWorld({ nodes: 2, podsPerNode: 4, collectors: [0] });
  const eniOf = (w: World) => w.inventory.networkInterfaces[2]!.networkInterfaceId;
  const filterOf = (plan: ReturnType<typeof planMirroring>, eni: string) => {
    const s = plan.desired.sessions.find((x) => x.networkInterfaceId === eni)!;
    return plan.desired.filters.find((f) => f.key === s.filterKey)!;
  };
  const selectsPods = (rules: readonly DesiredRule[]) =>
    rules.some(
      (r) => (r.direction === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock) !== "0.0.0.0/0",
    );

  it("starts ENI-wide, and tightens to pod-precise only where the controller asks", () => {
    const w = world();
    const eni = eniOf(w);
    const loose = planMirroring(input(w, [web()], [auto()]));
    expect(selectsPods(filterOf(loose, eni).rules)).toBe(false);
    expect(loose.auto?.get(eni)).toMatchObject({ loose: true });
    expect(loose.vniMap.sessions.find((e) => e.networkInterfaceId === eni)?.selectionAtCollector).toBe(true);
    const tight = planMirroring({ ...input(w, [web()], [auto()]), tightenEnis: new Set([eni]) });
    expect(selectsPods(filterOf(tight, eni).rules)).toBe(true);
    expect(tight.auto?.get(eni)).toMatchObject({ loose: false });
    expect(
      tight.vniMap.sessions.find((e) => e.networkInterfaceId === eni)?.selectionAtCollector,
    ).toBeUndefined();
  });

  it("stays pod-precise while the pods do not change, and loosens in place when one arrives", () => {
    const w = world();
    const eni = eniOf(w);
    w.inventory = applyDiff(w.inventory, planMirroring(input(w, [web()], [auto()])).diff, cluster);
    const tighten = planMirroring({ ...input(w, [web()], [auto()]), tightenEnis: new Set([eni]) });
    expect(tighten.diff.modifySessions).toHaveLength(1);
    w.inventory = applyDiff(w.inventory, tighten.diff, cluster);
    // Without being asked again: nothing to do, still precise.
    const steady = planMirroring(input(w, [web()], [auto()]));
    expect(isEmptyDiff(steady.diff)).toBe(true);
    expect(steady.auto?.get(eni)).toMatchObject({ loose: false });
    // A pod arrives: the session goes back to the shared filter; no rule is made for the pod.
    const base = parseCidr(eksNodeSpec(1).podCidr)!.base;
    w.pods.push({
      ...w.pods[4]!,
      name: "pod-new",
      uid: "pod-new",
      labels: { app: "web" },
      podIPs: [formatIp(base + 20)],
    });
    const arrival = planMirroring(input(w, [web()], [auto()]));
    expect(arrival.auto?.get(eni)).toMatchObject({ loose: true });
    expect(arrival.diff.modifySessions.map((m) => m.filterKey)).toEqual([filterOf(arrival, eni).key]);
    expect(arrival.diff.editFilters).toEqual([]);
    expect(arrival.diff.createFilters).toEqual([]); // the shared filter is still there from the start
    expect(arrival.diff.deleteFilters).toEqual([]); // and the pod filter stays for the next tightening
    expect(diffSize(arrival.diff)).toBe(1);
    expect(
      arrival.policies.get("shop/web")!.sources.find((s) => s.name === "shop/pod-new")?.sessionKey,
    ).toBeDefined();
  });

  it("never leaves pods out for filter rules: where pod-precise does not fit, it stays ENI-wide", () => {
    const w = makeWorld({
      nodes: 2,
      podsPerNode: 30,
      collectors: [0],
      podLabels: (i, j) => ({ app: i === 0 || j % 3 === 0 ? "db" : "web" }),
    });
    const eni = eniOf(w);
    const plan = planMirroring({ ...input(w, [web()], [auto()]), tightenEnis: new Set([eni]) });
    expect(unmirroredSources(plan)).toEqual([]);
    expect(plan.auto?.get(eni)).toMatchObject({ loose: true });
  });
});
