// The planner on EKS IPv6 and dual-stack clusters: pods located through the /80 prefixes of their
// nodes' ENIs, filters with IPv6 CIDRs that accept exactly the selected pods, and the same limits,
// priorities and reasons as on an IPv4 cluster.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Reason } from "../api/reasons.ts";
import type { MirrorFilter } from "../api/inventory.ts";
import { mirrorFilterAccepts } from "../../test/ec2-sim/dataplane.ts";
import { worldArb } from "../../test/fixtures/plan-cases.ts";
import {
  makeCollectorTarget,
  makePolicy,
  makeTarget,
  makeWorld,
  planInputOf,
  type World,
  type WorldOptions,
} from "../../test/fixtures/world.ts";
import { applyDiff, isEmptyDiff } from "./diff.ts";
import type { DesiredFilter, Plan } from "./types.ts";
import { planMirroring } from "./plan.ts";

const cluster = "v6";
const web = (priority = 100, name = "web") =>
  makePolicy(name, {
    podSelector: { matchLabels: { app: "web" } },
    targetRef: { name: "collector" },
    priority,
  });

function plan(world: World, policies = [web()], targets = [makeCollectorTarget()]): Plan {
  return planMirroring(planInputOf(world, { cluster, policies, targets }));
}

function asFilter(f: DesiredFilter): MirrorFilter {
  return {
    trafficMirrorFilterId: "tmf-x",
    ingressRules: f.rules.filter((r) => r.direction === "ingress"),
    egressRules: f.rules.filter((r) => r.direction === "egress"),
    networkServices: f.networkServices,
    tags: {},
  };
}

/** Whether a filter mirrors UDP to and from `ip`, as the emulator evaluates it. */
function mirrors(f: DesiredFilter, ip: string): { ingress: boolean; egress: boolean } {
  const remote = ip.includes(":") ? "2600:1f14:abc:de01::99" : "10.0.200.9";
  return {
    ingress: mirrorFilterAccepts(
      asFilter(f),
      { src: remote, dst: ip, protocol: 17, srcPort: 5, dstPort: 6 },
      "ingress",
    ),
    egress: mirrorFilterAccepts(
      asFilter(f),
      { src: ip, dst: remote, protocol: 17, srcPort: 6, dstPort: 5 },
      "egress",
    ),
  };
}

/** Every session's filter accepts exactly its pods' addresses among all the cluster's pod addresses. */
function expectPrecise(world: World, p: Plan): void {
  const filters = new Map(p.desired.filters.map((f) => [f.key, f]));
  for (const s of p.desired.sessions) {
    const mine = new Set(s.pods.map((x) => x.ip));
    const f = filters.get(s.filterKey)!;
    for (const ip of world.pods.flatMap((x) => x.podIPs))
      expect(mirrors(f, ip), `${s.key} ${ip}`).toEqual({ ingress: mine.has(ip), egress: mine.has(ip) });
  }
}

describe("planner on an EKS IPv6 cluster", () => {
  it("mirrors the selected IPv6-only pods with IPv6 rules on the ENI that holds their /80, and no other pod", () => {
    const world = makeWorld({ nodes: 3, podsPerNode: 6, collectors: [0], ipFamily: "IPv6" });
    const p = plan(world);
    const report = p.policies.get("shop/web")!;
    const webPods = world.pods.filter((x) => x.labels["app"] === "web");
    // Node 0 is the collector: its ENI is a target, never a source.
    for (const pod of webPods) {
      const r = report.sources.find((x) => x.name === `shop/${pod.name}`)!;
      if (pod.nodeName === world.nodes[0]!.name) expect(r.reason).toBe(Reason.SourceIsTarget);
      else expect(r.reason, r.message).toBeUndefined();
    }
    expect(p.desired.sessions).toHaveLength(2);
    for (const s of p.desired.sessions) {
      const eni = world.inventory.networkInterfaces.find(
        (e) => e.networkInterfaceId === s.networkInterfaceId,
      )!;
      expect(s.pods.map((x) => x.ip).sort()).toEqual(
        webPods
          .filter((x) => x.nodeName === s.nodeName)
          .map((x) => x.podIPs[0]!)
          .sort(),
      );
      expect(eni.ipv6Prefixes).toHaveLength(1);
      const f = p.desired.filters.find((x) => x.key === s.filterKey)!;
      // Every rule is IPv6 (pods 1, 3, 5 of the /80 are each a /128 between unselected ones).
      expect(
        f.rules.map((r) => `${r.direction} ${r.sourceCidrBlock} ${r.destinationCidrBlock}`).sort(),
      ).toEqual(s.pods.flatMap((x) => [`egress ${x.ip}/128 ::/0`, `ingress ::/0 ${x.ip}/128`]).sort());
    }
    expectPrecise(world, p);
    const applied = {
      ...planInputOf(world, { cluster, policies: [web()], targets: [makeCollectorTarget()] }),
    };
    applied.inventory = applyDiff(world.inventory, p.diff, cluster);
    expect(isEmptyDiff(planMirroring(applied).diff)).toBe(true);
  });

  it("covers consecutive pods with the fewest IPv6 blocks, and says FilterTooLarge for the pods that do not fit, lowest priority first", () => {
    const world = makeWorld({
      nodes: 2,
      podsPerNode: 14,
      collectors: [0],
      ipFamily: "IPv6",
      // Every other pod selected, by two policies: isolated /128s, two rules each.
      podLabels: (_i, j) => ({ app: j % 2 === 0 ? "web" : "db", tier: j < 6 ? "gold" : "bronze" }),
    });
    const gold = makePolicy("gold", {
      podSelector: { matchLabels: { app: "web", tier: "gold" } },
      targetRef: { name: "collector" },
      priority: 500,
    });
    const p = plan(world, [web(100), gold]);
    const onNode1 = (r: { name: string }) => r.name.startsWith("shop/pod-1-");
    const webReport = p.policies.get("shop/web")!.sources.filter(onNode1);
    const goldReport = p.policies.get("shop/gold")!.sources.filter(onNode1);
    // Gold's three pods are mirrored (their session comes first); web shares the ENI's filter
    // budget with gold only if grouped: each policy has its own session here, and web's seven
    // isolated pods need 14 rules, so two are left out.
    expect(goldReport.every((r) => r.reason === undefined)).toBe(true);
    expect(webReport.filter((r) => r.reason === Reason.FilterTooLarge)).toHaveLength(2);
    expect(webReport.filter((r) => r.reason === undefined)).toHaveLength(5);
    expectPrecise(world, p);
  });

  it("gives a whole-node source both families: 0.0.0.0/0 and ::/0 rules", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0], ipFamily: "IPv6" });
    const nodes = makePolicy("nodes", {
      nodeSelector: { matchLabels: { "kubernetes.io/os": "linux" } },
      targetRef: { name: "collector" },
    });
    const p = plan(world, [nodes], [makeCollectorTarget("collector", { allowNodeSources: true })]);
    expect(p.desired.sessions).toHaveLength(1);
    const f = p.desired.filters.find((x) => x.key === p.desired.sessions[0]!.filterKey)!;
    expect(
      f.rules.map((r) => `${r.direction} ${r.sourceCidrBlock} ${r.destinationCidrBlock}`).sort(),
    ).toEqual([
      "egress 0.0.0.0/0 0.0.0.0/0",
      "egress ::/0 ::/0",
      "ingress 0.0.0.0/0 0.0.0.0/0",
      "ingress ::/0 ::/0",
    ]);
  });

  it("uses a policy rule's remote CIDR only in its own family", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0], ipFamily: "IPv6" });
    const rules = [
      {
        direction: "both" as const,
        action: "accept" as const,
        protocol: "TCP" as const,
        remoteCidr: "2001:db8::/32",
      },
      {
        direction: "both" as const,
        action: "accept" as const,
        protocol: "UDP" as const,
        remoteCidr: "10.0.0.0/8",
      },
    ];
    const policy = makePolicy("web", {
      podSelector: { matchLabels: { app: "web" } },
      targetRef: { name: "collector" },
      filter: { rules, mirrorDns: false },
    });
    const p = plan(world, [policy]);
    const f = p.desired.filters.find((x) => x.key === p.desired.sessions[0]!.filterKey)!;
    expect(
      f.rules.map((r) => `${r.direction} ${r.protocol} ${r.sourceCidrBlock} ${r.destinationCidrBlock}`),
    ).toEqual(expect.arrayContaining([`ingress 6 2001:db8::/32 ${p.desired.sessions[0]!.pods[0]!.ip}/128`]));
    expect(f.rules).toHaveLength(2);
  });

  it("decides every pod as on the IPv4 cluster of the same shape: same sessions, same reasons (property)", () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const shape = (ipFamily?: WorldOptions["ipFamily"]) =>
          makeWorld({
            nodes: w.nodes,
            podsPerNode: w.podsPerNode,
            collectors: [0],
            instanceType: (i) => (w.unsupported[i] && i > 0 ? "m6i.large" : "m5.large"),
            podLabels: (i, j) => ({ app: w.labels[(i * 14 + j) % 70]! }),
            ...(ipFamily ? { ipFamily } : {}),
          });
        const policies = w.policies.map((x, i) =>
          makePolicy(`p${i}`, {
            podSelector: { matchLabels: { app: x.app } },
            targetRef: { name: "collector" },
            priority: x.priority,
            suspend: x.suspend,
          }),
        );
        const decide = (world: World) => {
          const p = plan(world, policies);
          return {
            sessions: p.desired.sessions
              .map((s) => `${s.nodeName} ${s.sessionNumber} ${s.owners.join(",")} ${s.pods.length}`)
              .sort(),
            reasons: [...p.policies.values()]
              .flatMap((r) => r.sources.map((s) => `${r.policy} ${s.name} ${s.reason}`))
              .sort(),
          };
        };
        expect(decide(shape("IPv6"))).toEqual(decide(shape()));
      }),
      { numRuns: 150 },
    );
  });
});

describe("planner on a dual-stack cluster", () => {
  it("mirrors both addresses of each selected pod, on the ENI that holds them both", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 4, collectors: [0], ipFamily: "DualStack" });
    const p = plan(world);
    expect(p.desired.sessions).toHaveLength(1);
    const s = p.desired.sessions[0]!;
    const webPods = world.pods.filter((x) => x.labels["app"] === "web" && x.nodeName === s.nodeName);
    expect(s.pods.map((x) => x.ip).sort()).toEqual(webPods.flatMap((x) => x.podIPs).sort());
    expect(p.vniMap.sessions[0]!.selections![0]!.ips.sort()).toEqual(webPods.flatMap((x) => x.podIPs).sort());
    const f = p.desired.filters.find((x) => x.key === s.filterKey)!;
    expect(f.rules.some((r) => r.destinationCidrBlock.includes(":"))).toBe(true);
    expect(f.rules.some((r) => r.destinationCidrBlock.includes("."))).toBe(true);
    expectPrecise(world, p);
  });

  it("mirrors a pod's IPv4 address alone when another ENI holds its IPv6 one", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0], ipFamily: "DualStack" });
    const pod = world.pods.find((x) => x.nodeName === world.nodes[1]!.name && x.labels["app"] === "web")!;
    // Its IPv6 address moved to the other ENI's /80.
    const eth1 = world.inventory.networkInterfaces.find(
      (e) => e.instanceId === world.inventory.instances[1]!.instanceId && e.deviceIndex === 1,
    )!;
    const v6 = `${eth1.ipv6Prefixes![0]!.slice(0, -3)}1`;
    pod.podIPs = [pod.podIPs[0]!, v6];
    const p = plan(world);
    expect(p.desired.sessions[0]!.pods.map((x) => x.ip)).toEqual([pod.podIPs[0]]);
  });
});

describe("targets on an IPv6 cluster", () => {
  it("refuses pods of a namespace the target does not allow, as on IPv4", () => {
    const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0], ipFamily: "IPv6" });
    const target = makeTarget("collector", {
      collector: { nodeSelector: { "traffic-mirror.twtech.io/collector": "true" }, selectionMode: "Pod" },
      allowedNamespaces: { from: "Selector", selector: { matchLabels: { team: "x" } } },
    });
    const p = plan(world, [web()], [target]);
    expect(p.desired.sessions).toHaveLength(0);
    expect(p.policies.get("shop/web")!.blocked?.reason).toBeDefined();
  });
});
