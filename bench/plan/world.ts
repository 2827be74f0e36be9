// The benchmark's synthetic EKS cluster, shared by the timing run and the golden-output check.
import type { Ec2Inventory, NetworkInterface } from "../../src/api/inventory.ts";
import type { LeanNode, LeanPod } from "../../src/k8s/lean.ts";
import { formatIp } from "../../src/plan/ipv4.ts";
import type { PlanInput, PolicyInput, TargetInput } from "../../src/plan/types.ts";
import { makePolicy, makeTarget, makeWorld, planInputOf } from "../../test/fixtures/world.ts";

const APPS = 4;

/** Pods per node (at most 48: 16 on each ENI's /28) and namespaces (4 policies each). */
export interface BenchShape {
  podsPerNode: number;
  namespaces: number;
}
const BENCH_SHAPE: BenchShape = { podsPerNode: 20, namespaces: 50 };

function addNode(
  i: number,
  acc: { nodes: LeanNode[]; pods: LeanPod[]; inv: Ec2Inventory },
  { podsPerNode, namespaces }: BenchShape,
): void {
  const zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3]!;
  const instanceId = `i-${i.toString(16).padStart(17, "0")}`;
  const nodeIp = 10 * 2 ** 24 + i * 4 + 1;
  const podBase = 10 * 2 ** 24 + 2 ** 20 + i * 64; // 10.16.0.0 onwards, a /26 per node
  acc.nodes.push({
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
  acc.inv.instances.push({ instanceId, instanceType: "m5.xlarge", availabilityZone: zone });
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
    acc.inv.networkInterfaces.push(eni);
  }
  for (let j = 0; j < podsPerNode; j++) {
    const k = i * podsPerNode + j;
    const onEni = j % 3;
    acc.pods.push({
      namespace: `team-${k % namespaces}`,
      name: `pod-${k}`,
      uid: `p${k}`,
      labels: { app: `app-${Math.floor(k / namespaces) % APPS}` },
      nodeName: `node-${i}`,
      podIPs: [formatIp(podBase + onEni * 16 + 1 + Math.floor(j / 3))],
      hostNetwork: false,
      phase: "Running",
      deleting: false,
    });
  }
}

/**
 * A cluster of `nodes` m5.xlarge nodes (three ENIs each, 20 pods each in 50 namespaces, unless
 * `shape` says otherwise), 4 NLB targets and 4 policies per namespace (200), with an empty EC2
 * account.
 */
export function makeBenchInput(nodes: number, shape: BenchShape = BENCH_SHAPE): PlanInput {
  const acc = {
    nodes: [] as LeanNode[],
    pods: [] as LeanPod[],
    inv: { instances: [], networkInterfaces: [], targets: [], filters: [], sessions: [] } as Ec2Inventory,
  };
  for (let i = 0; i < nodes; i++) addNode(i, acc, shape);
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
  for (let n = 0; n < shape.namespaces; n++) {
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
  return asDecoded({
    clusterName: "bench",
    policies,
    targets,
    namespaces: [],
    pods: acc.pods,
    nodes: acc.nodes,
    inventory: acc.inv,
  });
}

/**
 * The value as the operator holds it: decoded from the API server's and EC2's answers. Built here
 * with template strings, ids and keys would be V8 cons strings (a chain of pieces) that every map
 * lookup has to walk or flatten; a decoded answer holds flat strings.
 */
export function asDecoded<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * The cluster of the operator's scale run at `nodes` nodes (at most 760: the fixtures' address
 * plan): 20 pods per node on addresses .1–.20 of the node's first ENI, which holds two /28
 * prefixes; 10 namespaces, pods labelled `app=web` and `app=db` in turn; two policies per namespace
 * (one per label) to one NLB target, so every pod is selected and each ENI has one session whose
 * filter must select 20 consecutive addresses.
 */
export function makeCrowdedInput(nodes: number): PlanInput {
  const world = makeWorld({
    nodes,
    podsPerNode: 20,
    addressing: "prefix",
    namespace: (i, j) => `team-${(i * 20 + j) % 10}`,
  });
  const target = makeTarget("ids", {
    networkLoadBalancerArn:
      "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/0123456789abcdef",
  });
  const policies = Array.from({ length: 10 }, (_, n) =>
    ["web", "db"].map((app) =>
      makePolicy(
        `mirror-${app}`,
        { podSelector: { matchLabels: { app } }, targetRef: { name: "ids" } },
        `team-${n}`,
      ),
    ),
  ).flat();
  return asDecoded(planInputOf(world, { cluster: "bench", policies, targets: [target] }));
}
