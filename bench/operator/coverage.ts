// Coverage: from a pod becoming Running to its first packet kept by the collector, at a steady
// arrival of pods, in one selection mode. Real control plane (kwok nodes and pods), the EC2
// emulator at AWS's per-action buckets with its data plane sending each running pod's traffic, the
// operator and the collector as processes (the collector following the map through the
// apiserver). A packet counts when the collector keeps it for the policy: the benchmark reads the
// collector's PCAP-over-IP stream, which carries exactly the kept packets as they are written.
// Also: AWS mutating calls per pod event (pods arriving on ENIs that already have the session).
// In Auto mode the run starts once every ENI's filter has been tightened to pod-precise (the
// operator tightens after 30 s of quiet here, longer than the gap between pods on an ENI), so the figures include loosening each ENI again.
// Run: node bench/operator/coverage.ts [seconds=20] [podsPerSecond=5] [mode=Pod|Eni|Auto]
import { mkdtempSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { formatIp } from "../../src/plan/ipv4.ts";
import type { SyntheticPacket } from "../../test/ec2-sim/packets.ts";
import { seed, startEc2Sim } from "../../test/ec2-sim/server.ts";
import { freePorts, REPO_ROOT, startControlPlane } from "../../test/harness/controlplane.ts";
import { installCrds } from "../../test/harness/crds.ts";
import { startProcess, stopProcess } from "../../test/harness/processes.ts";
import { startCollectorProcess } from "../../test/fixtures/collector.ts";
import { eksNodeSpec } from "../../test/fixtures/eks.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  operatorEnv,
  until,
} from "../../test/fixtures/scenario.ts";
import { COLLECTOR_LABEL, makeWorld } from "../../test/fixtures/world.ts";

const SECONDS = Number(process.argv[2] ?? 20);
const RATE = Number(process.argv[3] ?? 5);
const MODE = process.argv[4] ?? "Pod";
if (MODE !== "Pod" && MODE !== "Eni" && MODE !== "Auto")
  throw new Error(`mode must be Pod, Eni or Auto, not ${MODE}`);
const NODES = 40; // 8 collectors (10 sources each) and 32 workers with 2 ENIs each
const COLLECTORS = [0, 1, 2, 3, 4, 5, 6, 7];
const CLIENT = "10.0.200.11";
/** Pods already Running on each worker before the measurement: their ENIs carry the session. */
const WARM_PODS_PER_NODE = 1;

const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-coverage-"));
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
const sim = await startEc2Sim({ knobs: { throttle: { model: "per-action" } } });
const world = makeWorld({ nodes: NODES, podsPerNode: 0, collectors: COLLECTORS });
seed(sim.state, world.inventory);
await createEksNodes(rest, { first: 0, count: NODES, collectors: COLLECTORS, pool: "coverage" });
await installCrds(rest);
await createNamespaces(rest, ["coverage-system", "coverage"]);
await rest
  .request({
    method: "POST",
    path: "/api/v1/namespaces/coverage/serviceaccounts",
    body: { metadata: { name: "default" } },
    what: "sa",
  })
  .catch(() => undefined);
await createCollectorTarget(rest, "c", { collector: { nodeSelector: COLLECTOR_LABEL, selectionMode: MODE } });
await createPolicy(rest, {
  namespace: "coverage",
  name: "p",
  spec: { podSelector: { matchLabels: { app: "coverage" } }, targetRef: { name: "c" } },
});

const collector = await startCollectorProcess({
  stateDir,
  stream: true,
  env: {
    KUBECONFIG: cp.kubeconfigPath,
    TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `coverage-system/${VNI_MAP_CONFIGMAP}`,
  },
});
for (const i of COLLECTORS)
  sim.dataPlane.setEndpoint(world.inventory.networkInterfaces[2 * i]!.networkInterfaceId, {
    port: collector.port,
  });
const ports = await freePorts(2);
const operator = startProcess({
  name: "operator",
  command: process.execPath,
  args: [join(REPO_ROOT, "src/cmd/main.ts"), "operator"],
  stateDir,
  env: operatorEnv({
    kubeconfig: cp.kubeconfigPath,
    cluster: "coverage",
    namespace: "coverage-system",
    ec2: sim.url,
    ports,
    extra: { TMO_LEADER_ELECTION: "false", TMO_LOG_LEVEL: "warn", TMO_AUTO_TIGHTEN_AFTER_SECONDS: "30" },
  }),
});

/** Pods of the run by address: when they were seen Running and when their first packet was kept. */
interface Tracked {
  name: string;
  runningAt?: number;
  coveredAt?: number;
}
const byIp = new Map<string, Tracked>();
const created = new Map<string, Tracked>();

// The stream: a classic pcap header, then per packet a 16-byte record header and the frame.
const stream = connect(collector.streamPort!, "127.0.0.1");
let pending = Buffer.alloc(0);
let headerSeen = false;
stream.on("data", (chunk: Buffer) => {
  pending = Buffer.concat([pending, chunk]);
  if (!headerSeen && pending.length >= 24) {
    pending = pending.subarray(24);
    headerSeen = true;
  }
  const now = Date.now();
  while (headerSeen && pending.length >= 16) {
    const len = pending.readUInt32LE(8);
    if (pending.length < 16 + len) break;
    const frame = pending.subarray(16, 16 + len);
    pending = pending.subarray(16 + len);
    if (frame.length < 34) continue;
    const src = formatIp(frame.readUInt32BE(26));
    const t = byIp.get(src);
    if (t && t.coveredAt === undefined) t.coveredAt = now;
  }
});

async function observe(): Promise<void> {
  const pods = await rest.get<{
    items: { metadata: { name: string }; status?: { phase?: string; podIP?: string } }[];
  }>("/api/v1/namespaces/coverage/pods", "listing pods");
  const now = Date.now();
  for (const p of pods.items) {
    const t = created.get(p.metadata.name);
    if (t && t.runningAt === undefined && p.status?.phase === "Running" && p.status.podIP) {
      t.runningAt = now;
      byIp.set(p.status.podIP, t);
    }
  }
}

/** One packet from each running pod not yet covered, as its traffic would be. */
async function sendTraffic(): Promise<void> {
  const packets: SyntheticPacket[] = [];
  for (const [ip, t] of byIp)
    if (t.coveredAt === undefined)
      packets.push({ src: ip, dst: CLIENT, protocol: 6, srcPort: 8080, dstPort: 40000 });
  if (packets.length > 0) await sim.dataPlane.send(packets);
}

const workers = Array.from({ length: NODES }, (_, i) => i).filter((i) => !COLLECTORS.includes(i));
function createPod(name: string, worker: number): Tracked {
  const t: Tracked = { name };
  created.set(name, t);
  void rest.request({
    method: "POST",
    path: "/api/v1/namespaces/coverage/pods",
    body: {
      metadata: { name, labels: { app: "coverage" } },
      spec: {
        nodeName: eksNodeSpec(workers[worker % workers.length]!).name,
        containers: [{ name: "c", image: "i" }],
      },
    },
    what: "creating pod",
  });
  return t;
}

// Warm-up: one pod per worker, covered, so every worker's ENI carries the policy's session.
const warm = workers.flatMap((_, w) =>
  Array.from({ length: WARM_PODS_PER_NODE }, (__, k) => createPod(`warm-${w}-${k}`, w)),
);
await until(
  "the warm pods covered",
  async () => {
    await observe();
    await sendTraffic();
    return warm.every((t) => t.coveredAt !== undefined) ? true : undefined;
  },
  600_000,
);
if (MODE === "Auto")
  await until(
    "every ENI's filter pod-precise",
    () => {
      const sessions = [...sim.state.sessions.values()];
      const precise = sessions.every((s) =>
        sim.state.filters
          .get(s.trafficMirrorFilterId)
          ?.ingressRules.some((r) => r.destinationCidrBlock !== "0.0.0.0/0"),
      );
      return Promise.resolve(sessions.length > 0 && precise ? true : undefined);
    },
    300_000,
  );
const mutatingBefore = sim.calls.filter(
  (c) => /^(Create|Delete|Modify)/.test(c.action) && c.code === "OK",
).length;

const total = SECONDS * RATE;
const measured: Tracked[] = [];
const t0 = Date.now();
let next = 0;
let lastTick = 0;
while (
  next < total ||
  (measured.some((t) => t.coveredAt === undefined) && Date.now() - t0 < (SECONDS + 120) * 1000)
) {
  const now = Date.now();
  while (next < total && now >= t0 + (next * 1000) / RATE) {
    measured.push(createPod(`pod-${next}`, next));
    next++;
  }
  if (now - lastTick >= 100) {
    lastTick = now;
    await observe();
    await sendTraffic();
  }
  await sleep(10);
}

const lat = measured
  .filter((t) => t.runningAt !== undefined && t.coveredAt !== undefined)
  .map((t) => Math.max(0, t.coveredAt! - t.runningAt!))
  .sort((a, b) => a - b);
const q = (f: number): number => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))] ?? NaN;
const mutating =
  sim.calls.filter((c) => /^(Create|Delete|Modify)/.test(c.action) && c.code === "OK").length -
  mutatingBefore;
console.log(
  `pods: ${total} at ${RATE}/s over ${SECONDS} s on ${workers.length} nodes; covered: ${lat.length}`,
);
console.log(`coverage ${MODE}: p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${lat.at(-1) ?? NaN} ms`);
console.log(
  `AWS mutating calls per pod event: ${(mutating / total).toFixed(2)} (${mutating} for ${total} pods)`,
);
stream.destroy();
await stopProcess(operator);
await collector.stop();
await sim.stop();
await cp.stop();
