// Planner at EKS scale: 5,000 nodes, 15,000 ENIs, 100,000 pods, 200 policies. Prints the median
// of several full plans (first, from an empty account; then steady state, with everything already
// made; wall time, and CPU time, which a busy machine disturbs less), the memory the plan needs,
// the pods left out because one filter's rules cannot select them, and the median of the
// incremental planner's plan after one pod event (a pod of a Deployment replaced: the new one
// comes, the old one goes), with the ratio to the full plan measured in the same process; then the
// same for the operator's scale run's crowded layout (200 nodes, 20 selected pods on consecutive
// addresses of each node's first ENI); then an EKS IPv6 cluster and a dual-stack one of the
// benchmark's size (the same nodes, pods and policies; on the IPv6 one each node's pods hold IPv6
// addresses from its primary ENI's /80), in the same process. `families` picks which of IPv4,
// IPv6 and DualStack run (default all three).
// Run: node --expose-gc bench/plan/run.ts [nodes] [runs] [warm-up plans] [pod events] [families]
import { applyDiff, diffSize } from "../../src/plan/diff.ts";
import { IncrementalPlanner } from "../../src/plan/incremental.ts";
import { formatIp, parseIp } from "../../src/plan/ipv4.ts";
import { formatIp6, isIpv6Text, parseIp6 } from "../../src/plan/ipv6.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import { Reason } from "../../src/api/reasons.ts";
import type { Plan, PlanInput } from "../../src/plan/types.ts";
import { appliedKeepingIdentity } from "../../test/fixtures/world.ts";
import { asDecoded, makeBenchInput, makeCrowdedInput, type BenchFamily } from "./world.ts";

const NODES = Number(process.argv[2] ?? 5000);
const RUNS = Number(process.argv[3] ?? 7);
const WARM_UPS = Number(process.argv[4] ?? 1);
const EVENTS = Number(process.argv[5] ?? 40);
const FAMILIES = (process.argv[6] ?? "IPv4,IPv6,DualStack").split(",") as BenchFamily[];
const gc = (globalThis as { gc?: () => void }).gc;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Wall and CPU times of `runs` plans (CPU: this process's user and system time, all threads). */
function time(
  input: PlanInput,
  runs: number,
): { median: number; min: number; max: number; cpu: number; changes: number } {
  for (let w = 0; w < WARM_UPS; w++) planMirroring(input);
  const times: number[] = [];
  const cpus: number[] = [];
  let changes = 0;
  for (let r = 0; r < runs; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const plan = planMirroring(input);
    times.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpus.push((c.user + c.system) / 1000);
    changes = diffSize(plan.diff);
  }
  return {
    median: median(times),
    min: Math.min(...times),
    max: Math.max(...times),
    cpu: median(cpus),
    changes,
  };
}

/** How many sources a plan leaves out for `reason`. */
function leftOut(plan: Plan, reason: string): number {
  let n = 0;
  for (const r of plan.policies.values()) for (const s of r.sources) if (s.reason === reason) n++;
  return n;
}

/** Plans `input` from an empty account and then in steady state; prints the figures. */
function measure(label: string, input: PlanInput): void {
  console.log(`-- ${label}`);
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const firstPlan = planMirroring(input);
  const heapWithPlan = process.memoryUsage().heapUsed;
  console.log(
    `plan: ${firstPlan.desired.sessions.length} sessions, ${firstPlan.desired.filters.length} filters, ${[...firstPlan.policies.values()].reduce((n, r) => n + r.sources.filter((s) => s.reason).length, 0)} sources with a reason`,
  );
  console.log(`pods left out for FilterTooLarge: ${leftOut(firstPlan, Reason.FilterTooLarge)}`);
  const cold = time(input, RUNS);
  console.log(
    `full plan, empty account:  median ${cold.median.toFixed(0)} ms (min ${cold.min.toFixed(0)}, max ${cold.max.toFixed(0)}) over ${RUNS} runs, CPU median ${cold.cpu.toFixed(0)} ms, ${cold.changes} changes`,
  );
  // The inventory of the next cycle, described afresh from EC2 as the controller does.
  const steady = {
    ...input,
    inventory: asDecoded(applyDiff(input.inventory, firstPlan.diff, input.clusterName)),
  };
  const warm = time(steady, RUNS);
  console.log(
    `full plan, steady state:   median ${warm.median.toFixed(0)} ms (min ${warm.min.toFixed(0)}, max ${warm.max.toFixed(0)}) over ${RUNS} runs, CPU median ${warm.cpu.toFixed(0)} ms, ${warm.changes} changes`,
  );
  console.log(
    `memory: plan result and working set ~${((heapWithPlan - heapBefore) / 2 ** 20).toFixed(0)} MiB heap (no GC in between); process RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
  );
  measureIncremental(steady, warm.median);
}

/**
 * Pod events on the steady cluster, each planned by the incremental planner after the previous
 * plan's diff was applied (the kept inventory keeps unchanged records): a pod of a Deployment is
 * replaced by one with a new name and address on the same ENI, then the old one goes.
 */
function measureIncremental(steady: PlanInput, fullMedian: number): void {
  const planner = new IncrementalPlanner();
  const t0 = performance.now();
  let plan: Plan = planner.plan(steady);
  const first = performance.now() - t0;
  let input = steady;
  const times: number[] = [];
  const kinds = { incremental: 0, full: 0 };
  const nodes = input.nodes.length;
  for (let k = 0; k < EVENTS; k++) {
    input = { ...input, inventory: appliedKeepingIdentity(input.inventory, plan, input.clusterName) };
    const at = ((k >> 1) * 7919) % nodes;
    const old = input.pods[at * 20]!;
    const pods =
      k % 2 === 0
        ? [
            ...input.pods,
            {
              ...old,
              name: `${old.name}-r${k}`,
              uid: `${old.uid}-r${k}`,
              podIPs: old.podIPs.map((ip) => shifted(ip, 8)),
            },
          ]
        : input.pods.filter((p) => p !== old);
    input = { ...input, pods };
    const t = performance.now();
    plan = planner.plan(input);
    times.push(performance.now() - t);
    kinds[planner.last.kind]++;
    if (k === 0 && planner.last.reason) console.log(`(full plan: ${planner.last.reason})`);
  }
  const check = planMirroring(input);
  const same = JSON.stringify(serialisable(check)) === JSON.stringify(serialisable(plan));
  const m = median(times);
  console.log(
    `incremental planner: first (full) plan ${first.toFixed(0)} ms; ${kinds.incremental} of ${EVENTS} events incremental; last plan equal to planMirroring: ${same}`,
  );
  console.log(
    `one pod event, incremental: median ${m.toFixed(2)} ms (min ${Math.min(...times).toFixed(2)}, max ${Math.max(...times).toFixed(2)}) over ${EVENTS} events; full plan ${fullMedian.toFixed(0)} ms, ratio ${(fullMedian / m).toFixed(0)}x`,
  );
}

/** An address `by` past `ip`, in its family. */
function shifted(ip: string, by: number): string {
  return isIpv6Text(ip) ? formatIp6(parseIp6(ip)! + BigInt(by)) : formatIp(parseIp(ip)! + by);
}

function serialisable(plan: Plan): unknown {
  const maps = (v: unknown): unknown =>
    v instanceof Map ? [...v.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0]))) : v;
  return JSON.parse(JSON.stringify(plan, (_k, v: unknown) => maps(v)));
}

if (FAMILIES.includes("IPv4")) {
  const input = makeBenchInput(NODES);
  console.log(
    `cluster: ${input.nodes.length} nodes, ${input.inventory.networkInterfaces.length} ENIs, ${input.pods.length} pods, ${input.policies.length} policies`,
  );
  // AWS allows 10,000 sessions per account and Region: the cluster wants more, so the plan makes the
  // 10,000 of highest priority and reports the rest QuotaFull.
  measure("within AWS's account quota (10,000 sessions)", input);
  // The same cluster as if the quota did not exist: every session the ENIs' slots allow is made.
  measure("without the account quota (every session the ENI slots allow)", {
    ...input,
    sessionBudget: Infinity,
  });

  // 20 consecutive selected pods per ENI over two /28 prefixes: the layout where accept lists alone
  // run out of filter rules.
  const crowded = makeCrowdedInput(200);
  console.log(
    `crowded cluster: ${crowded.nodes.length} nodes, ${crowded.pods.length} pods, ${crowded.policies.length} policies`,
  );
  measure("crowded ENIs (the operator's scale run)", crowded);
}

for (const family of FAMILIES.filter((f) => f !== "IPv4")) {
  const input = makeBenchInput(NODES, family);
  console.log(
    `${family} cluster: ${input.nodes.length} nodes, ${input.inventory.networkInterfaces.length} ENIs, ${input.pods.length} pods, ${input.policies.length} policies`,
  );
  measure(`${family}, within AWS's account quota`, input);
}
