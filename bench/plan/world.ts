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

/** The IP family of a bench cluster (see `makeBenchInput`). */
export type BenchFamily = "IPv4" | "IPv6" | "DualStack";

/** The IPv6 side of node `i`: its address, and the /80 of its ENI `e` (a zone's /64 each). */
function ipv6Of(i: number, e: number): { node: string; prefix: string } {
  const subnet = `2600:1f14:abc:de0${i % 3}`;
  return {
    node: `${subnet}::${(i + 4).toString(16)}`,
    prefix: `${subnet}:${(i * 3 + e + 1).toString(16)}::`,
  };
}

function addNode(
  i: number,
  acc: { nodes: LeanNode[]; pods: LeanPod[]; inv: Ec2Inventory },
  family: BenchFamily,
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
  // The VPC CNI uses the primary ENI alone on an IPv6 cluster.
  for (let e = 0; e < (family === "IPv6" ? 1 : 3); e++) {
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
      ipv4Prefixes: family === "IPv6" ? [] : [`${formatIp(podBase + e * 16)}/28`],
      tags: {},
    };
    if (family !== "IPv4") {
      eni.ipv6Addresses = e === 0 ? [ipv6Of(i, 0).node] : [];
      eni.ipv6Prefixes = [`${ipv6Of(i, e).prefix}/80`];
    }
    acc.inv.networkInterfaces.push(eni);
  }
  for (let j = 0; j < podsPerNode; j++) {
    const k = i * podsPerNode + j;
    const onEni = family === "IPv6" ? 0 : j % 3;
    const v4 = formatIp(podBase + onEni * 16 + 1 + Math.floor(j / 3));
    const v6 = `${ipv6Of(i, onEni).prefix}${(1 + (family === "IPv6" ? j : Math.floor(j / 3))).toString(16)}`;
    acc.pods.push({
      namespace: `team-${k % namespaces}`,
      name: `pod-${k}`,
      uid: `p${k}`,
      labels: { app: `app-${Math.floor(k / namespaces) % APPS}` },
      nodeName: `node-${i}`,
      podIPs: family === "IPv4" ? [v4] : family === "IPv6" ? [v6] : [v4, v6],
      hostNetwork: false,
      phase: "Running",
      deleting: false,
    });
  }
}

/**
 * A cluster of `nodes` m5.xlarge nodes (three ENIs each, 20 pods each in 50 namespaces, unless
 * `shape` says otherwise), 4 NLB targets and 4 policies per namespace (200), with an empty EC2
 * account. `IPv6`: an EKS IPv6
 * cluster of the same size, each node's primary ENI alone with a /80 and its 20 pods' IPv6
 * addresses; `DualStack`: the IPv4 cluster with a /80 on each ENI and an IPv6 address for each pod
 * on the ENI of its IPv4 one.
 */
export function makeBenchInput(
  nodes: number,
  family: BenchFamily = "IPv4",
  shape: BenchShape = BENCH_SHAPE,
): PlanInput {
  const acc = {
    nodes: [] as LeanNode[],
    pods: [] as LeanPod[],
    inv: { instances: [], networkInterfaces: [], targets: [], filters: [], sessions: [] } as Ec2Inventory,
  };
  for (let i = 0; i < nodes; i++) addNode(i, acc, family, shape);
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
