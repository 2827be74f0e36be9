// Compares two dumps of the golden plans (`node bench/plan/golden.ts --dump DIR`, one made by the
// code before a change and one after) and checks what a change to the filter encoding may do:
// each plan that differs leaves fewer sources out for FilterTooLarge, or leaves the same sources
// out, makes the same sessions and reports, and gives every filter whose rules changed fewer rules.
// A steady or churn plan starts from the inventory its cold plan made, so where the cold plan
// changed, it may differ in its diff alone (the same desired state, reached from another start).
// Run: node bench/plan/golden-compare.ts OLD_DIR NEW_DIR   (exits 1 on a plan that breaks that)
import { readdirSync, readFileSync } from "node:fs";

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

/** Why a changed plan with the same FilterTooLarge count is not just "fewer rules", or undefined. */
function notFewerRules(before: DumpedPlan, after: DumpedPlan): string | undefined {
  if (JSON.stringify(before.desired.sessions) !== JSON.stringify(after.desired.sessions))
    return "sessions differ";
  if (JSON.stringify(before.policies) !== JSON.stringify(after.policies)) return "reports differ";
  const old = new Map(before.desired.filters.map((f) => [f.key, f]));
  if (old.size !== after.desired.filters.length) return "other filters";
  for (const f of after.desired.filters) {
    const o = old.get(f.key);
    if (!o) return `filter ${f.key} is new`;
    if (JSON.stringify(o.rules) !== JSON.stringify(f.rules) && f.rules.length >= o.rules.length)
      return `filter ${f.key} changed without fewer rules (${o.rules.length} → ${f.rules.length})`;
  }
  return undefined;
}

const [oldDir, newDir] = process.argv.slice(2);
if (!oldDir || !newDir) throw new Error("usage: golden-compare.ts OLD_DIR NEW_DIR");
const names = readdirSync(newDir)
  .filter((n) => n.endsWith(".json"))
  .sort();
const tally = { same: 0, fewerTooLarge: 0, fewerRules: 0, diffOnly: 0, onlyNew: 0, broken: 0 };
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
  const why =
    t1 < t0 || diffOnly
      ? undefined
      : t1 > t0
        ? "more FilterTooLarge"
        : notFewerRules(before.plan, after.plan);
  if (why) tally.broken++;
  else if (t1 < t0) tally.fewerTooLarge++;
  else if (diffOnly) tally.diffOnly++;
  else tally.fewerRules++;
  console.log(
    `${why ? "BROKEN" : "ok"}  ${name}: FilterTooLarge ${t0} → ${t1}, filter rules ${r0} → ${r1}${diffOnly ? ", same desired state (diff only)" : ""}${why ? ` (${why})` : ""}`,
  );
}
console.log(
  `${names.length} plans: ${tally.same} unchanged, ${tally.fewerTooLarge} with fewer FilterTooLarge, ${tally.fewerRules} with fewer rules, ${tally.diffOnly} with the same desired state and another diff, ${tally.onlyNew} only in ${newDir}, ${tally.broken} broken`,
);
if (tally.broken > 0) process.exitCode = 1;
