// Compares two dumps of the golden plans (`node bench/plan/golden.ts --dump DIR`, one made by the
// code before a change and one after) and checks what a change to the filter encoding may do:
// each plan that differs leaves fewer sources out for FilterTooLarge, or leaves the same sources
// out, makes the same sessions and reports, and gives every filter whose rules changed fewer rules.
// A steady or churn plan starts from the inventory its cold plan made, so where the cold plan
// changed, it may differ in its diff alone (the same desired state, reached from another start).
// A change to the numbering may renumber rules: the same rules, and in each direction those whose
// local blocks overlap in the same order (every packet meets the same first match).
// Run: node bench/plan/golden-compare.ts OLD_DIR NEW_DIR   (exits 1 on a plan that breaks that)
import { readdirSync, readFileSync } from "node:fs";
import { contains, parseCidr } from "../../src/plan/ipv4.ts";

interface DumpedPlan {
  desired: { sessions: unknown[]; filters: { key: string; rules: unknown[] }[] };
  diff: unknown;
  policies: { map: [string, { sources: { reason?: string }[] }][] };
}

function load(dir: string, name: string): { text: string; plan: DumpedPlan } {
  const text = readFileSync(`${dir}/${name}`, "utf8");
  return { text, plan: JSON.parse(text) as DumpedPlan };
}

function tooLarge(p: DumpedPlan): number {
  let n = 0;
  for (const [, r] of p.policies.map) for (const s of r.sources) if (s.reason === "FilterTooLarge") n++;
  return n;
}

function ruleCount(p: DumpedPlan): number {
  return p.desired.filters.reduce((n, f) => n + f.rules.length, 0);
}

/**
 * Why a changed plan is not the old one with the same sessions and reports and each filter's
 * change passing `filterOk` (which says why not), or undefined.
 */
function notSamePlanBut(
  before: DumpedPlan,
  after: DumpedPlan,
  filterOk: (o: unknown[], f: unknown[]) => string | undefined,
): string | undefined {
  if (JSON.stringify(before.desired.sessions) !== JSON.stringify(after.desired.sessions))
    return "sessions differ";
  if (JSON.stringify(before.policies) !== JSON.stringify(after.policies)) return "reports differ";
  const old = new Map(before.desired.filters.map((f) => [f.key, f]));
  if (old.size !== after.desired.filters.length) return "other filters";
  for (const f of after.desired.filters) {
    const o = old.get(f.key);
    if (!o) return `filter ${f.key} is new`;
    const why = filterOk(o.rules, f.rules);
    if (why) return `filter ${f.key} ${why}`;
  }
  return undefined;
}

/** Why a changed plan with the same FilterTooLarge count is not just "fewer rules", or undefined. */
function notFewerRules(before: DumpedPlan, after: DumpedPlan): string | undefined {
  return notSamePlanBut(before, after, (o, f) =>
    JSON.stringify(o) !== JSON.stringify(f) && f.length >= o.length
      ? `changed without fewer rules (${o.length} → ${f.length})`
      : undefined,
  );
}

interface Rule {
  direction: string;
  ruleNumber: number;
  sourceCidrBlock: string;
  destinationCidrBlock: string;
}

/** Whether one block holds the other (IPv6 blocks are taken to overlap: the stricter check). */
function overlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y) return a.includes(":") === b.includes(":");
  return contains(x, y.base) || contains(y, x.base);
}

/**
 * Why a filter's rules are not its old rules renumbered, or undefined: the same rules but for
 * their numbers, and in each direction rules whose local blocks overlap in the same order (so
 * every packet meets the same first match).
 */
function notRenumbered(before: Rule[], after: Rule[]): string | undefined {
  const text = (r: Rule): string => JSON.stringify({ ...r, ruleNumber: 0 });
  const old = new Map(before.map((r) => [text(r), r]));
  if (old.size !== after.length || after.some((r) => !old.has(text(r)))) return "other rules";
  const local = (r: Rule): string => (r.direction === "ingress" ? r.destinationCidrBlock : r.sourceCidrBlock);
  for (const a of after)
    for (const b of after) {
      if (a === b || a.direction !== b.direction || !overlap(local(a), local(b))) continue;
      const [oa, ob] = [old.get(text(a))!, old.get(text(b))!];
      if (a.ruleNumber < b.ruleNumber !== oa.ruleNumber < ob.ruleNumber) return "another order";
    }
  return undefined;
}

/** Why a changed plan is not the old one with filter rules renumbered, or undefined. */
function notRenumberedPlan(before: DumpedPlan, after: DumpedPlan): string | undefined {
  return notSamePlanBut(before, after, (o, f) => notRenumbered(o as Rule[], f as Rule[]));
}

const [oldDir, newDir] = process.argv.slice(2);
if (!oldDir || !newDir) throw new Error("usage: golden-compare.ts OLD_DIR NEW_DIR");
const names = readdirSync(newDir)
  .filter((n) => n.endsWith(".json"))
  .sort();
const tally = { same: 0, fewerTooLarge: 0, fewerRules: 0, renumbered: 0, diffOnly: 0, onlyNew: 0, broken: 0 };
for (const name of names) {
  let before;
  try {
    before = load(oldDir, name);
  } catch {
    tally.onlyNew++;
    continue;
  }
  const after = load(newDir, name);
  if (before.text === after.text) {
    tally.same++;
    continue;
  }
  const [t0, t1] = [tooLarge(before.plan), tooLarge(after.plan)];
  const [r0, r1] = [ruleCount(before.plan), ruleCount(after.plan)];
  const diffOnly =
    JSON.stringify({ ...before.plan, diff: null }) === JSON.stringify({ ...after.plan, diff: null }) &&
    !name.endsWith("-cold.json");
  // The diff of a renumbered plan renumbers too; its desired state is what is compared.
  const renumbered = !diffOnly && t1 === t0 && notRenumberedPlan(before.plan, after.plan) === undefined;
  const why =
    t1 < t0 || diffOnly || renumbered
      ? undefined
      : t1 > t0
        ? "more FilterTooLarge"
        : notFewerRules(before.plan, after.plan);
  if (why) tally.broken++;
  else if (t1 < t0) tally.fewerTooLarge++;
  else if (diffOnly) tally.diffOnly++;
  else if (renumbered) tally.renumbered++;
  else tally.fewerRules++;
  console.log(
    `${why ? "BROKEN" : "ok"}  ${name}: FilterTooLarge ${t0} → ${t1}, filter rules ${r0} → ${r1}${diffOnly ? ", same desired state (diff only)" : ""}${renumbered ? ", rules renumbered in the same order" : ""}${why ? ` (${why})` : ""}`,
  );
}
console.log(
  `${names.length} plans: ${tally.same} unchanged, ${tally.fewerTooLarge} with fewer FilterTooLarge, ${tally.fewerRules} with fewer rules, ${tally.renumbered} renumbered, ${tally.diffOnly} with the same desired state and another diff, ${tally.onlyNew} only in ${newDir}, ${tally.broken} broken`,
);
if (tally.broken > 0) process.exitCode = 1;
