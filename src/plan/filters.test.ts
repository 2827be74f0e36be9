import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MirrorFilter } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { mirrorFilterAccepts } from "../../test/ec2-sim/dataplane.ts";
import type { SyntheticPacket } from "../../test/ec2-sim/packets.ts";
import {
  addressesOf,
  layoutArb,
  packetArb,
  packetsAt,
  requestOf,
  scaleRunLayout,
  overlappingRuleArb,
  userRuleArb,
} from "../../test/fixtures/eni-layouts.ts";
import { buildFilterRules, canonicalRule, MAX_RULES_PER_FILTER } from "./filters.ts";
import { hash53 } from "./hash.ts";
import { contains, formatIp, minimalPrefixTable, normalizeRanges, parseCidr, parseIp } from "./ipv4.ts";

describe("buildFilterRules numbering", () => {
  // The numbers come from a hash of each rule's canonical text, which the builder hashes in pieces
  // (the part shared by one user rule once, then the block): it must be the same hash.
  it("numbers each rule from hash53 of its canonical text, probing past numbers already used", () => {
    const base = parseIp("10.0.0.0")!;
    fc.assert(
      fc.property(
        fc.array(userRuleArb, { maxLength: 4 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 16 }),
        fc.boolean(),
        (userRules, picked, allowRejectForm) => {
          const selected = picked.map((a) => base + a);
          const unselected = normalizeRanges(
            Array.from({ length: 16 }, (_, a) => base + a)
              .filter((a) => !selected.includes(a))
              .map((a) => [a, a] as const),
          );
          const rules = buildFilterRules({ selected, unselected, userRules, allowRejectForm });
          const used = { ingress: new Set<number>(), egress: new Set<number>() };
          for (const r of rules ?? []) {
            const tierBase = Math.floor((r.ruleNumber - 1) / 1000) * 1000 + 1;
            let offset = hash53(canonicalRule({ ...r, ruleNumber: 0 })) % 997;
            while (used[r.direction].has(tierBase + offset)) offset = (offset + 1) % 997;
            used[r.direction].add(tierBase + offset);
            expect(r.ruleNumber).toBe(tierBase + offset);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** Whether the policy's rules mirror a packet, judged from the pod's side (first match; none: no). */
function policyMirrors(
  rules: readonly PolicyFilterRule[],
  p: SyntheticPacket,
  direction: "ingress" | "egress",
): boolean {
  if (rules.length === 0) return true;
  const inbound = direction === "ingress";
  const remote = parseIp(inbound ? p.src : p.dst)!;
  const localPort = (inbound ? p.dstPort : p.srcPort) ?? 0;
  const remotePort = (inbound ? p.srcPort : p.dstPort) ?? 0;
  const numbers: Record<string, number | undefined> = { TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58 };
  const inRange = (r: { from: number; to: number } | undefined, port: number) =>
    r === undefined || (port >= r.from && port <= r.to);
  const first = rules.find(
    (r) =>
      r.direction !== (inbound ? "egress" : "ingress") &&
      (r.protocol === "All" || numbers[r.protocol] === (p.protocol ?? 6)) &&
      (r.remoteCidr === undefined || contains(parseCidr(r.remoteCidr)!, remote)) &&
      inRange(r.localPorts, localPort) &&
      inRange(r.remotePorts, remotePort),
  );
  return first?.action === "accept";
}

describe("buildFilterRules on an ENI's addresses", () => {
  const base = parseIp("10.0.64.0")!;

  it("mirrors exactly the selected addresses under the policy's rules, as the emulator evaluates it, in no more rules than the minimal table (property)", () => {
    fc.assert(
      fc.property(
        layoutArb,
        fc.oneof(fc.array(userRuleArb, { maxLength: 3 }), fc.array(overlappingRuleArb, { maxLength: 3 })),
        fc.boolean(),
        fc.array(packetArb, { minLength: 1, maxLength: 4 }),
        (l, userRules, allowRejectForm, packets) => {
          const { selected, unselected } = requestOf(l, base);
          fc.pre(selected.length > 0);
          const rules = buildFilterRules({ selected, unselected, userRules, allowRejectForm });
          // The cheapest exact encoding: per direction, the minimal table with accept entries that
          // cost one rule per user rule of that direction (tested against an exhaustive search in
          // ipv4.test.ts).
          const policy = userRules.length > 0 ? userRules : [{ direction: "both" }];
          let minimum = 0;
          for (const d of ["ingress", "egress"] as const) {
            const weight = policy.filter(
              (r) => r.direction !== (d === "ingress" ? "egress" : "ingress"),
            ).length;
            if (weight > 0) minimum += minimalPrefixTable(selected, unselected, weight).cost;
          }
          if (rules === undefined) {
            expect(minimum).toBeGreaterThan(MAX_RULES_PER_FILTER);
            return;
          }
          expect(rules.length).toBeLessThanOrEqual(Math.min(minimum, MAX_RULES_PER_FILTER));
          for (const d of ["ingress", "egress"] as const) {
            const numbers = rules.filter((r) => r.direction === d).map((r) => r.ruleNumber);
            expect(new Set(numbers).size).toBe(numbers.length);
            for (const n of numbers) expect(n >= 1 && n <= 32766).toBe(true);
          }
          const filter: MirrorFilter = {
            trafficMirrorFilterId: "tmf-1",
            ingressRules: rules.filter((r) => r.direction === "ingress"),
            egressRules: rules.filter((r) => r.direction === "egress"),
            networkServices: [],
            tags: {},
          };
          for (const a of addressesOf(l.held, base)) {
            const local = formatIp(a);
            for (const x of packets) {
              const { inbound, out } = packetsAt(local, x);
              const isSelected = selected.includes(a);
              expect(mirrorFilterAccepts(filter, inbound, "ingress")).toBe(
                isSelected && policyMirrors(userRules, inbound, "ingress"),
              );
              expect(mirrorFilterAccepts(filter, out, "egress")).toBe(
                isSelected && policyMirrors(userRules, out, "egress"),
              );
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  }, 30_000);

  it("selects the scale baseline's 20 consecutive pods on two /28 prefixes in 8 rules, rejecting the free addresses", () => {
    const { selected, unselected } = scaleRunLayout(base);
    const rules = buildFilterRules({ selected, unselected, userRules: [], allowRejectForm: false })!;
    expect(rules).toHaveLength(8);
    const byNumber = (d: "ingress" | "egress") =>
      rules
        .filter((r) => r.direction === d)
        .sort((a, b) => a.ruleNumber - b.ruleNumber)
        .map((r) => `${r.action} ${d === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock}`);
    // Most specific first: the reject of .0 inside the /28 it is carved from comes before it.
    expect(byNumber("ingress").indexOf("reject 10.0.64.0/32")).toBeLessThan(
      byNumber("ingress").indexOf("accept 10.0.64.0/28"),
    );
    expect(byNumber("egress").sort()).toEqual(byNumber("ingress").sort());
  });
});
