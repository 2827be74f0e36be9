// The operator at scale, as a process: a real control plane with kwok nodes, the EC2 emulator at
// AWS's default buckets (one per action) with call latency, one NLB target (no source cap),
// policies spread over namespaces so that every pod is selected by one of them. Three phases:
// - converge from an empty account: time, its ratio to what the per-action buckets allow for the
//   calls it made, RequestLimitExceeded, time to the first session and to the first status, and
//   Running → covered for pods created during the converge;
// - idle: Describe calls per minute by action, the operator's RSS and CPU;
// - a rolling restart (a pod deleted and another created, on another node, per slot) at a rate:
//   Running → covered p50/p99, mutating calls against the lower bound (two rule calls per new pod),
//   Describe calls per pod event, the operator's CPU per pod event.
// Nodes alternate between /28 prefixes and secondary IPs (two ENIs each, the fixtures' address
// plan: at most 768 nodes). Prints one line per figure, `name: value unit`.
// Run: node bench/scale/run.ts [nodes=200] [pods=4000] [policies=20] [idleSeconds=300]
//        [restartPods=pods/20] [restartRate=20] [latencyMs=100]
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import type { Ec2Inventory } from "../../src/api/inventory.ts";
import { API_VERSION } from "../../src/api/resources.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import { AWS_CATEGORY_BUCKETS } from "../../src/aws/rate-limit.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { parseCidr, parseIp, size } from "../../src/plan/ipv4.ts";
import { seed, startEc2Sim } from "../../test/ec2-sim/server.ts";
import { freePorts, REPO_ROOT, startControlPlane } from "../../test/harness/controlplane.ts";
import { installCrds } from "../../test/harness/crds.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import { createEksNodes, createNamespaces, operatorEnv } from "../../test/fixtures/scenario.ts";
import { makeWorld } from "../../test/fixtures/world.ts";

const NODES = Number(process.argv[2] ?? 200);
const PODS = Number(process.argv[3] ?? 4000);
const POLICIES = Number(process.argv[4] ?? 20);
const IDLE_S = Number(process.argv[5] ?? 300);
const RESTART = Number(process.argv[6] ?? Math.round(PODS / 20));
const RATE = Number(process.argv[7] ?? 20);
const LATENCY = Number(process.argv[8] ?? 100);
const NAMESPACES = Math.max(1, Math.ceil(POLICIES / 5));
const APPS = Math.ceil(POLICIES / NAMESPACES);
const DURING = 20; // pods created during the converge
const CLUSTER = "scale";
const started = Date.now();
const note = (m: string): void => console.error(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${m}`);
const figure = (name: string, value: number | string, unit = ""): void =>
  console.log(
    `${name}: ${typeof value === "number" ? Math.round(value * 100) / 100 : value}${unit ? ` ${unit}` : ""}`,
  );

// ---- the cluster and the account
const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-scale-"));
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
const sim = await startEc2Sim({ knobs: { throttle: { model: "per-action" }, latencyMs: LATENCY } });
const inventory: Ec2Inventory = {
  instances: [],
  networkInterfaces: [],
  targets: [],
  filters: [],
  sessions: [],
};
for (let i = 0; i < NODES; i++) {
  const w = makeWorld({
    nodes: 1,
    firstIndex: i,
    podsPerNode: 0,
    collectors: [],
    addressing: i % 2 ? "secondary" : "prefix",
  });
  inventory.instances.push(...w.inventory.instances);
  inventory.networkInterfaces.push(...w.inventory.networkInterfaces);
}
seed(sim.state, inventory);
await createEksNodes(rest, { first: 0, count: NODES, collectors: [], pool: "scale" });
await installCrds(rest);
const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `ns-${i}`);
await createNamespaces(rest, ["tmo-system", ...namespaces]);
for (const ns of namespaces)
  await rest
    .request({
      method: "POST",
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: "default" } },
      what: "service account",
    })
    .catch(() => undefined);

interface Pod {
  ns: string;
  name: string;
  node: number;
  app: string;
  ip?: string;
  runningAt?: number;
  coveredAt?: number;
}
// Pod k: namespace k mod N, app (k div N) mod APPS; policy k selects its namespace's app k div N.
const podOf = (k: number, name: string, node: number): Pod => ({
  ns: namespaces[k % NAMESPACES]!,
  name,
  node,
  app: `app-${Math.floor(k / NAMESPACES) % APPS}`,
});
const createPod = (p: Pod): Promise<unknown> =>
  rest.request({
    method: "POST",
    path: `/api/v1/namespaces/${p.ns}/pods`,
    body: {
      metadata: { name: p.name, labels: { app: p.app } },
      spec: {
        nodeName: eksNodeSpec(p.node).name,
        containers: [{ name: "c", image: "i" }],
        terminationGracePeriodSeconds: 0,
      },
    },
    what: `creating pod ${p.name}`,
  });
async function inParallel<T>(items: readonly T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}
const pods = Array.from({ length: PODS }, (_, k) => podOf(k, `p-${k}`, k % NODES));
await inParallel(pods, 16, createPod);
type PodList = {
  items: { metadata: { name: string; namespace: string }; status?: { phase?: string; podIP?: string } }[];
};
async function runningPods(): Promise<Map<string, string>> {
  const l = await rest.get<PodList>("/api/v1/pods", "pods");
  return new Map(
    l.items.flatMap((p) =>
      p.status?.phase === "Running" && p.status.podIP
        ? [[`${p.metadata.namespace}/${p.metadata.name}`, p.status.podIP]]
        : [],
    ),
  );
}
while ((await runningPods()).size < PODS) await sleep(2_000);
await rest.request({
  method: "POST",
  path: `/apis/${API_VERSION}/trafficmirrortargets`,
  what: "target",
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
for (let k = 0; k < POLICIES; k++)
  await rest.request({
    method: "POST",
    path: `/apis/${API_VERSION}/namespaces/${namespaces[k % NAMESPACES]}/trafficmirrorpolicies`,
    what: "policy",
    body: {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorPolicy",
      metadata: { name: `pol-${k}` },
      spec: {
        podSelector: { matchLabels: { app: `app-${Math.floor(k / NAMESPACES)}` } },
        targetRef: { name: "nlb" },
      },
    },
  });
note(`${NODES} nodes, ${PODS} pods running, ${POLICIES} policies in ${NAMESPACES} namespaces`);

// ---- measurement
const owned = () => [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, CLUSTER));
/** Whether a session of the cluster copies `ip` (an accepting ingress rule covers it). */
function coverage(): (ip: string) => boolean {
  const ranges: [number, number][] = [];
  for (const s of owned())
    for (const r of sim.state.filters.get(s.trafficMirrorFilterId)?.ingressRules ?? []) {
      const c = r.action === "accept" ? parseCidr(r.destinationCidrBlock) : undefined;
      if (c) ranges.push([c.base, c.base + size(c.len) - 1]);
    }
  return (ip) => {
    const n = parseIp(ip) ?? -1;
    return ranges.some(([a, b]) => n >= a && n <= b);
  };
}
function procStat(pid: number): { rssMiB: number; cpuS: number } {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { rssMiB: rss / 1024, cpuS: (Number(f[11]) + Number(f[12])) / 100 };
}
type Conditions = { type: string; status: string; observedGeneration?: number }[];
async function policies(): Promise<{ ready: number; withStatus: number; programmed: number }> {
  const l = await rest.get<{
    items: { metadata: { generation: number }; status?: { conditions?: Conditions } }[];
  }>(`/apis/${API_VERSION}/trafficmirrorpolicies`, "policies");
  let ready = 0;
  let withStatus = 0;
  let programmed = 0;
  for (const p of l.items) {
    const cs = p.status?.conditions ?? [];
    const current = (c: Conditions[number]): boolean => c.observedGeneration === p.metadata.generation;
    if (cs.some((c) => c.type === "SessionsProgrammed")) withStatus++;
    if (cs.some((c) => c.type === "SessionsProgrammed" && c.status === "True" && current(c))) programmed++;
    if (
      cs.some(
        (c) => c.type === "Ready" && c.status === "True" && c.observedGeneration === p.metadata.generation,
      )
    )
      ready++;
  }
  return { ready, withStatus, programmed };
}
const calls = (from: number, to = sim.calls.length) => sim.calls.slice(from, to);
const mutating = (a: string): boolean => /^(Create|Delete|Modify)/.test(a);
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};
/** Records Running and covered times of `list`'s pods. */
async function observe(list: Pod[]): Promise<void> {
  const running = await runningPods();
  const covered = coverage();
  const now = Date.now();
  for (const p of list) {
    const ip = running.get(`${p.ns}/${p.name}`);
    if (ip && p.runningAt === undefined) {
      p.ip = ip;
      p.runningAt = now;
    }
    if (p.ip && p.coveredAt === undefined && covered(p.ip)) p.coveredAt = now;
  }
}

// ---- the operator
const ports = await freePorts(2);
const op = spawn(
  "setpriv",
  ["--pdeathsig", "SIGKILL", "--", process.execPath, "src/cmd/main.ts", "operator"],
  {
    cwd: REPO_ROOT,
    env: operatorEnv({
      kubeconfig: cp.kubeconfigPath,
      cluster: CLUSTER,
      namespace: "tmo-system",
      ec2: sim.url,
      ports,
      extra: { TMO_POD_NAME: "operator-0", TMO_LOG_LEVEL: "info" },
    }),
    stdio: [
      "ignore",
      openSync(join(stateDir, "operator.log"), "w"),
      openSync(join(stateDir, "operator.err"), "w"),
    ],
  },
);
const pid = op.pid!;

// ---- 1. converge from an empty account
const t0 = Date.now();
const c0 = sim.calls.length;
let firstSession: number | undefined;
let firstStatus: number | undefined;
const during: Pod[] = [];
for (;;) {
  const now = Date.now();
  if (firstSession === undefined && owned().length > 0) firstSession = now - t0;
  const ps = await policies();
  if (firstStatus === undefined && ps.withStatus > 0) firstStatus = now - t0;
  if (firstStatus !== undefined && during.length === 0) {
    // Pods arriving while the converge runs.
    for (let k = 0; k < DURING; k++) during.push(podOf(k, `during-${k}`, (k * 7) % NODES));
    await inParallel(during, 8, createPod);
  }
  await observe(during);
  // Done when every policy says its sessions are in place (a policy may still not be Ready: pods
  // left out by a limit, FilterTooLarge, are not the converge's to finish).
  if (ps.programmed === POLICIES && during.length > 0) break;
  if (now - t0 > 3_600_000) throw new Error("not converged within an hour");
  await sleep(1_000);
}
const convergeMs = Date.now() - t0;
const readyAtEnd = (await policies()).ready;
const conv = calls(c0);
const byAction = new Map<string, number>();
for (const c of conv)
  if (mutating(c.action) && c.code === "OK") byAction.set(c.action, (byAction.get(c.action) ?? 0) + 1);
const b = AWS_CATEGORY_BUCKETS.mutating;
const allowedS = Math.max(0, ...[...byAction.values()].map((n) => (n - b.burst) / b.ratePerSecond));
figure("converge time", convergeMs / 1000, "s");
figure("converge time against the per-action buckets", convergeMs / 1000 / Math.max(allowedS, 1), "x");
figure(
  "converge mutating calls",
  [...byAction.values()].reduce((x, y) => x + y, 0),
  "calls",
);
figure(
  "converge RequestLimitExceeded",
  conv.filter((c) => c.code === "RequestLimitExceeded").length,
  "calls",
);
figure("time to first session", (firstSession ?? NaN) / 1000, "s");
figure("time to first status", (firstStatus ?? NaN) / 1000, "s");
const duringLat = during.filter((p) => p.coveredAt !== undefined).map((p) => p.coveredAt! - p.runningAt!);
figure("pods created during the converge, covered", duringLat.length, `of ${DURING}`);
figure("pods created during the converge, Running → covered p50", quantile(duringLat, 0.5) / 1000, "s");
figure("policies Ready at the end of the converge", readyAtEnd, `of ${POLICIES}`);
figure("sessions", owned().length, "sessions");
figure("pods covered", [...(await runningPods()).values()].filter(coverage()).length, `of ${PODS + DURING}`);

// ---- 2. idle
const i0 = sim.calls.length;
const cpuIdle0 = procStat(pid).cpuS;
const rss: number[] = [];
const idleStart = Date.now();
while (Date.now() - idleStart < IDLE_S * 1000) {
  rss.push(procStat(pid).rssMiB);
  await sleep(5_000);
}
const idleMinutes = (Date.now() - idleStart) / 60_000;
const idleDescribes = new Map<string, number>();
for (const c of calls(i0))
  if (c.action.startsWith("Describe")) idleDescribes.set(c.action, (idleDescribes.get(c.action) ?? 0) + 1);
figure(
  "idle Describe calls per minute",
  [...idleDescribes.values()].reduce((x, y) => x + y, 0) / idleMinutes,
  "calls/min",
);
for (const [a, n] of [...idleDescribes].sort()) figure(`idle ${a} per minute`, n / idleMinutes, "calls/min");
figure("idle operator CPU", ((procStat(pid).cpuS - cpuIdle0) / (idleMinutes * 60)) * 100, "% of a core");
figure("operator RSS max", Math.max(...rss), "MiB");

// ---- 3. a rolling restart: a pod of the first half of the nodes deleted, one created on the second
// half (a fresh address, so no stale rule covers it), RESTART times at RATE a second.
const half = Math.floor(NODES / 2);
const victims = pods.filter((p) => p.node < half).slice(0, RESTART);
const fresh = victims.map((v, k) => ({ ...podOf(pods.indexOf(v), `r-${k}`, half + (k % (NODES - half))) }));
const r0 = sim.calls.length;
const cpuR0 = procStat(pid).cpuS;
const rStart = Date.now();
for (let k = 0; k < victims.length; k++) {
  const v = victims[k]!;
  void rest
    .request({
      method: "DELETE",
      path: `/api/v1/namespaces/${v.ns}/pods/${v.name}?gracePeriodSeconds=0`,
      what: "delete",
    })
    .catch(() => undefined);
  void createPod(fresh[k]!);
  while (Date.now() < rStart + ((k + 1) * 1000) / RATE) await sleep(20);
  if (k % RATE === 0) await observe(fresh);
}
// Until no mutating call for 20 s (the deleted pods' rules are gone too), and every new pod is
// covered or 60 s more have passed (a pod left out by a limit is never covered).
const settleBy = Date.now() + 600_000;
for (let n = -1, at = Date.now(); Date.now() < settleBy;) {
  await observe(fresh);
  const m = calls(r0).filter((c) => mutating(c.action)).length;
  if (m !== n) [n, at] = [m, Date.now()];
  const quiet = Date.now() - at;
  if (quiet > 20_000 && (fresh.every((p) => p.coveredAt !== undefined) || quiet > 60_000)) break;
  await sleep(500);
}
const rc = calls(r0);
const events = victims.length + fresh.length;
const lat = fresh.filter((p) => p.coveredAt !== undefined).map((p) => p.coveredAt! - p.runningAt!);
const mutatingOk = rc.filter((c) => mutating(c.action) && c.code === "OK").length;
figure("rolling restart pods", fresh.length, `pods at ${RATE}/s`);
figure("rolling restart covered", lat.length, "pods");
figure("rolling restart Running → covered p50", quantile(lat, 0.5) / 1000, "s");
figure("rolling restart Running → covered p99", quantile(lat, 0.99) / 1000, "s");
figure("rolling restart mutating calls against the lower bound", mutatingOk / (2 * fresh.length), "x");
figure(
  "rolling restart Describe calls per pod event",
  rc.filter((c) => c.action.startsWith("Describe")).length / events,
  "calls",
);
figure("rolling restart operator CPU per pod event", ((procStat(pid).cpuS - cpuR0) * 1000) / events, "ms");
figure(
  "rolling restart RequestLimitExceeded",
  rc.filter((c) => c.code === "RequestLimitExceeded").length,
  "calls",
);

op.kill("SIGTERM");
await Promise.race([new Promise((r) => op.once("exit", r)), sleep(10_000)]);
if (op.exitCode === null) op.kill("SIGKILL");
await sim.stop();
await cp.stop();
if (!process.env["SCALE_KEEP"]) rmSync(stateDir, { recursive: true, force: true });
process.exit(0);
