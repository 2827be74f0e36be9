// Invariants of the planner over random clusters (fast-check).
import fc from "fast-check";
import { isOwnedBy } from "../api/tags.ts";
import { describe, expect, it } from "vitest";
import { caseArb, ipv6CaseArb, type WorldCase } from "../../test/fixtures/plan-cases.ts";
import { applyDiff, isEmptyDiff } from "./diff.ts";
import { MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";
import { contains, parseCidr, parseIp } from "./ipv4.ts";
import { contains6, isIpv6Text, parseCidr6, parseIp6 } from "./ipv6.ts";
import { MAX_SESSIONS_PER_ENI, planMirroring } from "./plan.ts";

/** Whether a CIDR holds an address, of either family (never across families, as AWS matches). */
function holds(cidr: string, ip: string): boolean {
  if (isIpv6Text(cidr) !== isIpv6Text(ip)) return false;
  return isIpv6Text(ip)
    ? contains6(parseCidr6(cidr)!, parseIp6(ip)!)
    : contains(parseCidr(cidr)!, parseIp(ip)!);
}

/**
 * The first rule (lowest number) whose local side holds `ip`, for a packet with any remote end of
 * its family (every remote block of these rules is its family's "any").
 */
function firstLocalMatch(
  rules: readonly DesiredRule[],
  direction: "ingress" | "egress",
  ip: string,
): DesiredRule | undefined {
  return rules
    .filter((r) => r.direction === direction)
    .sort((a, b) => a.ruleNumber - b.ruleNumber)
    .find((r) => holds(direction === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock, ip));
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const RUNS = 150;

const FAMILIES: [string, WorldCase][] = [
  ["IPv4 clusters", caseArb],
  ["IPv6 and dual-stack clusters", ipv6CaseArb],
];

describe.each(FAMILIES)("planner invariants on %s", (_family, caseArb) => {
  it("never plans more than 3 sessions per ENI, counting sessions it does not own, with unique numbers", () => {
    fc.assert(
      fc.property(caseArb, ({ input }) => {
        const plan = planMirroring(input);
        const byEni = new Map<string, number[]>();
        for (const s of [
          ...plan.desired.sessions,
          ...input.inventory.sessions.filter((x) => !x.tags["traffic-mirror.twtech.io/key"]),
        ]) {
          byEni.set(s.networkInterfaceId, [...(byEni.get(s.networkInterfaceId) ?? []), s.sessionNumber]);
        }
        for (const numbers of byEni.values()) {
          expect(numbers.length).toBeLessThanOrEqual(MAX_SESSIONS_PER_ENI);
          expect(new Set(numbers).size).toBe(numbers.length);
          for (const n of numbers) expect(n >= 1 && n <= 32766).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("never plans more sessions than the account's budget leaves, and converges within it", () => {
    fc.assert(
      fc.property(caseArb, fc.integer({ min: 0, max: 12 }), ({ input }, budget) => {
        const within = { ...input, sessionBudget: budget };
        const plan = planMirroring(within);
        const others = input.inventory.sessions.filter((s) => !isOwnedBy(s.tags, input.clusterName)).length;
        expect(plan.desired.sessions.length).toBeLessThanOrEqual(Math.max(0, budget - others));
        const after = { ...within, inventory: applyDiff(input.inventory, plan.diff, input.clusterName) };
        expect(isEmptyDiff(planMirroring(after).diff)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("keeps every filter within 10 rules and never touches sessions it does not own", () => {
    fc.assert(
      fc.property(caseArb, ({ input }) => {
        const plan = planMirroring(input);
        for (const f of plan.desired.filters)
          expect(f.rules.length).toBeLessThanOrEqual(MAX_RULES_PER_FILTER);
        const text = JSON.stringify(plan.diff);
        for (const s of input.inventory.sessions) expect(text).not.toContain(s.trafficMirrorSessionId);
      }),
      { numRuns: RUNS },
    );
  });

  it("accepts no unselected pod address in a pod-precise filter", () => {
    fc.assert(
      fc.property(caseArb, ({ input, rulesOf }) => {
        const plan = planMirroring(input);
        const filters = new Map(plan.desired.filters.map((f) => [f.key, f]));
        for (const s of plan.desired.sessions) {
          if (s.pods.length === 0 || s.owners.some((o) => rulesOf.get(o))) continue;
          const selected = new Set(s.pods.map((p) => p.ip));
          const rules = filters.get(s.filterKey)!.rules;
          const others = input.pods.flatMap((p) => p.podIPs).filter((ip) => !selected.has(ip));
          for (const ip of others) {
            for (const dir of ["ingress", "egress"] as const)
              expect(firstLocalMatch(rules, dir, ip)?.action ?? "none").not.toBe("accept");
          }
          for (const ipText of selected) {
            for (const dir of ["ingress", "egress"] as const)
              expect(firstLocalMatch(rules, dir, ipText)?.action).toBe("accept");
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("plans nothing more once its plan is applied: plan(apply(plan)) is empty", () => {
    fc.assert(
      fc.property(caseArb, ({ input }) => {
        const first = planMirroring(input);
        const after = { ...input, inventory: applyDiff(input.inventory, first.diff, input.clusterName) };
        const second = planMirroring(after);
        expect(isEmptyDiff(second.diff)).toBe(true);
        expect(second.desired).toEqual(first.desired);
      }),
      { numRuns: RUNS },
    );
  });

  it("converges in every selection mode, and an Auto plan stays as it is once applied, tightened or not", () => {
    const mode = fc.constantFrom("Pod" as const, "Eni" as const, "Auto" as const);
    fc.assert(
      fc.property(caseArb, mode, fc.boolean(), ({ input }, selectionMode, tightenAll) => {
        const targets = input.targets.map((t) =>
          t.spec.collector
            ? { ...t, spec: { ...t.spec, collector: { ...t.spec.collector, selectionMode } } }
            : t,
        );
        const enis = new Set(input.inventory.networkInterfaces.map((e) => e.networkInterfaceId));
        const withMode = { ...input, targets, ...(tightenAll ? { tightenEnis: enis } : {}) };
        const first = planMirroring(withMode);
        const inventory = applyDiff(input.inventory, first.diff, input.clusterName);
        // The next plan is not asked to tighten: what was tightened stays, what was not stays loose.
        const second = planMirroring({ ...input, targets, inventory });
        expect(isEmptyDiff(second.diff)).toBe(true);
        expect(second.desired).toEqual(first.desired);
        // Selection at the collector never leaves pods out for filter rules.
        const collectors = new Set(targets.filter((t) => t.spec.collector).map((t) => t.name));
        if (selectionMode !== "Pod")
          for (const p of input.policies.filter((x) => collectors.has(x.spec.targetRef.name)))
            expect(
              first.policies
                .get(`${p.namespace}/${p.name}`)!
                .sources.filter((s) => s.reason === "FilterTooLarge"),
            ).toEqual([]);
      }),
      { numRuns: RUNS },
    );
  });

  it("is deterministic under reordering of every input list", () => {
    fc.assert(
      fc.property(caseArb, fc.integer({ min: 1, max: 1_000_000 }), ({ input }, seed) => {
        const a = planMirroring(input);
        const inv = input.inventory;
        const b = planMirroring({
          ...input,
          policies: shuffled(input.policies, seed),
          targets: shuffled(input.targets, seed + 1),
          pods: shuffled(input.pods, seed + 2),
          nodes: shuffled(input.nodes, seed + 3),
          inventory: {
            instances: shuffled(inv.instances, seed + 4),
            networkInterfaces: shuffled(inv.networkInterfaces, seed + 5),
            targets: shuffled(inv.targets, seed + 6),
            filters: shuffled(inv.filters, seed + 7),
            sessions: shuffled(inv.sessions, seed + 8),
          },
        });
        expect(b.desired).toEqual(a.desired);
        expect(b.diff).toEqual(a.diff);
        expect(b.vniMap).toEqual(a.vniMap);
      }),
      { numRuns: RUNS },
    );
  });

  it("does not move a session when an unrelated pod changes", () => {
    fc.assert(
      fc.property(caseArb, ({ input }) => {
        const first = planMirroring(input);
        const applied = { ...input, inventory: applyDiff(input.inventory, first.diff, input.clusterName) };
        // A pod in another namespace, which no policy can select, comes and goes.
        const stranger = {
          ...input.pods[0]!,
          namespace: "elsewhere",
          name: "stranger",
          labels: { app: "a" },
        };
        const withStranger =
          input.pods.length > 0 ? { ...applied, pods: [...applied.pods, stranger] } : applied;
        expect(isEmptyDiff(planMirroring(withStranger).diff)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});
