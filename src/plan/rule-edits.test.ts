import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { FilterRule, TrafficDirection } from "../api/inventory.ts";
import { buildFilterRules, canonicalRule, MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";
import { parseIp } from "./ipv4.ts";
import { applyRuleEdits, planRuleEdits, type RuleEdit } from "./rule-edits.ts";

function makeRule(direction: TrafficDirection, ruleNumber: number, local: string, more = {}): DesiredRule {
  return {
    direction,
    ruleNumber,
    action: "accept",
    sourceCidrBlock: direction === "ingress" ? "0.0.0.0/0" : local,
    destinationCidrBlock: direction === "ingress" ? local : "0.0.0.0/0",
    ...more,
  };
}

/** Rules as EC2 holds them: each with an id. */
function withIds(rules: readonly DesiredRule[]): FilterRule[] {
  return rules.map((r, i) => ({ ...r, trafficMirrorFilterRuleId: `tmfr-${i}` }));
}

function newIds(): () => string {
  let n = 0;
  return () => `tmfr-new-${++n}`;
}

const texts = (rules: readonly DesiredRule[]): string[] => rules.map(canonicalRule).sort();

function ops(edits: readonly RuleEdit[]): string[] {
  return edits.map((e) => e.op);
}

describe("planRuleEdits", () => {
  const a = makeRule("ingress", 1100, "10.0.0.5/32");
  const aOut = makeRule("egress", 1100, "10.0.0.5/32");
  const b = makeRule("ingress", 1200, "10.0.0.9/32");
  const bOut = makeRule("egress", 1200, "10.0.0.9/32");

  const cases: {
    name: string;
    current: DesiredRule[];
    desired: DesiredRule[];
    ops: string[];
  }[] = [
    { name: "nothing to do", current: [a, aOut], desired: [a, aOut], ops: [] },
    {
      name: "a pod arrives: its two rules are created",
      current: [a, aOut],
      desired: [a, aOut, b, bOut],
      ops: ["create", "create"],
    },
    {
      name: "a pod leaves: its two rules are deleted",
      current: [a, aOut, b, bOut],
      desired: [a, aOut],
      ops: ["delete", "delete"],
    },
    {
      name: "one pod replaces another: two rules modified",
      current: [a, aOut],
      desired: [b, bOut],
      ops: ["modify", "modify"],
    },
    {
      name: "same slot, other content (someone changed the action): modified in place",
      current: [{ ...a, action: "reject" }, aOut],
      desired: [a, aOut],
      ops: ["modify"],
    },
    {
      name: "a block widens (/32 to /31): modified, not deleted and re-created",
      current: [a, aOut],
      desired: [makeRule("ingress", 1377, "10.0.0.4/31"), makeRule("egress", 1377, "10.0.0.4/31")],
      ops: ["modify", "modify"],
    },
    {
      name: "two rules swap numbers: no temporary number needed",
      current: [a, b],
      desired: [
        { ...b, ruleNumber: 1100 },
        { ...a, ruleNumber: 1200 },
      ],
      ops: ["modify", "modify"],
    },
    {
      name: "a direction changes: modified across directions",
      current: [a],
      desired: [{ ...aOut, ruleNumber: 1500 }],
      ops: ["modify"],
    },
    { name: "empty to rules", current: [], desired: [a, aOut], ops: ["create", "create"] },
    { name: "rules to empty", current: [a, aOut], desired: [], ops: ["delete", "delete"] },
    {
      name: "more wrong than missing: one modified, the rest deleted (deletes first)",
      current: [a, aOut, b, bOut],
      desired: [{ ...a, ruleNumber: 1300 }],
      ops: ["delete", "delete", "delete", "modify"],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const current = withIds(c.current);
      const edits = planRuleEdits(current, c.desired);
      expect(ops(edits)).toEqual(c.ops);
      expect(texts(applyRuleEdits(current, edits, newIds()))).toEqual(texts(c.desired));
    });
  }

  it("clears the ports and protocol a modified rule no longer has", () => {
    const current = withIds([
      makeRule("ingress", 1100, "10.0.0.5/32", {
        protocol: 6,
        sourcePortRange: { fromPort: 1, toPort: 2 },
        destinationPortRange: { fromPort: 80, toPort: 80 },
      }),
    ]);
    const edits = planRuleEdits(current, [a]);
    expect(edits).toEqual([
      {
        op: "modify",
        ruleId: "tmfr-0",
        rule: a,
        removeFields: ["protocol", "source-port-range", "destination-port-range"],
      },
    ]);
    expect(texts(applyRuleEdits(current, edits, newIds()))).toEqual(texts([a]));
  });

  it("the simulator refuses what EC2 refuses (so the property below can fail)", () => {
    const current = withIds([a, b]);
    expect(() =>
      applyRuleEdits(current, [{ op: "create", rule: { ...b, action: "reject" } }], newIds()),
    ).toThrow("TrafficMirrorFilterRuleAlreadyExists");
    expect(() =>
      applyRuleEdits(
        current,
        [{ op: "modify", ruleId: "tmfr-0", rule: { ...b }, removeFields: [] }],
        newIds(),
      ),
    ).toThrow("TrafficMirrorFilterRuleAlreadyExists");
    expect(() =>
      applyRuleEdits(
        current,
        [{ op: "delete", ruleId: "tmfr-9", direction: "ingress", ruleNumber: 1 }],
        newIds(),
      ),
    ).toThrow("InvalidTrafficMirrorFilterRuleId.NotFound");
    const full = withIds(
      Array.from({ length: MAX_RULES_PER_FILTER }, (_, i) => ({ ...a, ruleNumber: i + 1 })),
    );
    expect(() => applyRuleEdits(full, [{ op: "create", rule: b }], newIds())).toThrow(
      "TrafficMirrorFilterRuleLimitExceeded",
    );
  });
});

// Random filters: up to ten rules, numbers from a small range so that slots collide often, a few
// contents so that rules often match or differ by one field.
const ruleArb: fc.Arbitrary<DesiredRule> = fc
  .record({
    direction: fc.constantFrom<TrafficDirection>("ingress", "egress"),
    ruleNumber: fc.integer({ min: 1, max: 8 }),
    action: fc.constantFrom<"accept" | "reject">("accept", "reject"),
    local: fc.constantFrom("10.0.0.5/32", "10.0.0.4/31", "10.0.0.9/32"),
    protocol: fc.option(fc.constantFrom(6, 17), { nil: undefined }),
    port: fc.option(fc.constantFrom(80, 443), { nil: undefined }),
  })
  .map((r) => {
    const more: Partial<DesiredRule> = {};
    if (r.protocol !== undefined) {
      more.protocol = r.protocol;
      if (r.port !== undefined) more.destinationPortRange = { fromPort: r.port, toPort: r.port };
    }
    return makeRule(r.direction, r.ruleNumber, r.local, { action: r.action, ...more });
  });

/** A valid filter: numbers unique per direction, at most ten rules. */
const filterArb = fc
  .uniqueArray(ruleArb, {
    selector: (r) => `${r.direction} ${r.ruleNumber}`,
    maxLength: MAX_RULES_PER_FILTER,
  })
  .map((rs) => rs);

/** Calls per direction-blind count: rules that are not already right on either side. */
function unmatched(
  current: readonly DesiredRule[],
  desired: readonly DesiredRule[],
): { wrong: number; missing: number } {
  const c = new Set(current.map(canonicalRule));
  const d = new Set(desired.map(canonicalRule));
  return {
    wrong: current.filter((r) => !d.has(canonicalRule(r))).length,
    missing: desired.filter((r) => !c.has(canonicalRule(r))).length,
  };
}

describe("planRuleEdits, property", () => {
  it("reaches exactly the desired rules, every step valid for EC2, in the fewest calls", () => {
    fc.assert(
      fc.property(filterArb, filterArb, (currentRules, desired) => {
        const current = withIds(currentRules);
        const edits = planRuleEdits(current, desired);
        // Step by step: each call alone must be one EC2 accepts.
        let state: FilterRule[] = current;
        const ids = newIds();
        for (const e of edits) state = applyRuleEdits(state, [e], ids);
        expect(texts(state)).toEqual(texts(desired));
        const { wrong, missing } = unmatched(currentRules, desired);
        // Each call fixes at most one wrong and one missing rule: this is the least possible…
        expect(edits.length).toBe(Math.max(wrong, missing));
        // …and never more than deleting what is wrong and creating what is missing (the old way),
        // let alone deleting all and creating all.
        expect(edits.length).toBeLessThanOrEqual(wrong + missing);
        expect(edits.length).toBeLessThanOrEqual(currentRules.length + desired.length);
      }),
      { numRuns: 500 },
    );
  });

  it("a pod arriving on or leaving a pod-precise ENI costs two calls (creates or deletes)", () => {
    // The planner's own rules: an ENI holding .10–.19, some of them selected pods.
    const eni = Array.from({ length: 10 }, (_, i) => parseIp(`10.0.0.${10 + i}`)!);
    const rulesFor = (selected: number[]): DesiredRule[] | undefined => {
      const unselected = eni.filter((x) => !selected.includes(x)).map((x) => [x, x] as const);
      return buildFilterRules({ selected, unselected, userRules: [], allowRejectForm: false });
    };
    let common = 0;
    fc.assert(
      fc.property(
        fc.subarray(eni, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(...eni),
        (selected, pod) => {
          if (selected.includes(pod)) return;
          const before = rulesFor(selected);
          const after = rulesFor([...selected, pod]);
          if (!before || !after) return;
          const arrive = planRuleEdits(withIds(before), after);
          const leave = planRuleEdits(withIds(after), before);
          expect(texts(applyRuleEdits(withIds(before), arrive, newIds()))).toEqual(texts(after));
          expect(texts(applyRuleEdits(withIds(after), leave, newIds()))).toEqual(texts(before));
          if (after.length === before.length + 2) {
            // The pod's address joins no block: its rule pair is new, the others keep their numbers.
            common++;
            expect(ops(arrive)).toEqual(["create", "create"]);
            expect(ops(leave)).toEqual(["delete", "delete"]);
          } else {
            // Blocks merge or split: each changed block is one modify per direction, plus what
            // the block count gained or lost.
            expect(arrive.length).toBeLessThanOrEqual(Math.max(before.length, after.length));
            expect(leave.length).toBe(arrive.length);
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(common).toBeGreaterThan(0);
  });
});
