// A node that joins after the operator started (ADR 14): its instance is launched into EC2 after
// the operator's first full read of the inventory, then the node registers and a selected pod
// starts on it. The kept inventory reads that instance, its ENIs and the sessions on them by id (a
// targeted read, not a full one), the pod is mirrored, and nothing else is read again. Real apiserver, kwok, the EC2
// emulator through the SDK; Describe calls are the emulator's count.
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { isOwnedBy } from "../../src/api/tags.ts";
import type { OperatorMetrics } from "../../src/controller/metrics.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { createPod, runningPodIp, stopScenario, untilReady } from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createEksNodes, createPolicy, createSuiteCorner } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const FIRST = 795; // 795 runs the collector, 796 a pod from the start, 797 joins later
const PREFIX = "join";
const SYSTEM = "join-system";
const NS = "join";
const CLUSTER = "join";
const world = makeWorld({ nodes: 3, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
const late = world.inventory.instances[2]!.instanceId;
const nodeName = (i: number) => eksNodeSpec(i, { prefix: PREFIX }).name;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let metrics: OperatorMetrics;

async function describes(reason: string): Promise<number> {
  const m = await metrics.registry.getSingleMetric("tmo_inventory_describes_total")!.get();
  return m.values.find((v) => v.labels["reason"] === reason)?.value ?? 0;
}

/** Owned sessions on the ENIs of an instance, in the emulator. */
function sessionsOn(instanceId: string): number {
  const enis = new Set(
    [...sim.state.enis.values()].filter((e) => e.instanceId === instanceId).map((e) => e.networkInterfaceId),
  );
  return [...sim.state.sessions.values()].filter(
    (s) => isOwnedBy(s.tags, CLUSTER) && enis.has(s.networkInterfaceId),
  ).length;
}

describe("a node that joins after the operator started", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    // EC2 holds the first two instances only.
    seed(sim.state, {
      instances: world.inventory.instances.filter((i) => i.instanceId !== late),
      networkInterfaces: world.inventory.networkInterfaces.filter((e) => e.instanceId !== late),
    });
    await createSuiteCorner(rest, {
      first: FIRST,
      count: 2,
      prefix: PREFIX,
      system: SYSTEM,
      ns: NS,
    });
    await createPod(rest, {
      namespace: NS,
      name: "web-1",
      nodeName: nodeName(FIRST + 1),
      labels: { app: "web" },
    });
    await runningPodIp(rest, NS, "web-1");
    await createPolicy(rest, {
      namespace: NS,
      name: "web",
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: NS } },
    });
    ({ runtime, metrics } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: CLUSTER,
      namespace: SYSTEM,
      resyncMs: 600_000,
    }));
    await untilReady(rest, NS, "web", { mirrored: 1 });
  }, 120_000);

  afterAll(() => stopScenario(rest, { runtime, sim, nodePrefix: `${PREFIX}-` }));

  it("reads the new instance and its ENIs by id and mirrors its pod, with no full read", async () => {
    const full = await describes("resync");
    const from = sim.calls.length;
    // The instance is launched, then its node registers and a selected pod starts on it.
    seed(sim.state, world.inventory);
    await createEksNodes(rest, { first: FIRST + 2, count: 1, collectors: [], pool: PREFIX, prefix: PREFIX });
    await createPod(rest, {
      namespace: NS,
      name: "web-2",
      nodeName: nodeName(FIRST + 2),
      labels: { app: "web" },
    });
    await runningPodIp(rest, NS, "web-2");
    await untilReady(rest, NS, "web", { mirrored: 2 });
    expect(sessionsOn(late)).toBe(1);
    // Only targeted reads: no full read since the start; the new instance, its ENIs and the
    // sessions already on those ENIs (another tool's take slots), each read once, by id.
    expect(await describes("resync")).toBe(full);
    expect(await describes("targeted")).toBeGreaterThanOrEqual(1);
    const read = sim.calls.slice(from).filter((c) => c.action.startsWith("Describe"));
    expect(read.map((c) => c.action).sort()).toEqual([
      "DescribeInstances",
      "DescribeNetworkInterfaces",
      "DescribeTrafficMirrorSessions",
    ]);
  }, 60_000);
});
