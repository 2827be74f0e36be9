/**
 * The fewest EC2 calls that turn a filter's current rules into the desired ones. A rule already
 * right is left alone; every other current rule is either rewritten in place by
 * `ModifyTrafficMirrorFilterRule` (which can change every field, the number and the direction
 * included) or deleted, and every desired rule not already there is either the result of such a
 * rewrite or created. Each call fixes at most one current and one desired rule, so
 * max(wrong current rules, missing desired rules) calls is the least possible, and that is what
 * this plans. AWS keeps rule numbers unique per direction at every moment
 * (`TrafficMirrorFilterRuleAlreadyExists`); the pairing and the order below never need a
 * temporary number (see `planRuleEdits`).
 */
import type { FilterRule, TrafficDirection } from "../api/inventory.ts";
import { canonicalRule, MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";

/** A field `ModifyTrafficMirrorFilterRule` can clear (`RemoveFields`), back to AWS's default. */
export type RemovableRuleField = "protocol" | "source-port-range" | "destination-port-range";

/** One call that edits a filter's rules; a list of them runs in order. */
export type RuleEdit =
  | { op: "delete"; ruleId: string; direction: TrafficDirection; ruleNumber: number }
  | { op: "modify"; ruleId: string; rule: DesiredRule; removeFields: RemovableRuleField[] }
  | { op: "create"; rule: DesiredRule };

function slot(r: { direction: TrafficDirection; ruleNumber: number }): string {
  return `${r.direction} ${r.ruleNumber}`;
}

/** Fields the current rule has and the desired one lacks: a modify must clear them. */
function removedFields(current: FilterRule, desired: DesiredRule): RemovableRuleField[] {
  const out: RemovableRuleField[] = [];
  if (current.protocol !== undefined && desired.protocol === undefined) out.push("protocol");
  if (current.sourcePortRange && !desired.sourcePortRange) out.push("source-port-range");
  if (current.destinationPortRange && !desired.destinationPortRange) out.push("destination-port-range");
  return out;
}

const bySlot = (a: FilterRule, b: FilterRule): number =>
  a.direction === b.direction ? a.ruleNumber - b.ruleNumber : a.direction < b.direction ? -1 : 1;

/**
 * Edits that take `current` (rules with ids, as EC2 describes them) to exactly `desired`: deletes
 * first, then modifies, then creates. Safe at every step: a desired rule whose slot (direction and
 * number) a wrong current rule holds takes that rule over in place; every other modify or create
 * goes to a slot that no current rule holds, and the rules that move leave slots no desired rule
 * wants; deletes come first, so the rule count never exceeds the larger of the two lists.
 */
export function planRuleEdits(current: readonly FilterRule[], desired: readonly DesiredRule[]): RuleEdit[] {
  const wanted = new Set(desired.map(canonicalRule));
  const have = new Set(current.map(canonicalRule));
  const wrong = current.filter((r) => !wanted.has(canonicalRule(r))).sort(bySlot);
  const missing = desired.filter((r) => !have.has(canonicalRule(r))).sort(bySlot);
  const wrongBySlot = new Map(wrong.map((r) => [slot(r), r]));
  const modifies: RuleEdit[] = [];
  const taken = new Set<FilterRule>();
  const unplaced: DesiredRule[] = [];
  for (const d of missing) {
    const c = wrongBySlot.get(slot(d));
    if (c) {
      taken.add(c);
      modifies.push(modify(c, d));
    } else unplaced.push(d);
  }
  // The rest pair in slot order, same direction first (a rule that keeps its direction is the
  // usual case and the cheapest to reason about), then across directions.
  const free = wrong.filter((c) => !taken.has(c));
  let rest = unplaced;
  for (const sameDirection of [true, false]) {
    rest = rest.filter((d) => {
      const i = free.findIndex((c) => !sameDirection || c.direction === d.direction);
      if (i < 0) return true;
      modifies.push(modify(free[i]!, d));
      free.splice(i, 1);
      return false;
    });
  }
  const creates: RuleEdit[] = rest.map((d) => ({ op: "create", rule: d }));
  const deletes: RuleEdit[] = free.map((c) => ({
    op: "delete",
    // EC2 always gives an id; a rule without one (a hand-made inventory) is answered NotFound.
    ruleId: c.trafficMirrorFilterRuleId ?? "",
    direction: c.direction,
    ruleNumber: c.ruleNumber,
  }));
  return [...deletes, ...modifies, ...creates];
}

function modify(c: FilterRule, d: DesiredRule): RuleEdit {
  return {
    op: "modify",
    ruleId: c.trafficMirrorFilterRuleId ?? "",
    rule: d,
    removeFields: removedFields(c, d),
  };
}

/**
 * Applies edits to rules the way EC2 would (pure; new ids from `newId`), checking after every
 * single call what EC2 checks: the rule exists, its number is free in its direction, and the
 * filter holds at most `MAX_RULES_PER_FILTER` rules. Throws with EC2's error code on a violation.
 */
export function applyRuleEdits(
  rules: readonly FilterRule[],
  edits: readonly RuleEdit[],
  newId: () => string,
): FilterRule[] {
  let out = rules.map((r) => ({ ...r }));
  const fail = (code: string, what: string): never => {
    throw new Error(`${code}: ${what}`);
  };
  const clash = (r: { direction: TrafficDirection; ruleNumber: number }, except?: string): boolean =>
    out.some((x) => x.trafficMirrorFilterRuleId !== except && slot(x) === slot(r));
  for (const e of edits) {
    if (e.op === "create") {
      if (clash(e.rule)) fail("TrafficMirrorFilterRuleAlreadyExists", `creating ${slot(e.rule)}`);
      if (out.length >= MAX_RULES_PER_FILTER) fail("TrafficMirrorFilterRuleLimitExceeded", "creating");
      out.push({ ...e.rule, trafficMirrorFilterRuleId: newId() });
      continue;
    }
    const i = out.findIndex((x) => x.trafficMirrorFilterRuleId === e.ruleId);
    if (i < 0) fail("InvalidTrafficMirrorFilterRuleId.NotFound", e.ruleId);
    if (e.op === "delete") {
      out = out.filter((_, k) => k !== i);
      continue;
    }
    if (clash(e.rule, e.ruleId)) fail("TrafficMirrorFilterRuleAlreadyExists", `modifying to ${slot(e.rule)}`);
    const next: FilterRule = { ...out[i]!, ...e.rule, trafficMirrorFilterRuleId: e.ruleId };
    for (const f of e.removeFields) {
      if (f === "protocol") delete next.protocol;
      if (f === "source-port-range") delete next.sourcePortRange;
      if (f === "destination-port-range") delete next.destinationPortRange;
    }
    out[i] = next;
  }
  return out;
}
