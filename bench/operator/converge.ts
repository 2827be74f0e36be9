// A large first converge: a policy selecting one pod on each of N nodes, to an NLB target, created
// on an empty account. Times from the policy's creation to the first session in EC2, the first
// status the policy shows (SessionsProgrammed), the last session and Ready; and, for a pod created
// once a third of the sessions exist, from Running to a session covering it. Also the converge
// time against what AWS's per-action buckets allow for the calls it made (the slowest action's
// bucket: its burst, then its refill rate). Real control plane (kwok), the EC2 emulator with AWS's
// default buckets, one per action; the operator in-process with its default settings.
// Run: node bench/operator/converge.ts [nodes=100] [runs=3]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import { AWS_CATEGORY_BUCKETS } from "../../src/aws/rate-limit.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../../test/ec2-sim/server.ts";
import { startControlPlane } from "../../test/harness/controlplane.ts";
import { installCrds } from "../../test/harness/crds.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import { createEksNodes, createNamespaces, createPolicy, until } from "../../test/fixtures/scenario.ts";
import { startTestOperator } from "../../test/fixtures/operator.ts";
import { makeWorld } from "../../test/fixtures/world.ts";

const NODES = Number(process.argv[2] ?? 100);
const RUNS = Number(process.argv[3] ?? 3);
const NS = "converge";
const NLB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mirror/0123456789abcdef";

interface Run {
  firstSession: number;
  firstStatus: number;
  lastSession: number;
  ready: number;
  lateCovered: number;
  allowed: number;
  throttled: number;
}

async function createPod(rest: KubeRest, node: number, name: string): Promise<void> {
  await rest.request({
    method: "POST",
    path: `/api/v1/namespaces/${NS}/pods`,
    body: {
      metadata: { name, labels: { app: "converge" } },
      spec: { nodeName: eksNodeSpec(node).name, containers: [{ name: "c", image: "i" }] },
    },
    what: `creating pod ${name}`,
  });
}

async function runningIp(rest: KubeRest, name: string): Promise<string> {
  return until(
    `pod ${name} running`,
    async () => {
      const p = await rest.get<{ status?: { phase?: string; podIP?: string } }>(
        `/api/v1/namespaces/${NS}/pods/${name}`,
        "pod",
      );
      return p.status?.phase === "Running" ? p.status.podIP : undefined;
    },
    120_000,
  );
}

/** A control plane with N nodes and their pods, the emulator, an NLB target, and the operator. */
async function setup() {
  const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-converge-"));
  const cp = await startControlPlane({ stateDir });
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  const rest = new KubeRest(kc);
  const sim = await startEc2Sim({ knobs: { throttle: { model: "per-action" } } });
  seed(sim.state, makeWorld({ nodes: NODES, podsPerNode: 0, collectors: [] }).inventory);
  await createEksNodes(rest, { first: 0, count: NODES, collectors: [], pool: "converge" });
  await installCrds(rest);
  await createNamespaces(rest, ["converge-system", NS]);
  await rest
    .request({
      method: "POST",
      path: `/api/v1/namespaces/${NS}/serviceaccounts`,
      body: { metadata: { name: "default" } },
      what: "sa",
    })
    .catch(() => undefined);
  for (let i = 0; i < NODES; i++) await createPod(rest, i, `pod-${i}`);
  for (let i = 0; i < NODES; i++) await runningIp(rest, `pod-${i}`);
  await rest.request({
    method: "POST",
    path: `/apis/${API_VERSION}/trafficmirrortargets`,
    what: "target",
    body: {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorTarget",
      metadata: { name: "nlb" },
      spec: { networkLoadBalancerArn: NLB, allowedNamespaces: { from: "All" } },
    },
  });
  const { runtime } = await startTestOperator({
    kc,
    rest,
    ec2Url: sim.url,
    cluster: "converge",
    namespace: "converge-system",
    concurrency: 4,
    resyncMs: 300_000,
  });
  await sleep(2_000);
  return { stateDir, cp, rest, sim, runtime };
}

async function once(): Promise<Run> {
  const { stateDir, cp, rest, sim, runtime } = await setup();
  const callsBefore = sim.calls.length;
  const t0 = Date.now();
  await createPolicy(rest, {
    namespace: NS,
    name: "all",
    spec: { podSelector: { matchLabels: { app: "converge" } }, targetRef: { name: "nlb" } },
  });
  const at = await watch(rest, sim, t0);
  const calls = sim.calls.slice(callsBefore);
  const byAction = new Map<string, number>();
  for (const c of calls)
    if (c.code === "OK" && /^(Create|Delete|Modify)/.test(c.action))
      byAction.set(c.action, (byAction.get(c.action) ?? 0) + 1);
  // What the account's buckets allow: each action's calls past its burst at its refill rate.
  const b = AWS_CATEGORY_BUCKETS.mutating;
  const allowed = Math.max(0, ...[...byAction.values()].map((n) => ((n - b.burst) / b.ratePerSecond) * 1000));
  const throttled = calls.filter((c) => c.code === "RequestLimitExceeded").length;
  await runtime.stop();
  await sim.stop();
  await cp.stop();
  rmSync(stateDir, { recursive: true, force: true });
  return { ...(at as Run), allowed, throttled };
}

async function policyConditions(rest: KubeRest): Promise<{ type: string; status: string }[]> {
  const p = await rest.get<{ status?: PolicyStatus }>(
    `/apis/${API_VERSION}/namespaces/${NS}/trafficmirrorpolicies/all`,
    "policy",
  );
  return p.status?.conditions ?? [];
}

/** Polls EC2 and the policy until Ready, all sessions made and the late pod covered. */
async function watch(rest: KubeRest, sim: Ec2Sim, t0: number): Promise<Partial<Run>> {
  const sessions = () => [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, "converge"));
  const covered = (ip: string): boolean =>
    sessions().some((s) =>
      (sim.state.filters.get(s.trafficMirrorFilterId)?.ingressRules ?? []).some(
        (r) => r.destinationCidrBlock === `${ip}/32`,
      ),
    );
  const at: Partial<Run> = {};
  let late: { ip?: string; running?: number } | undefined;
  for (;;) {
    const now = Date.now() - t0;
    const n = sessions().length;
    if (n > 0) at.firstSession ??= now;
    if (n >= NODES) at.lastSession ??= now;
    const conditions = await policyConditions(rest);
    if (conditions.some((c) => c.type === "SessionsProgrammed")) at.firstStatus ??= now;
    if (conditions.some((c) => c.type === "Ready" && c.status === "True")) at.ready ??= now;
    if (!late && n >= NODES / 3) {
      late = {};
      await createPod(rest, 0, "late");
      void runningIp(rest, "late").then((ip) => {
        late!.ip = ip;
        late!.running = Date.now() - t0;
      });
    }
    if (late?.ip && at.lateCovered === undefined && covered(late.ip)) at.lateCovered = now - late.running!;
    if (at.ready !== undefined && at.lastSession !== undefined && at.lateCovered !== undefined) return at;
    if (now > 1_800_000) throw new Error("not converged in 30 minutes");
    await sleep(100);
  }
}

const runs: Run[] = [];
for (let r = 0; r < RUNS; r++) runs.push(await once());
const median = (f: (r: Run) => number): number => {
  const xs = runs.map(f).sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
};
const s = (ms: number): string => (ms / 1000).toFixed(1);
console.log(`converge of ${NODES} sessions (one pod per node, NLB target), median of ${RUNS} runs:`);
console.log(`time to first session: ${s(median((r) => r.firstSession))} s`);
console.log(`time to first status: ${s(median((r) => r.firstStatus))} s`);
console.log(`time to last session: ${s(median((r) => r.lastSession))} s`);
console.log(`time to Ready: ${s(median((r) => r.ready))} s`);
console.log(
  `converge against the per-action buckets: ${median((r) => r.lastSession / Math.max(r.allowed, 1)).toFixed(2)} x (they allow ${s(median((r) => r.allowed))} s)`,
);
console.log(`pod created mid-converge, Running → covered: ${s(median((r) => r.lateCovered))} s`);
console.log(`RequestLimitExceeded: ${runs.map((r) => r.throttled).join(", ")}`);
process.exit(0);
