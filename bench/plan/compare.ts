// Planner time of this checkout against another's, in one process: the two planners' plans of the
// benchmark's cluster alternate, so a busy machine slows both alike. Prints each one's median wall
// and CPU time per plan (empty account, then steady state) and the ratio.
// Run: node --expose-gc bench/plan/compare.ts OTHER_CHECKOUT [nodes] [rounds]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { applyDiff } from "../../src/plan/diff.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import type { Plan, PlanInput } from "../../src/plan/types.ts";
import { asDecoded, makeBenchInput } from "./world.ts";

const other = process.argv[2];
if (!other) throw new Error("usage: compare.ts OTHER_CHECKOUT [nodes] [rounds]");
const NODES = Number(process.argv[3] ?? 5000);
const ROUNDS = Number(process.argv[4] ?? 9);
const theirs = (
  (await import(pathToFileURL(resolve(other, "src/plan/plan.ts")).href)) as {
    planMirroring: (i: PlanInput) => Plan;
  }
).planMirroring;
const gc = (globalThis as { gc?: () => void }).gc;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function once(plan: (i: PlanInput) => Plan, input: PlanInput): { wall: number; cpu: number } {
  gc?.();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  plan(input);
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
}

function compare(label: string, input: PlanInput): void {
  const mine = { wall: [] as number[], cpu: [] as number[] };
  const base = { wall: [] as number[], cpu: [] as number[] };
  once(planMirroring, input);
  once(theirs, input);
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which goes first, so neither always plans on a heap the other just filled.
    const order = r % 2 === 0 ? [true, false] : [false, true];
    for (const isMine of order) {
      const t = once(isMine ? planMirroring : theirs, input);
      const into = isMine ? mine : base;
      into.wall.push(t.wall);
      into.cpu.push(t.cpu);
    }
  }
  const f = (x: number) => x.toFixed(0);
  console.log(
    `${label}: other ${f(median(base.wall))} ms (CPU ${f(median(base.cpu))}), this ${f(median(mine.wall))} ms (CPU ${f(median(mine.cpu))}), ratio ${(median(mine.wall) / median(base.wall)).toFixed(3)} wall, ${(median(mine.cpu) / median(base.cpu)).toFixed(3)} CPU, over ${ROUNDS} rounds`,
  );
}

const input = makeBenchInput(NODES);
compare("empty account", input);
const steady = {
  ...input,
  inventory: asDecoded(applyDiff(input.inventory, planMirroring(input).diff, input.clusterName)),
};
compare("steady state", steady);
