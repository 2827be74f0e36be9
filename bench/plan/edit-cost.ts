// What one pod event costs in rule calls when the planner's filter for it is applied at once: a
// model of one ENI (a /28: 16 addresses, 10 pods of 4 policies, every policy mirroring all
// traffic), driven by random replacements. Half replace a pod on this ENI (its departure and the
// arrival merged in one edit, as a held departure is, ADR 23); the other half are a departure to
// elsewhere and an arrival from elsewhere, each its own edit. Each edit costs
// `planRuleEdits(current rules, buildFilterRules(new selection))`. Prints the mean calls and
// their spread per kind of edit, and how often no filter fits in 10 rules.
// Run: node bench/plan/edit-cost.ts [events=20000] [reject: allow the reject-list form]
import type { FilterRule } from "../../src/api/inventory.ts";
import { buildFilterRules } from "../../src/plan/filters.ts";
import { normalizeRanges } from "../../src/plan/ipv4.ts";
import { planRuleEdits } from "../../src/plan/rule-edits.ts";

const EVENTS = Number(process.argv[2] ?? 20_000);
const REJECT = process.argv[3] === "reject";
const POLICIES = 4;
let seed = 7;
const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

const base = (10 << 24) | (1 << 16) | (2 << 8) | 16;
const addresses = Array.from({ length: 16 }, (_, i) => base + i);
const policyAt = new Map<number, number>();
const free = (): number[] => addresses.filter((a) => !policyAt.has(a));
for (let k = 0; k < 10; k++) policyAt.set(pick(free()), Math.floor(random() * POLICIES));

let ids = 0;
function rulesOf(policy: number): FilterRule[] | undefined {
  const selected = addresses.filter((a) => policyAt.get(a) === policy);
  if (selected.length === 0) return [];
  const others = addresses.filter((a) => policyAt.get(a) !== policy).map((a): [number, number] => [a, a]);
  const rules = buildFilterRules({
    selected,
    unselected: normalizeRanges(others),
    userRules: [],
    allowRejectForm: REJECT,
  });
  return rules?.map((r) => ({ ...r, trafficMirrorFilterRuleId: `r${ids++}` }));
}

const current = new Map<number, FilterRule[]>();
for (let p = 0; p < POLICIES; p++) current.set(p, rulesOf(p) ?? []);
let tooLarge = 0;
function edit(policy: number): number | undefined {
  const next = rulesOf(policy);
  if (!next) {
    tooLarge++;
    return undefined;
  }
  const calls = planRuleEdits(current.get(policy)!, next).length;
  current.set(policy, next);
  return calls;
}

const costs = { merged: [] as number[], departure: [] as number[], arrival: [] as number[] };
const record = (xs: number[], n: number | undefined): void => void (n !== undefined && xs.push(n));
for (let e = 0; e < EVENTS; e++) {
  const leaving = pick([...policyAt.keys()]);
  const policy = policyAt.get(leaving)!;
  const arriving = pick(free());
  policyAt.delete(leaving);
  if (random() < 0.5) {
    policyAt.set(arriving, policy);
    record(costs.merged, edit(policy));
  } else {
    record(costs.departure, edit(policy));
    const other = Math.floor(random() * POLICIES);
    policyAt.set(arriving, other);
    record(costs.arrival, edit(other));
  }
}

const spread = (xs: number[]): string => {
  const n = new Map<number, number>();
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n]
    .sort((a, b) => a[0] - b[0])
    .map(([calls, times]) => `${calls} calls ×${times}`)
    .join(", ");
};
const mean = (xs: number[]): string => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2);
console.log(`${EVENTS} replacements, ${REJECT ? "reject-list form allowed" : "accept list and tables only"}`);
for (const [kind, xs] of Object.entries(costs))
  console.log(`${kind} edit: mean ${mean(xs)} calls (${spread(xs)})`);
console.log(`edits with no filter in 10 rules: ${tooLarge}`);
