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
import { buildFilterRules, canonicalRule, MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";
import { hash53 } from "./hash.ts";
import { planRuleEdits } from "./rule-edits.ts";
import {
  contains,
  formatBlock,
  formatIp,
  minimalPrefixTable,
  normalizeRanges,
  parseCidr,
  parseIp,
} from "./ipv4.ts";

/**
 * The numbers a rule's slot spans: a tier of 997 from 1001 on (`tier × 1000 + 1`), or, at 1000 and
 * below, the slot of an entry nested d ≥ 1 deep: depth d spans ⌊1000 / 2^d⌋ + 1 … ⌊1000 / 2^(d−1)⌋,
 * cut into ten places of equal width.
 */
function slotOf(n: number): { base: number; width: number } {
  if (n > 1000) return { base: Math.floor((n - 1) / 1000) * 1000 + 1, width: 997 };
  let d = 1;
  while (n <= Math.floor(1000 / 2 ** d)) d++;
  const lo = Math.floor(1000 / 2 ** d) + 1;
  const width = Math.floor((Math.floor(1000 / 2 ** (d - 1)) - lo + 1) / 10);
  return { base: lo + Math.floor((n - lo) / width) * width, width };
}

describe("buildFilterRules numbering", () => {
  // A departure inside an accepted block turns the filter into a table with a reject inside the
  // block: the block's rules keep their numbers, so the edit is the reject's rules alone.
  it("keeps an outer entry's numbers when an entry is nested in it", () => {
    const base = parseIp("10.0.0.16")!;
    const all = Array.from({ length: 16 }, (_, a) => base + a);
    const build = (selected: number[]) =>
      buildFilterRules({
        selected,
        // The ENI also holds the /28 below, with no selected pod on it.
        unselected: normalizeRanges([
          [base - 16, base - 1],
          ...all.filter((a) => !selected.includes(a)).map((a) => [a, a] as const),
        ]),
        userRules: [],
        allowRejectForm: false,
      })!;
    const whole = build(all);
    const local = (r: DesiredRule): string =>
      r.direction === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock;
    expect(whole.map(local)).toEqual(["10.0.0.16/28", "10.0.0.16/28"]);
    for (const gone of [3, 9, 15]) {
      const holed = build(all.filter((_, a) => a !== gone));
      const hole = `${formatIp(base + gone)}/32`;
      expect(holed.filter((r) => r.sourceCidrBlock !== hole && r.destinationCidrBlock !== hole)).toEqual(
        whole,
      );
      // The reject comes first in each direction.
      for (const d of ["ingress", "egress"] as const) {
        const [first, second] = holed
          .filter((r) => r.direction === d)
          .sort((a, b) => a.ruleNumber - b.ruleNumber);
        expect([first!.action, second!.action]).toEqual(["reject", "accept"]);
      }
    }
  });

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
            const { base, width } = slotOf(r.ruleNumber);
            let offset = hash53(canonicalRule({ ...r, ruleNumber: 0 })) % width;
            while (used[r.direction].has(base + offset)) offset = (offset + 1) % width;
            used[r.direction].add(base + offset);
            expect(r.ruleNumber).toBe(base + offset);
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

  // The scale run's layout: the accept list took the largest block around the selected pods
  // (10.0.64.0/27 over free addresses); one of them leaves, and the table that rejects its address
  // keeps that block rather than moving the accept to the smallest block around the pods.
  it("keeps the current filter's block for a table entry that decides the same held addresses", () => {
    const held = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, k) => base + a + k);
    const ranges = (xs: number[]) => normalizeRanges(xs.map((a) => [a, a] as const));
    const heldAll = held(24, 40);
    const request = (selected: number[], current?: Set<string>) =>
      buildFilterRules({
        selected,
        unselected: ranges(heldAll.filter((a) => !selected.includes(a))),
        userRules: [],
        allowRejectForm: false,
        ...(current ? { current: () => current } : {}),
      })!;
    const locals = (rules: DesiredRule[]) =>
      rules.filter((r) => r.direction === "ingress").map((r) => `${r.action} ${r.destinationCidrBlock}`);
    const before = request(held(24, 32));
    expect(locals(before).sort()).toEqual(["accept 10.0.64.0/27", "accept 10.0.64.32/32"]);
    const gone = held(24, 32).filter((a) => a !== base + 27);
    // Without the current rules, the smallest block around the pods it decides.
    expect(locals(request(gone)).sort()).toEqual([
      "accept 10.0.64.24/29",
      "accept 10.0.64.32/32",
      "reject 10.0.64.27/32",
    ]);
    const after = request(gone, new Set(["10.0.64.0/27", "10.0.64.32/32"]));
    expect(locals(after).sort()).toEqual([
      "accept 10.0.64.0/27",
      "accept 10.0.64.32/32",
      "reject 10.0.64.27/32",
    ]);
    // The edit is the reject's two rules: nothing else changes, numbers included.
    expect(
      planRuleEdits(
        before.map((r, i) => ({ ...r, trafficMirrorFilterRuleId: `r${i}` })),
        after,
      ),
    ).toHaveLength(2);
  });

  it("mirrors exactly the selected addresses under the policy's rules, as the emulator evaluates it, in no more rules than the minimal table (property)", () => {
    fc.assert(
      fc.property(
        layoutArb,
        fc.oneof(fc.array(userRuleArb, { maxLength: 3 }), fc.array(overlappingRuleArb, { maxLength: 3 })),
        fc.boolean(),
        fc.tuple(
          fc.array(packetArb, { minLength: 1, maxLength: 4 }),
          // Blocks of the filter's current rules, which a table's entries may be widened to.
          fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 22, max: 32 })), {
            maxLength: 4,
          }),
        ),
        (l, userRules, allowRejectForm, [packets, hints]) => {
          const { selected, unselected } = requestOf(l, base);
          fc.pre(selected.length > 0);
          const current = new Set(
            hints.map(([at, len]) => formatBlock({ base: base + at - ((base + at) % 2 ** (32 - len)), len })),
          );
          const rules = buildFilterRules({
            selected,
            unselected,
            userRules,
            allowRejectForm,
            current: () => current,
          });
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
