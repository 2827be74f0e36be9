import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { PolicyFilterRule } from "../api/resources.ts";
import { buildFilterRules, canonicalRule } from "./filters.ts";
import { hash53 } from "./hash.ts";
import { normalizeRanges, parseIp } from "./ipv4.ts";

const ports = fc.option(
  fc.integer({ min: 0, max: 65535 }).map((from) => ({ from, to: Math.min(65535, from + 10) })),
  { nil: undefined },
);
const userRule: fc.Arbitrary<PolicyFilterRule> = fc
  .record({
    direction: fc.constantFrom("ingress", "egress", "both"),
    action: fc.constantFrom("accept", "reject"),
    protocol: fc.constantFrom("All", "TCP", "UDP", "ICMP", "ICMPv6"),
    remoteCidr: fc.option(fc.constantFrom("0.0.0.0/0", "192.168.0.0/16", "10.1.2.3/32"), { nil: undefined }),
    remotePorts: ports,
    localPorts: ports,
  })
  .map((r) => {
    const rule: PolicyFilterRule = { direction: r.direction, action: r.action, protocol: r.protocol };
    if (r.remoteCidr) rule.remoteCidr = r.remoteCidr;
    if (r.remotePorts) rule.remotePorts = r.remotePorts;
    if (r.localPorts) rule.localPorts = r.localPorts;
    return rule;
  });

describe("buildFilterRules numbering", () => {
  // The numbers come from a hash of each rule's canonical text, which the builder hashes in pieces
  // (the part shared by one user rule once, then the block): it must be the same hash.
  it("numbers each rule from hash53 of its canonical text, probing past numbers already used", () => {
    const base = parseIp("10.0.0.0")!;
    fc.assert(
      fc.property(
        fc.array(userRule, { maxLength: 4 }),
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
