// Planner at EKS scale: 5,000 nodes, 15,000 ENIs, 100,000 pods, 200 policies. Prints the median
// of several full plans (first, from an empty account; then steady state, with everything already
// made) and the memory the plan needs.
// Run: node --expose-gc bench/plan/run.ts [nodes] [runs]
import type { Ec2Inventory, NetworkInterface } from "../../src/api/inventory.ts";
import type { LeanNode, LeanPod } from "../../src/k8s/lean.ts";
import { applyDiff, diffSize } from "../../src/plan/diff.ts";
import { formatIp } from "../../src/plan/ipv4.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import type { PlanInput, PolicyInput, TargetInput } from "../../src/plan/types.ts";

const NODES = Number(process.argv[2] ?? 5000);
const RUNS = Number(process.argv[3] ?? 7);
const PODS_PER_NODE = 20;
const NAMESPACES = 50;
const APPS = 4;
const gc = (globalThis as { gc?: () => void }).gc;

function makeInput(): PlanInput {
  const nodes: LeanNode[] = [];
  const pods: LeanPod[] = [];
  const inv: Ec2Inventory = { instances: [], networkInterfaces: [], targets: [], filters: [], sessions: [] };
  for (let i = 0; i < NODES; i++) {
    const zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3]!;
    const instanceId = `i-${i.toString(16).padStart(17, "0")}`;
    const nodeIp = 10 * 2 ** 24 + i * 4 + 1;
    const podBase = 10 * 2 ** 24 + 2 ** 20 + i * 64; // 10.16.0.0 onwards, a /26 per node
    nodes.push({
      name: `node-${i}`,
      uid: `n${i}`,
      labels: {
        "node.kubernetes.io/instance-type": "m5.xlarge",
        "topology.kubernetes.io/zone": zone,
        role: i < 30 ? "collector" : "worker",
      },
      providerID: `aws:///${zone}/${instanceId}`,
      internalIP: formatIp(nodeIp),
      ready: true,
    });
    inv.instances.push({ instanceId, instanceType: "m5.xlarge", availabilityZone: zone });
    for (let e = 0; e < 3; e++) {
      const eni: NetworkInterface = {
        networkInterfaceId: `eni-${(i * 3 + e).toString(16).padStart(17, "0")}`,
        instanceId,
        deviceIndex: e,
        interfaceType: "interface",
        availabilityZone: zone,
        subnetId: "subnet-1",
        vpcId: "vpc-1",
        description: e === 0 ? "" : "aws-K8S-secondary",
        primaryIp: formatIp(nodeIp + e),
        privateIps: [formatIp(nodeIp + e)],
        ipv4Prefixes: [`${formatIp(podBase + e * 16)}/28`],
        tags: {},
      };
      inv.networkInterfaces.push(eni);
    }
    for (let j = 0; j < PODS_PER_NODE; j++) {
      const k = i * PODS_PER_NODE + j;
      const onEni = j % 3;
      pods.push({
        namespace: `team-${k % NAMESPACES}`,
        name: `pod-${k}`,
        uid: `p${k}`,
        labels: { app: `app-${Math.floor(k / NAMESPACES) % APPS}` },
        nodeName: `node-${i}`,
        podIPs: [formatIp(podBase + onEni * 16 + 1 + Math.floor(j / 3))],
        hostNetwork: false,
        phase: "Running",
        deleting: false,
      });
    }
  }
  const targets: TargetInput[] = [0, 1, 2, 3].map((t) => ({
    name: `ids-${t}`,
    generation: 1,
    deleting: false,
    spec: {
      networkLoadBalancerArn: `arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids${t}/0123456789abcdef`,
      allowedNamespaces: { from: "All" },
      allowNodeSources: false,
    },
  }));
  const policies: PolicyInput[] = [];
  for (let n = 0; n < NAMESPACES; n++) {
    for (let a = 0; a < APPS; a++) {
      policies.push({
        namespace: `team-${n}`,
        name: `mirror-app-${a}`,
        generation: 1,
        deleting: false,
        spec: {
          podSelector: { matchLabels: { app: `app-${a}` } },
          targetRef: { name: `ids-${(n + a) % 4}` },
          priority: (n * 7 + a * 13) % 1000,
          suspend: false,
        },
      });
    }
  }
  return { clusterName: "bench", policies, targets, namespaces: [], pods, nodes, inventory: inv };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(input: PlanInput, runs: number): { median: number; min: number; max: number; changes: number } {
  planMirroring(input); // warm-up
  const times: number[] = [];
  let changes = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const plan = planMirroring(input);
    times.push(performance.now() - t0);
    changes = diffSize(plan.diff);
  }
  return { median: median(times), min: Math.min(...times), max: Math.max(...times), changes };
}

const input = makeInput();
console.log(
  `cluster: ${input.nodes.length} nodes, ${input.inventory.networkInterfaces.length} ENIs, ${input.pods.length} pods, ${input.policies.length} policies`,
);
gc?.();
const heapBefore = process.memoryUsage().heapUsed;
const firstPlan = planMirroring(input);
const heapWithPlan = process.memoryUsage().heapUsed;
console.log(
  `plan: ${firstPlan.desired.sessions.length} sessions, ${firstPlan.desired.filters.length} filters, ${[...firstPlan.policies.values()].reduce((n, r) => n + r.sources.filter((s) => s.reason).length, 0)} sources with a reason`,
);
const cold = time(input, RUNS);
console.log(
  `full plan, empty account:  median ${cold.median.toFixed(0)} ms (min ${cold.min.toFixed(0)}, max ${cold.max.toFixed(0)}) over ${RUNS} runs, ${cold.changes} changes`,
);
const steady = { ...input, inventory: applyDiff(input.inventory, firstPlan.diff, input.clusterName) };
const warm = time(steady, RUNS);
console.log(
  `full plan, steady state:   median ${warm.median.toFixed(0)} ms (min ${warm.min.toFixed(0)}, max ${warm.max.toFixed(0)}) over ${RUNS} runs, ${warm.changes} changes`,
);
console.log(
  `memory: plan result and working set ~${((heapWithPlan - heapBefore) / 2 ** 20).toFixed(0)} MiB heap (no GC in between); process RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
);
