// Time from a pod becoming Running to its mirror session existing, at a steady churn of pods, and
// EC2 calls per converged session against the lower bound. Real control plane (kwok), the EC2
// emulator, the operator in-process with AWS's default rate limits.
// Run: node bench/operator/churn.ts [seconds=30] [podsPerSecond=5]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { isOwnedBy } from "../../src/api/tags.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { eniHolds, filterAccepts } from "../../test/ec2-sim/dataplane.ts";
import { seed, startEc2Sim } from "../../test/ec2-sim/server.ts";
import { startControlPlane } from "../../test/harness/controlplane.ts";
import { installCrds } from "../../test/harness/crds.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
} from "../../test/fixtures/scenario.ts";
import { startTestOperator } from "../../test/fixtures/operator.ts";
import { makeWorld } from "../../test/fixtures/world.ts";

const SECONDS = Number(process.argv[2] ?? 30);
const RATE = Number(process.argv[3] ?? 5);
const NODES = 40; // 1 collector + 39 workers, 78 source ENIs; pods spread over them
const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-churn-"));
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
// Every node its own collector-capacity: 4 collectors take 40 sources.
const collectors = [0, 1, 2, 3, 4, 5, 6, 7];
const sim = await startEc2Sim({
  knobs: {
    // AWS's default buckets, one per action (docs/aws-rate-limits.md). The figures in
    // docs/benchmarks.md up to the per-action change were measured with one bucket per category:
    // { mutating: { burst: 50, ratePerSecond: 5 }, describe: { burst: 100, ratePerSecond: 20 } }.
    throttle: { model: "per-action" },
  },
});
seed(sim.state, makeWorld({ nodes: NODES, podsPerNode: 0, collectors }).inventory);
await createEksNodes(rest, { first: 0, count: NODES, collectors, pool: "churn" });
await installCrds(rest);
await createNamespaces(rest, ["churn-system", "churn"]);
await rest
  .request({
    method: "POST",
    path: "/api/v1/namespaces/churn/serviceaccounts",
    body: { metadata: { name: "default" } },
    what: "sa",
  })
  .catch(() => undefined);
await createCollectorTarget(rest, "c");
await createPolicy(rest, {
  namespace: "churn",
  name: "p",
  spec: { podSelector: { matchLabels: { app: "churn" } }, targetRef: { name: "c" } },
});
const { runtime, metrics } = await startTestOperator({
  kc,
  rest,
  ec2Url: sim.url,
  cluster: "churn",
  namespace: "churn-system",
  concurrency: 4,
  resyncMs: 300_000,
  debounceMs: 50,
});
await sleep(2_000);

// Pods are created with nodeName set (as the scheduler would) and become Running through kwok.
const workers = Array.from({ length: NODES }, (_, i) => i).filter((i) => !collectors.includes(i));
const created = new Map<string, { ip?: string; runningAt?: number; mirroredAt?: number }>();
const total = SECONDS * RATE;
const callsBefore = sim.calls.length;
const t0 = Date.now();
for (let n = 0; n < total; n++) {
  const name = `pod-${n}`;
  const node = eksNodeSpec(workers[n % workers.length]!).name;
  created.set(name, {});
  void rest.request({
    method: "POST",
    path: "/api/v1/namespaces/churn/pods",
    body: {
      metadata: { name, labels: { app: "churn" } },
      spec: { nodeName: node, containers: [{ name: "c", image: "i" }] },
    },
    what: "pod",
  });
  const due = t0 + ((n + 1) * 1000) / RATE;
  // Poll while waiting for the next pod: record Running times and mirrored times.
  while (Date.now() < due) {
    await observe();
    await sleep(20);
  }
}
const settleBy = Date.now() + 60_000;
while ([...created.values()].some((p) => !p.mirroredAt) && Date.now() < settleBy) {
  await observe();
  await sleep(50);
}

async function observe(): Promise<void> {
  const pods = await rest.get<{
    items: { metadata: { name: string }; status?: { phase?: string; podIP?: string; startTime?: string } }[];
  }>("/api/v1/namespaces/churn/pods", "pods");
  const now = Date.now();
  for (const p of pods.items) {
    const rec = created.get(p.metadata.name);
    if (rec && !rec.runningAt && p.status?.phase === "Running" && p.status.podIP) {
      rec.runningAt = now;
      rec.ip = p.status.podIP;
    }
  }
  // Covered: an owned session on the ENI holding the pod's address mirrors its inbound traffic
  // (the filter evaluated as the emulator's data plane does: filters may reject inside a block).
  const owned = [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, "churn"));
  for (const rec of created.values()) {
    if (!rec.runningAt || rec.mirroredAt || !rec.ip) continue;
    const packet = { src: "10.9.0.1", dst: rec.ip };
    const covered = owned.some((s) => {
      const eni = sim.state.enis.get(s.networkInterfaceId);
      return eni !== undefined && eniHolds(eni, rec.ip!) && filterAccepts(sim.state, s, packet, "ingress");
    });
    if (covered) rec.mirroredAt = now;
  }
}

const lat = [...created.values()]
  .filter((p) => p.mirroredAt && p.runningAt)
  .map((p) => p.mirroredAt! - p.runningAt!)
  .sort((a, b) => a - b);
const q = (f: number): number => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))] ?? NaN;
const mutating = sim.calls
  .slice(callsBefore)
  .filter((c) => /^(Create|Delete|Modify)/.test(c.action) && c.code === "OK").length;
const describes = sim.calls.slice(callsBefore).filter((c) => c.action.startsWith("Describe")).length;
const throttled = sim.calls.slice(callsBefore).filter((c) => c.code === "RequestLimitExceeded").length;
const sessions = [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, "churn")).length;
const byAction = new Map<string, number>();
for (const c of sim.calls.slice(callsBefore))
  if (c.action.startsWith("Describe")) byAction.set(c.action, (byAction.get(c.action) ?? 0) + 1);
const reasons = (await metrics.inventoryDescribes.get()).values.map((v) => `${v.labels.reason} ${v.value}`);
console.log(`pods: ${total} at ${RATE}/s over ${SECONDS} s; mirrored: ${lat.length}`);
console.log(`Running → mirrored: p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${lat.at(-1)} ms`);
console.log(
  `EC2 calls: ${mutating} successful mutating, ${describes} describe, ${throttled} throttled; ${sessions} sessions`,
);
console.log(
  `describe calls by action: ${[...byAction].map(([a, n]) => `${a} ${n}`).join(", ") || "none"}; inventory describes since start by reason: ${reasons.join(", ")}`,
);
await runtime.stop();
await sim.stop();
await cp.stop();
rmSync(stateDir, { recursive: true, force: true });
process.exit(0);
