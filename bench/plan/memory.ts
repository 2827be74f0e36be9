// Heap the incremental planner retains between cycles (its plan and kept state) against a plan
// of planMirroring alone, on the benchmark's cluster in steady state, each measured after a GC.
// Run: node --expose-gc bench/plan/memory.ts [nodes]
import { applyDiff } from "../../src/plan/diff.ts";
import { IncrementalPlanner } from "../../src/plan/incremental.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import { asDecoded, makeBenchInput } from "./world.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

function heapAfterGc(): number {
  gc!();
  return process.memoryUsage().heapUsed;
}

const empty = makeBenchInput(Number(process.argv[2] ?? 5000));
const first = planMirroring(empty);
const input = { ...empty, inventory: asDecoded(applyDiff(empty.inventory, first.diff, empty.clusterName)) };
const mib = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`;

// Plans are held in a list, so that the one measured is alive at the GC after it.
const held: unknown[] = [];
const before = heapAfterGc();
held.push(planMirroring(input));
const withPlan = heapAfterGc();
held.pop();
const between = heapAfterGc();
const planner = new IncrementalPlanner();
held.push(planner.plan(input));
const withPlanner = heapAfterGc();
console.log(`retained after GC: planMirroring's plan ${mib(withPlan - before)}`);
console.log(`retained after GC: the incremental planner's plan and state ${mib(withPlanner - between)}`);
if (held.length !== 1 || planner.last.kind !== "full") throw new Error("expected one full plan");
