// The VNI map's ConfigMap costs the apiserver only when the map changes: a cycle whose map is the
// one the operator last wrote neither reads nor writes it (at 30,000 pods it is a megabyte), and
// a resync reads it again, so a deleted or edited map is put back within one. Real apiserver,
// kwok, the EC2 emulator through the SDK; the operator's requests are counted on its client.
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { OperatorMetrics } from "../../src/controller/metrics.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest, type RestRequest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { createPod, runningPodIp, stopScenario, untilReady } from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createPolicy, createSuiteCorner, until } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

/** A client that keeps the method and path of every request. */
class CountingRest extends KubeRest {
  readonly requests: { method: string; path: string }[] = [];
  override request<T>(req: RestRequest): Promise<T> {
    this.requests.push({ method: req.method, path: req.path });
    return super.request<T>(req);
  }
}

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const FIRST = 830;
const PREFIX = "vmw";
const SYSTEM = "vmw-system";
const NS = "vmw";
const CLUSTER = "vmw";
const RESYNC_MS = 10_000;
const MAP_PATH = `/api/v1/namespaces/${SYSTEM}/configmaps/${VNI_MAP_CONFIGMAP}`;
const world = makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
const nodeName = eksNodeSpec(FIRST + 1, { prefix: PREFIX }).name;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let metrics: OperatorMetrics;
const opRest = new CountingRest(kc);

const mapRequests = (from: number): string[] =>
  opRest.requests
    .slice(from)
    .filter((r) => r.path.startsWith(MAP_PATH) || r.path.endsWith(`/namespaces/${SYSTEM}/configmaps`))
    .map((r) => r.method);

async function cycles(): Promise<number> {
  const m = await metrics.registry.getSingleMetric("tmo_reconcile_cycles_total")!.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

describe("the VNI map's ConfigMap", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    await createSuiteCorner(rest, { first: FIRST, count: 2, prefix: PREFIX, system: SYSTEM, ns: NS });
    await createPod(rest, { namespace: NS, name: "web-1", nodeName, labels: { app: "web" } });
    await runningPodIp(rest, NS, "web-1");
    await createPolicy(rest, {
      namespace: NS,
      name: "web",
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: NS } },
    });
    ({ runtime, metrics } = await startTestOperator({
      kc,
      rest: opRest,
      ec2Url: sim.url,
      cluster: CLUSTER,
      namespace: SYSTEM,
      resyncMs: RESYNC_MS,
    }));
    await untilReady(rest, NS, "web", { mirrored: 1 });
  }, 120_000);

  afterAll(() => stopScenario(rest, { runtime, sim, nodePrefix: `${PREFIX}-` }));

  it("is neither read nor written by cycles that leave the map as it was", async () => {
    // Pods no policy selects: each makes cycles whose map is unchanged. Only resyncs read the
    // map (once each); before, every cycle read it.
    const from = opRest.requests.length;
    const cyclesBefore = await cycles();
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      await createPod(rest, { namespace: NS, name: `other-${i}`, nodeName, labels: { app: "other" } });
      await runningPodIp(rest, NS, `other-${i}`);
    }
    await until("cycles for the new pods", async () =>
      (await cycles()) >= cyclesBefore + 3 ? true : undefined,
    );
    const resyncs = Math.ceil((Date.now() - started) / RESYNC_MS) + 1;
    const made = (await cycles()) - cyclesBefore;
    const reads = mapRequests(from);
    // Every request is a read of a resync (a GET), never a write; and fewer than one per cycle.
    expect(reads.every((m) => m === "GET")).toBe(true);
    expect(reads.length).toBeLessThanOrEqual(resyncs);
    expect(reads.length).toBeLessThan(made);
  });

  it("is put back by the next resync when deleted", async () => {
    await rest.request({ method: "DELETE", path: MAP_PATH, what: "deleting the map" });
    const back = await until(
      "the map back",
      () =>
        rest.get<{ binaryData?: Record<string, string> }>(MAP_PATH, "reading the map").catch(() => undefined),
      3 * RESYNC_MS,
    );
    expect(Object.keys(back.binaryData ?? {})).toEqual(["vni-map.json.gz"]);
  });
});
