// One checkout's planner alone in this process, on the benchmark's cluster in steady state: the
// CPU time per plan. Run it for two checkouts in turn to compare them without sharing a process
// (`compare.ts` alternates them in one, where each plans on a heap the other filled).
// Run: node --expose-gc bench/plan/apart.ts CHECKOUT [nodes] [plans]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { applyDiff } from "../../src/plan/diff.ts";
import type { Plan, PlanInput } from "../../src/plan/types.ts";
import { asDecoded, makeBenchInput } from "./world.ts";

const checkout = process.argv[2];
if (!checkout) throw new Error("usage: apart.ts CHECKOUT [nodes] [plans]");
const NODES = Number(process.argv[3] ?? 5000);
const PLANS = Number(process.argv[4] ?? 10);
const plan = (
  (await import(pathToFileURL(resolve(checkout, "src/plan/plan.ts")).href)) as {
    planMirroring: (i: PlanInput) => Plan;
  }
).planMirroring;
const input = makeBenchInput(NODES);
const steady = {
  ...input,
  inventory: asDecoded(applyDiff(input.inventory, plan(input).diff, input.clusterName)),
};
for (let i = 0; i < 3; i++) plan(steady);
const c0 = process.cpuUsage();
for (let i = 0; i < PLANS; i++) plan(steady);
const c = process.cpuUsage(c0);
console.log(
  `${checkout}: ${((c.user + c.system) / 1000 / PLANS).toFixed(0)} ms CPU per steady plan, ${PLANS} plans after 3`,
);
