// The operator end to end on a real apiserver (kwok nodes and pods) and the EC2 emulator through
// the real AWS SDK: sessions follow pods, status says what is mirrored and why not, the VNI map is
// published, and deleting a policy removes everything it made.
import { AppsV1Api, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { makeOperatorMetrics } from "../../src/controller/metrics.ts";
import { makeReconcileCycle, VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";
import { COLLECTOR_LABEL, makeWorld } from "../fixtures/world.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);
const cluster = "it-operator";
const FIRST = 520;
const NODES = 4; // 520 is the collector; 521 runs on an unsupported instance type
const unsupportedIndex = FIRST + 1;
let sim: Ec2Sim;
let runtime: OperatorRuntime;

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const policyPath = (ns: string, name = "") =>
  `/apis/${API_VERSION}/namespaces/${ns}/trafficmirrorpolicies${name ? `/${name}` : ""}`;
const post = (path: string, body: unknown) =>
  rest.request({ method: "POST", path, body, what: `creating ${path}` });
const statusOf = (ns: string, name: string) =>
  rest.get<{ status?: PolicyStatus }>(policyPath(ns, name), "reading policy").then((p) => p.status);
const cond = (s: PolicyStatus | undefined, type: string) => s?.conditions?.find((c) => c.type === type);
const ownedSessions = () => [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, cluster));

describe("operator: policies to mirror sessions", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    const world = makeWorld({
      nodes: NODES,
      podsPerNode: 0,
      firstIndex: FIRST,
      collectors: [FIRST],
      instanceType: (i) => (i === unsupportedIndex ? "m6i.large" : "m5.large"),
    });
    seed(sim.state, world.inventory);
    for (let i = FIRST; i < FIRST + NODES; i++) {
      const labels = i === FIRST ? COLLECTOR_LABEL : { "example.com/pool": "apps" };
      const instanceType = i === unsupportedIndex ? "m6i.large" : "m5.large";
      await core.createNode({ body: makeEksNode(eksNodeSpec(i, { labels, instanceType })) });
    }
    for (const ns of ["tmo-system", "shop", "tenant-b"])
      await core.createNamespace({ body: { metadata: { name: ns } } });
    for (const ns of ["shop", "tenant-b"])
      await until(`default SA in ${ns}`, () =>
        core.readNamespacedServiceAccount({ name: "default", namespace: ns }),
      );
    await post(`/apis/${API_VERSION}/trafficmirrortargets`, {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorTarget",
      metadata: { name: "collector" },
      spec: {
        collector: { nodeSelector: COLLECTOR_LABEL },
        allowedNamespaces: { from: "List", names: ["shop"] },
      },
    });
    const api = new Ec2MirrorApi({
      client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
      cluster,
      backoffMs: 5,
    });
    const metrics = makeOperatorMetrics();
    const log = pino({ level: process.env.TMO_TEST_LOG ?? "silent" });
    runtime = new OperatorRuntime({
      kc,
      rest,
      log,
      metrics,
      resyncMs: 10_000,
      cycle: makeReconcileCycle({
        api,
        rest,
        cluster,
        namespace: "tmo-system",
        dryRun: false,
        concurrency: 4,
        metrics,
      }),
    });
    await runtime.start();
  });

  afterAll(async () => {
    await runtime?.stop();
    await sim?.stop();
    for (let i = FIRST; i < FIRST + NODES; i++)
      await core.deleteNode({ name: eksNodeSpec(i).name }).catch(() => undefined);
  });

  it("mirrors the selected pods: sessions on their ENIs, Ready status, and the VNI map", async () => {
    await apps.createNamespacedDeployment({
      namespace: "shop",
      body: {
        metadata: { name: "web" },
        spec: {
          replicas: 4,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: {
              nodeSelector: { "example.com/pool": "apps" },
              containers: [{ name: "web", image: "registry.example/web:1" }],
            },
          },
        },
      },
    });
    await post(policyPath("shop"), {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorPolicy",
      metadata: { name: "web" },
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "collector" } },
    });
    const status = await until("policy status with 4 selected pods", async () => {
      const s = await statusOf("shop", "web");
      return s?.selectedPods === 4 && cond(s, "SessionsProgrammed")?.status === "True" ? s : undefined;
    });
    const pods = (await core.listNamespacedPod({ namespace: "shop", labelSelector: "app=web" })).items;
    const onUnsupported = pods.filter((p) => p.spec?.nodeName === eksNodeSpec(unsupportedIndex).name).length;
    expect(status.mirroredSources).toBe(4 - onUnsupported);
    expect(status.unmirrored?.every((u) => u.reason === "UnsupportedInstanceType")).toBe(true);
    expect(status.unmirrored).toHaveLength(onUnsupported);
    expect(cond(status, "SourcesResolved")?.status).toBe(onUnsupported > 0 ? "False" : "True");
    expect(cond(status, "Ready")?.status).toBe(onUnsupported > 0 ? "False" : "True");
    // Every mirrored pod's IP is selected by its session's filter, on the ENI that holds it.
    const sessions = ownedSessions();
    expect(sessions.length).toBe(status.sessionCount);
    const cm = await core.readNamespacedConfigMap({ name: VNI_MAP_CONFIGMAP, namespace: "tmo-system" });
    const map = JSON.parse(cm.data!["vni-map.json"]!) as {
      sessions: { vni: number; sessionId?: string; pods: { ip: string }[] }[];
    };
    expect(map.sessions.map((e) => e.vni).sort()).toEqual(sessions.map((s) => s.virtualNetworkId).sort());
    expect(map.sessions.every((e) => e.sessionId?.startsWith("tms-"))).toBe(true);
    const mirroredIps = map.sessions.flatMap((e) => e.pods.map((p) => p.ip)).sort();
    const expectedIps = pods
      .filter((p) => p.spec?.nodeName !== eksNodeSpec(unsupportedIndex).name)
      .map((p) => p.status!.podIP!)
      .sort();
    expect(mirroredIps).toEqual(expectedIps);
  });

  it("follows scaling: new pods get mirrored without duplicating anything", async () => {
    await apps
      .patchNamespacedDeploymentScale({ name: "web", namespace: "shop", body: { spec: { replicas: 8 } } }, {
        headers: { "Content-Type": "application/merge-patch+json" },
      } as never)
      .catch(async () => {
        const d = await apps.readNamespacedDeployment({ name: "web", namespace: "shop" });
        d.spec!.replicas = 8;
        await apps.replaceNamespacedDeployment({ name: "web", namespace: "shop", body: d });
      });
    const status = await until("8 selected pods programmed", async () => {
      const s = await statusOf("shop", "web");
      return s?.selectedPods === 8 && cond(s, "SessionsProgrammed")?.status === "True" ? s : undefined;
    });
    const sessions = ownedSessions();
    // One session per source ENI and target: never two for the same ENI and policy group.
    expect(new Set(sessions.map((s) => s.networkInterfaceId)).size).toBe(sessions.length);
    expect(status.sessionCount).toBe(sessions.length);
  });

  it("refuses a namespace the target does not allow, with a reason in status", async () => {
    await post(policyPath("tenant-b"), {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorPolicy",
      metadata: { name: "steal" },
      spec: { podSelector: {}, targetRef: { name: "collector" } },
    });
    const s = await until("NamespaceNotAllowed", async () => {
      const st = await statusOf("tenant-b", "steal");
      return cond(st, "Ready")?.reason === "NamespaceNotAllowed" ? st : undefined;
    });
    expect(cond(s, "Ready")?.status).toBe("False");
    expect(cond(s, "Ready")?.message).toContain("does not allow namespace tenant-b");
  });

  it("removes every session and filter it made when the policy is deleted, then the finalizer", async () => {
    expect(ownedSessions().length).toBeGreaterThan(0);
    await rest.request({ method: "DELETE", path: policyPath("shop", "web"), what: "deleting policy" });
    await until("policy gone", async () => {
      try {
        await rest.get(policyPath("shop", "web"), "reading");
        return undefined;
      } catch {
        return true;
      }
    });
    expect(ownedSessions()).toHaveLength(0);
    expect([...sim.state.filters.values()].filter((f) => isOwnedBy(f.tags, cluster))).toHaveLength(0);
  });
});
