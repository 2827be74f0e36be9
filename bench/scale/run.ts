// The operator at cluster scale, as a process: a real control plane with kwok nodes, the EC2
// emulator at AWS's default per-action buckets with 50–300 ms per call, EKS-like nodes with three
// ENIs each (secondary IPs and /28 prefixes mixed) in three zones, policies in many namespaces to an
// NLB target (no source cap) and a collector target. Phases: converge from an empty account (with
// pods created during it), idle, a rolling restart. One line per figure, `name: value unit`.
// Run: node bench/scale/run.ts [nodes=1000] [pods=30000] [policies=100] [namespaces=20]
//        [restartPods=3000] [restartPerSecond=20] [idleSeconds=300] [convergeMaxSeconds=7200]
// SCALE_OUT=file writes the figures and a 1 s series of the operator's RSS, CPU and calls as JSON;
// SCALE_KEEP=1 keeps the state directory with the operator's log, SCALE_LOG_LEVEL its level.
// SCALE_TRACE=file writes the restart's pod events and calls, with times: `bench/scale/trace.ts` reads it.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { API_VERSION } from "../../src/api/resources.ts";
import type { FilterRule, MirrorFilter } from "../../src/api/inventory.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import { rulesOf } from "../../src/plan/diff.ts";
import { planRuleEdits } from "../../src/plan/rule-edits.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { contains, parseCidr, parseIp, type Block } from "../../src/plan/ipv4.ts";
import { mirrorsInboundTo } from "../../test/ec2-sim/dataplane.ts";
import { seed, startEc2Sim } from "../../test/ec2-sim/server.ts";
import { freePorts, REPO_ROOT, startControlPlane } from "../../test/harness/controlplane.ts";
import { installCrds } from "../../test/harness/crds.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  operatorEnv,
} from "../../test/fixtures/scenario.ts";
import { makeWorld } from "../../test/fixtures/world.ts";

const arg = (i: number, d: number): number => Number(process.argv[i] ?? d);
const NODES = arg(2, 1000);
const PODS = arg(3, 30_000);
const POLICIES = arg(4, 100);
const NAMESPACES = arg(5, 20);
const RESTART = arg(6, 3000);
const RESTART_RATE = arg(7, 20);
const IDLE_S = arg(8, 300);
const CONVERGE_MAX_S = arg(9, 7200);
const CLUSTER = "scale";
const OP_NS = "tmo-system";
const COLLECTORS = [0, 1, 2, 3]; // m5.large collector nodes: 10 sources each
const DEBUG_NODES = 8; // pods on the 8 nodes after the collectors carry tier=debug
// Per namespace, one policy per app to the NLB (pods carry the apps that have a policy), then one
// for tier=debug pods to the collector, then more per app.
const APPS = ["web", "db", "api", "cache"].slice(
  0,
  Math.max(1, Math.min(4, Math.floor(POLICIES / NAMESPACES))),
);
// AWS's default buckets (docs/aws-rate-limits.md) and the operator's default shares of them.
const AWS_BUCKET = { mutating: { burst: 50, rate: 5 }, describe: { burst: 100, rate: 20 } };
const SHARE = { mirror: 0.85, shared: 0.5 };
const HEAP_MIB = Math.floor(1024 * 0.3);
const t00 = Date.now();
const note = (m: string): void => console.error(`[${((Date.now() - t00) / 1000).toFixed(0)} s] ${m}`);
const figures: Record<string, number | string> = {};
const figure = (name: string, value: number | string, unit = ""): void => {
  figures[name] = value;
  console.log(`${name}: ${typeof value === "number" ? round(value) : value}${unit ? ` ${unit}` : ""}`);
};
const round = (x: number): number => (Number.isFinite(x) ? Math.round(x * 100) / 100 : x);

// ---- the control plane, the emulator, the cluster
const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-scale-"));
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
const sim = await startEc2Sim({
  knobs: { throttle: { model: "per-action" }, latencyMs: { min: 50, max: 300 } },
});
const world = makeWorld({ nodes: NODES, podsPerNode: 0, collectors: COLLECTORS, addressing: "mixed" });
seed(sim.state, world.inventory);
await createEksNodes(rest, { first: 0, count: NODES, collectors: COLLECTORS, pool: "scale" });
await installCrds(rest);
const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `team-${i}`);
await createNamespaces(rest, [OP_NS, ...namespaces]);
for (const ns of namespaces)
  await rest
    .request({
      method: "POST",
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: "default" } },
      what: "serviceaccount",
    })
    .catch(() => undefined);
const workers = Array.from({ length: NODES }, (_, i) => i).filter((i) => !COLLECTORS.includes(i));
note(`control plane up, ${NODES} nodes (${world.inventory.networkInterfaces.length} ENIs)`);

interface PodRec {
  ns: string;
  name: string;
  node: number;
  labels: Record<string, string>;
  ip?: string;
  createdAt?: number;
  runningAt?: number;
  coveredAt?: number;
}
const podOf = (k: number, prefix: string, batch?: string): PodRec => {
  const node = workers[k % workers.length]!;
  const debug = node < COLLECTORS.length + DEBUG_NODES;
  return {
    ns: namespaces[k % NAMESPACES]!,
    name: `${prefix}-${k}`,
    node,
    labels: {
      app: APPS[Math.floor(k / NAMESPACES) % APPS.length]!,
      ...(debug ? { tier: "debug" } : {}),
      ...(batch ? { batch } : {}),
    },
  };
};
const createPod = (p: PodRec): Promise<unknown> => {
  p.createdAt = Date.now();
  return rest.request({
    method: "POST",
    path: `/api/v1/namespaces/${p.ns}/pods`,
    what: "creating a pod",
    body: {
      metadata: { name: p.name, labels: p.labels },
      spec: {
        nodeName: eksNodeSpec(p.node).name,
        containers: [{ name: "c", image: "i" }],
        terminationGracePeriodSeconds: 0,
      },
    },
  });
};
async function pool<T>(items: readonly T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}
type PodList = {
  items: { metadata: { name: string; namespace: string }; status?: { phase?: string; podIP?: string } }[];
};
/** Records Running (and the address) of the pods in `recs` that kwok started since the last call. */
async function observeRunning(recs: Map<string, PodRec>, selector = ""): Promise<number> {
  const l = await rest.get<PodList>(`/api/v1/pods${selector}`, "listing pods");
  const now = Date.now();
  let running = 0;
  for (const p of l.items) {
    const r = recs.get(`${p.metadata.namespace}/${p.metadata.name}`);
    if (!r || p.status?.phase !== "Running" || !p.status.podIP) continue;
    running++;
    if (!r.runningAt) {
      r.runningAt = now;
      r.ip = p.status.podIP;
    }
  }
  return running;
}
const initial = Array.from({ length: PODS }, (_, k) => podOf(k, "p"));
const byKey = (recs: PodRec[]): Map<string, PodRec> => new Map(recs.map((r) => [`${r.ns}/${r.name}`, r]));
const initialByKey = byKey(initial);
await pool(initial, 16, createPod);
while ((await observeRunning(initialByKey)) < PODS) await sleep(3000);
note(`${PODS} pods Running`);

await rest.request({
  method: "POST",
  path: `/apis/${API_VERSION}/trafficmirrortargets`,
  what: "creating the NLB target",
  body: {
    apiVersion: API_VERSION,
    kind: "TrafficMirrorTarget",
    metadata: { name: "nlb" },
    spec: {
      networkLoadBalancerArn:
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/scale/0123456789abcdef",
      allowedNamespaces: { from: "All" },
    },
  },
});
await createCollectorTarget(rest, "collector");
for (let k = 0; k < POLICIES; k++) {
  const ns = namespaces[k % NAMESPACES]!;
  const slot = Math.floor(k / NAMESPACES);
  const debug = slot === APPS.length;
  await createPolicy(rest, {
    namespace: ns,
    name: `policy-${k}`,
    spec: debug
      ? { podSelector: { matchLabels: { tier: "debug" } }, targetRef: { name: "collector" } }
      : { podSelector: { matchLabels: { app: APPS[slot % APPS.length]! } }, targetRef: { name: "nlb" } },
  });
}
note(`targets nlb and collector, ${POLICIES} policies`);

// ---- what the emulator holds: is an address mirrored by an owned session on the ENI that holds it?
const heldBy = new Map<number, string>(); // address → ENI
for (const e of sim.state.enis.values()) {
  for (const ip of e.privateIps ?? []) heldBy.set(parseIp(ip)!, e.networkInterfaceId);
  for (const c of e.ipv4Prefixes ?? []) {
    const b = parseCidr(c)!;
    for (let a = b.base; a < b.base + 2 ** (32 - b.len); a++) heldBy.set(a, e.networkInterfaceId);
  }
}
/** A function telling whether a pod's address is mirrored inbound now (first matching rule, in order). */
function mirroredNow(): (ip: string) => boolean {
  const filtersByEni = new Map<string, { rules: { cidr: Block; accept: boolean }[] }[]>();
  for (const s of sim.state.sessions.values()) {
    if (!isOwnedBy(s.tags, CLUSTER)) continue;
    const f = sim.state.filters.get(s.trafficMirrorFilterId);
    if (!f) continue;
    const rules = [...(f.ingressRules ?? [])]
      .sort((a, b) => a.ruleNumber - b.ruleNumber)
      .map((r) => ({ cidr: parseCidr(r.destinationCidrBlock)!, accept: r.action === "accept" }));
    const list = filtersByEni.get(s.networkInterfaceId) ?? [];
    list.push({ rules });
    filtersByEni.set(s.networkInterfaceId, list);
  }
  return (ip) => {
    const a = parseIp(ip)!;
    const eni = heldBy.get(a);
    return (filtersByEni.get(eni ?? "") ?? []).some(
      (f) => f.rules.find((r) => contains(r.cidr, a))?.accept === true,
    );
  };
}

// ---- measuring
const HZ = 100;
function procStat(pid: number): { rssMiB: number; cpuS: number } {
  try {
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { rssMiB: rss / 1024, cpuS: (Number(f[11]) + Number(f[12])) / HZ };
  } catch {
    return { rssMiB: 0, cpuS: 0 };
  }
}
const isMutating = (a: string): boolean => /^(Create|Delete|Modify)/.test(a);
function calls(from: number, to = sim.calls.length) {
  const s = sim.calls.slice(from, to);
  const byAction = new Map<string, number>();
  for (const c of s) if (c.code === "OK") byAction.set(c.action, (byAction.get(c.action) ?? 0) + 1);
  return {
    byAction,
    mutating: s.filter((c) => isMutating(c.action) && c.code === "OK").length,
    describe: s.filter((c) => c.action.startsWith("Describe")).length,
    throttled: s.filter((c) => c.code === "RequestLimitExceeded").length,
  };
}
/** Seconds the per-action buckets need for these calls (each action its own bucket), at a share. */
function bucketBound(byAction: Map<string, number>, share: (a: string) => number): number {
  let worst = 0;
  for (const [a, n] of byAction) {
    const b = isMutating(a) ? AWS_BUCKET.mutating : AWS_BUCKET.describe;
    const s = share(a);
    worst = Math.max(worst, (n - Math.floor(b.burst * s)) / (b.rate * s));
  }
  return worst;
}
const shareOf = (a: string): number => (a.includes("TrafficMirror") ? SHARE.mirror : SHARE.shared);
type PolicyList = {
  items: {
    metadata: { generation: number };
    status?: {
      conditions?: { type: string; status: string; reason: string; observedGeneration?: number }[];
      selectedPods?: number;
      mirroredSources?: number;
    };
  }[];
};
/** Policies with any status, Ready ones, the reasons of the others, and pods selected and mirrored. */
async function policies() {
  const l = await rest.get<PolicyList>(`/apis/${API_VERSION}/trafficmirrorpolicies`, "listing policies");
  const reasons = new Map<string, number>();
  let ready = 0;
  for (const p of l.items) {
    const r = p.status?.conditions?.find((c) => c.type === "Ready");
    if (r?.status === "True" && r.observedGeneration === p.metadata.generation) ready++;
    else reasons.set(r?.reason ?? "none", (reasons.get(r?.reason ?? "none") ?? 0) + 1);
  }
  const sum = (f: (x: PolicyList["items"][number]) => number | undefined): number =>
    l.items.reduce((n, p) => n + (f(p) ?? 0), 0);
  return {
    withStatus: l.items.filter((p) => (p.status?.conditions?.length ?? 0) > 0).length,
    ready,
    reasons: [...reasons].map(([r, n]) => `${r} ${n}`).join(", ") || "none",
    selected: sum((p) => p.status?.selectedPods),
    mirrored: sum((p) => p.status?.mirroredSources),
  };
}
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};
let metricsPort = 0;
async function planSeconds(): Promise<Map<string, { sum: number; count: number }>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const out = new Map<string, { sum: number; count: number }>();
  for (const m of text.matchAll(/^tmo_plan_duration_seconds_(sum|count)\{kind="(\w+)"\} (\S+)$/gm)) {
    const e = out.get(m[2]!) ?? { sum: 0, count: 0 };
    e[m[1] as "sum" | "count"] = Number(m[3]);
    out.set(m[2]!, e);
  }
  return out;
}

/** The operator's V8 heap in use, from its own metrics (prom-client's default gauges). */
async function heapUsedMiB(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^\w*nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return m ? Number(m[1]) / 2 ** 20 : NaN;
}

// ---- 1. converge from an empty account
const ports = await freePorts(2);
metricsPort = ports[0]!;
const opLogPath = join(stateDir, "operator.log");
const op = spawn(
  "setpriv",
  ["--pdeathsig", "SIGKILL", "--", process.execPath, "src/cmd/main.ts", "operator"],
  {
    cwd: REPO_ROOT,
    env: operatorEnv({
      kubeconfig: cp.kubeconfigPath,
      cluster: CLUSTER,
      namespace: OP_NS,
      ec2: sim.url,
      ports,
      extra: {
        TMO_POD_NAME: "operator-0",
        // SCALE_LOG_LEVEL=debug adds each cycle's filter edits and held edits to the log.
        TMO_LOG_LEVEL: process.env["SCALE_LOG_LEVEL"] ?? "info",
        // The heap limit the chart's defaults give the operator in its pod (30% of a 1 GiB limit;
        // outside a container Node would size it from the machine's memory).
        NODE_OPTIONS: `--max-old-space-size=${HEAP_MIB}`,
      },
    }),
    stdio: ["ignore", openSync(opLogPath, "w"), openSync(opLogPath, "a")],
  },
);
const pid = op.pid!;
figure("operator heap limit", HEAP_MIB, "MiB (the chart's 30% of 1 GiB)");
const start = Date.now();
const series: { t: number; rssMiB: number; cpuS: number; calls: number }[] = [];
const sampler = setInterval(() => {
  series.push({ t: (Date.now() - start) / 1000, ...procStat(pid), calls: sim.calls.length });
}, 1000);
let firstSession: number | undefined;
let firstStatus: number | undefined;
let lastMutating = start;
let mutatingSeen = 0;
// Pods created during the converge: one a second for the first minute, on nodes across the cluster.
const during = Array.from({ length: 60 }, (_, k) => podOf(PODS + k, "during", "during"));
const duringByKey = byKey(during);
void (async () => {
  await sleep(5000);
  for (const p of during) {
    void createPod(p).catch(() => undefined);
    await sleep(1000);
  }
})();
// Converged: every policy Ready and every pod made during it covered, or (where some cannot be)
// no mutating call and no status change for 60 s.
let done = false;
let lastStatus = "";
let lastStatusAt = start;
while (!done && Date.now() - start < CONVERGE_MAX_S * 1000) {
  await sleep(1000);
  const now = Date.now();
  if (!firstSession && [...sim.state.sessions.values()].some((s) => isOwnedBy(s.tags, CLUSTER)))
    firstSession = now;
  const ps = await policies().catch(() => undefined);
  if (!ps) continue;
  if (!firstStatus && ps.withStatus > 0) firstStatus = now;
  if (JSON.stringify(ps) !== lastStatus) [lastStatus, lastStatusAt] = [JSON.stringify(ps), now];
  await observeRunning(duringByKey, "?labelSelector=batch%3Dduring").catch(() => 0);
  const mirrored = mirroredNow();
  for (const p of during) if (p.runningAt && !p.coveredAt && mirrored(p.ip!)) p.coveredAt = now;
  const m = calls(0).mutating;
  if (m !== mutatingSeen) [mutatingSeen, lastMutating] = [m, now];
  const complete = ps.ready === POLICIES && during.every((p) => p.coveredAt);
  const quiet = now - lastMutating > 60_000 && now - lastStatusAt > 60_000;
  done = (complete && now - lastMutating > 10_000) || quiet;
  if ((now - start) % 60_000 < 1000)
    note(
      `converge: ${ps.ready}/${POLICIES} Ready, ${m} mutating calls, ${procStat(pid).rssMiB.toFixed(0)} MiB`,
    );
}
const endState = await policies();
const converge = calls(0);
const convergeS = (lastMutating - start) / 1000;
figure("converge time", convergeS, "s");
figure("converge ended", done ? "yes" : `no (stopped after ${CONVERGE_MAX_S} s)`);
figure("policies Ready", endState.ready, `of ${POLICIES} (others: ${endState.reasons})`);
figure("pods mirrored", endState.mirrored, `of ${endState.selected} selected`);
figure("converge mutating calls", converge.mutating, "calls");
for (const [a, n] of [...converge.byAction].sort()) figure(`converge calls ${a}`, n, "calls");
const awsBound = bucketBound(converge.byAction, () => 1);
const shareBound = bucketBound(converge.byAction, shareOf);
figure("converge bound at AWS's buckets", awsBound, "s");
figure("converge time / AWS's buckets", convergeS / awsBound, "×");
figure("converge time / the operator's shares of them", convergeS / shareBound, "×");
figure("converge RequestLimitExceeded", converge.throttled, "calls");
figure("time to first session", ((firstSession ?? NaN) - start) / 1000, "s");
figure("time to first status", ((firstStatus ?? NaN) - start) / 1000, "s");
const duringLat = during.filter((p) => p.coveredAt && p.runningAt).map((p) => p.coveredAt! - p.runningAt!);
figure("pods created during the converge, covered", duringLat.length, `of ${during.length}`);
figure("during the converge, Running → covered p50", quantile(duringLat, 0.5) / 1000, "s");
figure("during the converge, Running → covered p99", quantile(duringLat, 0.99) / 1000, "s");
figure("converge operator CPU", procStat(pid).cpuS, "s");
figure("converge operator peak RSS", Math.max(...series.map((s) => s.rssMiB)), "MiB");

// ---- 2. idle
const idleFrom = sim.calls.length;
const idleCpu0 = procStat(pid).cpuS;
const idleStart = Date.now();
const idleRss: number[] = [];
const idleHeap: number[] = [];
while (Date.now() - idleStart < IDLE_S * 1000) {
  await sleep(5000);
  idleRss.push(procStat(pid).rssMiB);
  const heap = await heapUsedMiB().catch(() => NaN);
  if (Number.isFinite(heap)) idleHeap.push(heap);
}
const idle = calls(idleFrom);
const minutes = IDLE_S / 60;
figure("idle Describe calls per minute", idle.describe / minutes, "calls/min");
for (const [a, n] of [...idle.byAction].sort())
  if (a.startsWith("Describe")) figure(`idle ${a} per minute`, n / minutes, "calls/min");
figure("idle mutating calls", idle.mutating, "calls");
figure("idle operator CPU", ((procStat(pid).cpuS - idleCpu0) / IDLE_S) * 100, "% of a core");
figure("idle operator RSS max", Math.max(...idleRss), "MiB");
// What the operator holds, as V8 reports it: RSS also counts heap V8 has not given back.
figure("idle operator heap used max", Math.max(...idleHeap), "MiB");

// ---- 3. a rolling restart: each pod's replacement created on its node, then the pod deleted
const restartFrom = sim.calls.length;
const ownedBefore = ownedState();
const restartCpu0 = procStat(pid).cpuS;
const plan0 = await planSeconds().catch(() => new Map());
const victims = initial.filter((_, k) => k % Math.max(1, Math.floor(PODS / RESTART)) === 0).slice(0, RESTART);
const fresh: PodRec[] = victims.map((v) => ({
  ns: v.ns,
  name: `r-${v.name}`,
  node: v.node,
  labels: { ...v.labels, batch: "restart" },
}));
const freshByKey = byKey(fresh);
const t0 = Date.now();
for (let k = 0; k < victims.length; k++) {
  void createPod(fresh[k]!).catch(() => undefined);
  const v = victims[k]!;
  void rest
    .request({
      method: "DELETE",
      path: `/api/v1/namespaces/${v.ns}/pods/${v.name}?gracePeriodSeconds=0`,
      what: "deleting a pod",
    })
    .catch(() => undefined);
  const due = t0 + ((k + 1) * 1000) / RESTART_RATE;
  while (Date.now() < due) await sleep(Math.min(50, due - Date.now()));
  if (k % RESTART_RATE === 0) await observeRestart();
}
async function observeRestart(): Promise<void> {
  await observeRunning(freshByKey, "?labelSelector=batch%3Drestart").catch(() => 0);
  const mirrored = mirroredNow();
  const now = Date.now();
  for (const p of fresh) if (p.runningAt && !p.coveredAt && mirrored(p.ip!)) p.coveredAt = now;
}
let quietSince = Date.now();
let seen = calls(restartFrom).mutating;
while (Date.now() - quietSince < 30_000 && Date.now() - t0 < 1800_000) {
  await observeRestart();
  const m = calls(restartFrom).mutating;
  if (m !== seen) [seen, quietSince] = [m, Date.now()];
  await sleep(500);
}
const restart = calls(restartFrom);
const afterRestart = await policies();
figure(
  "after the restart, policies Ready",
  afterRestart.ready,
  `of ${POLICIES} (others: ${afterRestart.reasons})`,
);
figure("after the restart, pods mirrored", afterRestart.mirrored, `of ${afterRestart.selected} selected`);
const lat = fresh.filter((p) => p.coveredAt && p.runningAt).map((p) => p.coveredAt! - p.runningAt!);
figure("restart pods", victims.length, `at ${RESTART_RATE}/s`);
figure("restart covered", lat.length, `of ${fresh.length}`);
figure("restart Running → covered p50", quantile(lat, 0.5) / 1000, "s");
figure("restart Running → covered p99", quantile(lat, 0.99) / 1000, "s");
figure("restart mutating calls", restart.mutating, "calls");
for (const [a, n] of [...restart.byAction].sort()) figure(`restart calls ${a}`, n, "calls");
// Two calls a replaced pod is a bound only where each replacement lands on its old pod's ENI; the
// direct edit below is the bound for any order of work.
figure("restart mutating calls / 2 per restarted pod", restart.mutating / (2 * victims.length), "×");
// The least any operator could call to go from the owned filters and sessions before the restart
// to those after it, knowing the end from the start and making no step between: per filter, the
// fewest rule edits between its rules then and now (ADR 12); one call per filter or session made
// or removed, and a made filter's rules. A lower bound for any order of work.
const ownedAfter = ownedState();
const direct = directCalls(ownedBefore, ownedAfter);
figure("restart calls of the direct edit (before → after)", direct, "calls");
figure("restart mutating calls / the direct edit", restart.mutating / direct, "×");
restartBreakdown({ from: restartFrom, mutating: restart.mutating }, ownedBefore, ownedAfter);
figure("restart Describe calls per pod event", restart.describe / (2 * victims.length), "calls");
figure("restart RequestLimitExceeded", restart.throttled, "calls");
figure(
  "restart operator CPU per pod event",
  ((procStat(pid).cpuS - restartCpu0) / (2 * victims.length)) * 1000,
  "ms",
);
const plan1 = await planSeconds().catch(() => new Map());
const per = (k: string): number => {
  const a = plan0.get(k) ?? { sum: 0, count: 0 };
  const b = plan1.get(k) ?? { sum: 0, count: 0 };
  return b.count > a.count ? (b.sum - a.sum) / (b.count - a.count) : NaN;
};
const full = plan1.get("full");
figure("planning per incremental plan", per("incremental") * 1000, "ms");
const inc0 = plan0.get("incremental") ?? { sum: 0, count: 0 };
const inc1 = plan1.get("incremental") ?? { sum: 0, count: 0 };
figure("planning per pod event", ((inc1.sum - inc0.sum) / (2 * victims.length)) * 1000, "ms");
figure("planning per full plan", full && full.count > 0 ? (full.sum / full.count) * 1000 : NaN, "ms");

clearInterval(sampler);
/** Copies of the owned filters (by id) and session ids, as the emulator holds them now. */
function ownedState(): {
  filters: Map<string, MirrorFilter>;
  sessions: Set<string>;
  filtersOn: Map<string, string[]>;
} {
  const filters = new Map<string, MirrorFilter>();
  for (const f of sim.state.filters.values())
    if (isOwnedBy(f.tags, CLUSTER)) filters.set(f.trafficMirrorFilterId, structuredClone(f));
  const sessions = new Set<string>();
  const filtersOn = new Map<string, string[]>(); // ENI → the filters of its owned sessions
  for (const x of sim.state.sessions.values()) {
    if (!isOwnedBy(x.tags, CLUSTER)) continue;
    sessions.add(x.trafficMirrorSessionId);
    const on = filtersOn.get(x.networkInterfaceId) ?? [];
    on.push(x.trafficMirrorFilterId);
    filtersOn.set(x.networkInterfaceId, on);
  }
  return { filters, sessions, filtersOn };
}

/** How many of the owned sessions on the ENI holding `ip` mirror its inbound traffic. */
function sessionsMirroring(state: ReturnType<typeof ownedState>, ip: string): number {
  const on = state.filtersOn.get(heldBy.get(parseIp(ip)!) ?? "") ?? [];
  return on.filter((id) => {
    const f = state.filters.get(id);
    return f !== undefined && mirrorsInboundTo(f, ip);
  }).length;
}

function directCalls(a: ReturnType<typeof ownedState>, b: ReturnType<typeof ownedState>): number {
  const rules = (f: MirrorFilter): FilterRule[] => [...f.ingressRules, ...f.egressRules];
  let n = 0;
  for (const [id, f] of b.filters) {
    const was = a.filters.get(id);
    n += was ? planRuleEdits(rules(was), rulesOf(f)).length : 1 + rules(f).length;
  }
  for (const id of a.filters.keys()) if (!b.filters.has(id)) n++;
  for (const id of b.sessions) if (!a.sessions.has(id)) n++;
  for (const id of a.sessions) if (!b.sessions.has(id)) n++;
  return n;
}

/**
 * Where the restart's rule calls went: per filter that was there before and after, its calls
 * against its own direct edit (what the order of work cost); filters made and removed; and where
 * each replacement's address was (the old pod's own, another on the old pod's ENI, another ENI).
 */
function restartBreakdown(
  { from, mutating }: { from: number; mutating: number },
  a: ReturnType<typeof ownedState>,
  b: ReturnType<typeof ownedState>,
): void {
  const rules = (f: MirrorFilter): FilterRule[] => [...f.ingressRules, ...f.egressRules];
  const callsOn = new Map<string, number>();
  for (const c of sim.calls.slice(from))
    if (c.code === "OK" && c.filterId) callsOn.set(c.filterId, (callsOn.get(c.filterId) ?? 0) + 1);
  const kept = { filters: 0, over: 0, calls: 0, direct: 0 };
  const made = { filters: 0, calls: 0, rules: 0 };
  for (const [id, f] of b.filters) {
    const was = a.filters.get(id);
    const n = callsOn.get(id) ?? 0;
    if (!was) {
      made.filters++;
      made.calls += n;
      made.rules += rules(f).length;
      continue;
    }
    const d = planRuleEdits(rules(was), rulesOf(f)).length;
    if (n === 0 && d === 0) continue;
    kept.filters++;
    kept.calls += n;
    kept.direct += d;
    if (n > d) kept.over++;
  }
  const gone = { filters: 0, calls: 0 };
  for (const id of a.filters.keys())
    if (!b.filters.has(id)) {
      gone.filters++;
      gone.calls += callsOn.get(id) ?? 0;
    }
  figure(
    "restart filters edited",
    kept.filters,
    `(there before and after; ${kept.over} with more calls than their direct edit)`,
  );
  figure(
    "restart rule calls on them / their direct edit",
    kept.calls / kept.direct,
    `× (${kept.calls} / ${kept.direct})`,
  );
  figure("restart filters made", made.filters, `(${made.calls} rule calls for ${made.rules} rules)`);
  figure("restart filters removed", gone.filters, `(${gone.calls} rule calls on them first)`);
  const eniOf = (ip: string): string | undefined => heldBy.get(parseIp(ip)!);
  const where = { own: 0, sameEni: 0, otherEni: 0 };
  // What any operator must call when each pod event is applied as it comes (both directions
  // mirrored, so each filter change is a rule per direction), per filter the pod is in (a pod two
  // policies select is in two sessions' filters): nothing for a replacement on the old pod's own
  // address; one rewrite per direction for one on the old pod's ENI (the held departure rewritten
  // in place); on another ENI the arrival's filter and the departure's filter change apart, a rule
  // per direction each. An address that falls inside a block the filter keeps costs less, so this
  // is an estimate, not a proof. (The direct edit above goes from the first state to the last at
  // once, past the states in between, which each pod's coverage needs.)
  let online = 0;
  let twice = 0;
  victims.forEach((v, k) => {
    const r = fresh[k]!;
    if (!v.ip || !r.ip) return;
    const [was, now] = [sessionsMirroring(a, v.ip), sessionsMirroring(b, r.ip)];
    if (Math.max(was, now) > 1) twice++;
    if (v.ip === r.ip) where.own++;
    else if (eniOf(v.ip) === eniOf(r.ip)) {
      where.sameEni++;
      online += 2 * Math.max(was, now);
    } else {
      where.otherEni++;
      online += 2 * was + 2 * now;
    }
  });
  // The old pod is deleted as its replacement is created: a held departure (ADR 23) meets the
  // arrival only if the replacement runs within the grace.
  const started = fresh.filter((p) => p.runningAt && p.createdAt).map((p) => p.runningAt! - p.createdAt!);
  figure("restart replacement created → Running p50", quantile(started, 0.5) / 1000, "s");
  figure("restart replacement created → Running p90", quantile(started, 0.9) / 1000, "s");
  figure("restart replacements with the old pod's address", where.own, "pods");
  figure("restart replacements on the old pod's ENI, another address", where.sameEni, "pods");
  figure("restart replacements on another ENI", where.otherEni, "pods");
  figure("restart replacements in more than one session's filter", twice, "pods");
  figure("restart calls a replacement needs applied as it comes (0, 2 or 4 a filter)", online, "calls");
  figure("restart mutating calls / what replacements need applied as they come", mutating / online, "×");
}

// SCALE_TRACE=<file> writes the restart's pod events and successful calls (with times), and the
// ENI of each filter, for taking the restart apart offline.
if (process.env["SCALE_TRACE"]) {
  const eniOfFilter: Record<string, string> = {};
  for (const s of [ownedBefore, ownedAfter])
    for (const [eni, ids] of s.filtersOn) for (const id of ids) eniOfFilter[id] = eni;
  const pod = (p: PodRec, deletedAt?: number) => ({
    ...p,
    eni: p.ip ? heldBy.get(parseIp(p.ip)!) : undefined,
    deletedAt,
  });
  const rulesBy = (s: ReturnType<typeof ownedState>) =>
    Object.fromEntries([...s.filters].map(([id, f]) => [id, [...f.ingressRules, ...f.egressRules]]));
  writeFileSync(
    process.env["SCALE_TRACE"],
    JSON.stringify({
      t0,
      calls: sim.calls.slice(restartFrom).filter((c) => c.code === "OK"),
      victims: victims.map((v, k) => pod(v, t0 + (k * 1000) / RESTART_RATE)),
      fresh: fresh.map((p) => pod(p)),
      eniOfFilter,
      before: rulesBy(ownedBefore),
      after: rulesBy(ownedAfter),
    }),
  );
}
if (process.env["SCALE_OUT"])
  writeFileSync(process.env["SCALE_OUT"], JSON.stringify({ figures, series }, null, 1));
op.kill("SIGTERM");
await Promise.race([new Promise((r) => op.once("exit", r)), sleep(10_000)]);
if (op.exitCode === null) op.kill("SIGKILL");
await sim.stop();
await cp.stop();
if (!process.env["SCALE_KEEP"]) rmSync(stateDir, { recursive: true, force: true });
else note(`kept ${stateDir} (operator log ${opLogPath})`);
process.exit(0);
