import { buildFilterRules } from "../../src/plan/filters.ts";
import { planRuleEdits } from "../../src/plan/rule-edits.ts";
import { normalizeRanges } from "../../src/plan/ipv4.ts";
import type { FilterRule } from "../../src/api/inventory.ts";
let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const reject = process.argv[2] === "reject";
// An ENI holding 16 addresses (a /28), 10 pods of 4 policies, 6 free.
const base = (10 << 24) | (1 << 16) | (2 << 8) | 16;
const addrs = Array.from({ length: 16 }, (_, i) => base + i);
const owner = new Map<number, number>(); // address → policy
const free = () => addrs.filter((a) => !owner.has(a));
for (let k = 0; k < 10; k++) { const f = free(); owner.set(f[Math.floor(rnd() * f.length)]!, Math.floor(rnd() * 4)); }
let id = 0;
const rulesFor = (p: number): FilterRule[] | undefined => {
  const sel = addrs.filter((a) => owner.get(a) === p);
  if (sel.length === 0) return [];
  const uns = normalizeRanges(addrs.filter((a) => owner.get(a) !== p).map((a) => [a, a] as [number, number]));
  const r = buildFilterRules({ selected: sel, unselected: uns, userRules: [], allowRejectForm: reject });
  return r?.map((x) => ({ ...x, trafficMirrorFilterRuleId: `r${id++}` }));
};
const current = new Map<number, FilterRule[]>();
for (let p = 0; p < 4; p++) current.set(p, rulesFor(p) ?? []);
const costs = { arrive: [] as number[], depart: [] as number[], merged: [] as number[], tooLarge: 0 };
function edit(p: number): number {
  const next = rulesFor(p);
  if (!next) { costs.tooLarge++; return 0; }
  const n = planRuleEdits(current.get(p)!, next).length;
  current.set(p, next);
  return n;
}
for (let e = 0; e < 20000; e++) {
  // a replacement: a pod of policy p leaves y; its replacement takes a free address x (not y)
  const held = [...owner.keys()];
  const y = held[Math.floor(rnd() * held.length)]!;
  const p = owner.get(y)!;
  const f = free();
  const x = f[Math.floor(rnd() * f.length)]!;
  const same = rnd() < 0.5; // replacement on this ENI or elsewhere
  if (same) {
    owner.delete(y); owner.set(x, p);
    costs.merged.push(edit(p)); // departure and arrival in one edit
  } else {
    owner.delete(y); costs.depart.push(edit(p));
    // another pod (of a random policy) arrives here from elsewhere, to keep the count
    const q = Math.floor(rnd() * 4); owner.set(x, q); costs.arrive.push(edit(q));
  }
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const hist = (xs: number[]) => { const h = new Map<number, number>(); for (const x of xs) h.set(x, (h.get(x) ?? 0) + 1); return [...h].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(" "); };
console.log(reject ? "reject form allowed" : "accept form only");
console.log("merged (same ENI): mean", mean(costs.merged).toFixed(2), hist(costs.merged));
console.log("departure alone:   mean", mean(costs.depart).toFixed(2), hist(costs.depart));
console.log("arrival alone:     mean", mean(costs.arrive).toFixed(2), hist(costs.arrive));
console.log("too large", costs.tooLarge);
