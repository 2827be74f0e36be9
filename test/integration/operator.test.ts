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
import type { CreateSessionInput } from "../../src/aws/port.ts";
import type { MirrorSession } from "../../src/api/inventory.ts";
import { makeOperatorMetrics } from "../../src/controller/metrics.ts";
import { readVniMapConfigMap } from "../../src/api/vni-map.ts";
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
/** For each session the operator made: was its VNI in the published map at that moment? */
const vniKnownAtCreate: boolean[] = [];

async function publishedVnis(): Promise<number[]> {
  const cm = await core
    .readNamespacedConfigMap({ name: VNI_MAP_CONFIGMAP, namespace: "tmo-system" })
    .catch(() => undefined);
  const map = cm && readVniMapConfigMap(cm, "published");
  return map?.sessions.map((e) => e.vni) ?? [];
}

/** The adapter, noting before each session is made whether collectors could already name it. */
class ObservedApi extends Ec2MirrorApi {
  override async createSession(s: CreateSessionInput): Promise<MirrorSession> {
    vniKnownAtCreate.push((await publishedVnis()).includes(s.virtualNetworkId));
    return super.createSession(s);
  }
}

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
    const api = new ObservedApi({
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
    const map = readVniMapConfigMap(cm, "published")!;
    expect(map.sessions.map((e) => e.vni).sort()).toEqual(sessions.map((s) => s.virtualNetworkId).sort());
    expect(map.sessions.every((e) => e.sessionId?.startsWith("tms-"))).toBe(true);
    // Collectors knew each session's VNI before it was made, so its first copies were named.
    expect(vniKnownAtCreate.length).toBeGreaterThanOrEqual(sessions.length);
    expect(vniKnownAtCreate.every(Boolean)).toBe(true);
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

  it("allows namespaces by label, and follows a namespace's labels as they change", async () => {
    await post(`/apis/${API_VERSION}/trafficmirrortargets`, {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorTarget",
      metadata: { name: "by-label" },
      spec: {
        collector: { nodeSelector: COLLECTOR_LABEL },
        allowedNamespaces: {
          from: "Selector",
          selector: { matchLabels: { "mirroring.example.com/allowed": "yes" } },
        },
      },
    });
    await post(policyPath("tenant-b"), {
      apiVersion: API_VERSION,
      kind: "TrafficMirrorPolicy",
      metadata: { name: "labelled" },
      spec: { podSelector: { matchLabels: { app: "nothing-yet" } }, targetRef: { name: "by-label" } },
    });
    const reason = async () => cond(await statusOf("tenant-b", "labelled"), "Ready")?.reason;
    await until("NamespaceNotAllowed before the label", async () =>
      (await reason()) === "NamespaceNotAllowed" ? true : undefined,
    );
    await rest.request({
      method: "PATCH",
      path: "/api/v1/namespaces/tenant-b",
      body: { metadata: { labels: { "mirroring.example.com/allowed": "yes" } } },
      contentType: "application/merge-patch+json",
      what: "labelling tenant-b",
    });
    const after = await until("allowed once labelled", async () => {
      const r = await reason();
      return r !== undefined && r !== "NamespaceNotAllowed" ? r : undefined;
    });
    expect(after).not.toBe("NamespaceNotAllowed");
    await rest.request({ method: "DELETE", path: policyPath("tenant-b", "labelled"), what: "cleanup" });
    await rest.request({
      method: "DELETE",
      path: `/apis/${API_VERSION}/trafficmirrortargets/by-label`,
      what: "cleanup",
    });
  });

  it("gives an ENI's three slots to the three highest-priority policies and says EniFull for the fourth", async () => {
    // Four policies on the same pods, each to its own NLB target: four sessions wanted per ENI.
    for (const n of [1, 2, 3, 4]) {
      await post(`/apis/${API_VERSION}/trafficmirrortargets`, {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorTarget",
        metadata: { name: `nlb-${n}` },
        spec: {
          networkLoadBalancerArn: `arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n${n}/0123456789abcdef`,
          allowedNamespaces: { from: "List", names: ["shop"] },
        },
      });
      await post(policyPath("shop"), {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorPolicy",
        metadata: { name: `four-${n}` },
        spec: {
          podSelector: { matchLabels: { app: "web" } },
          targetRef: { name: `nlb-${n}` },
          priority: 100 + n * 10,
        },
      });
    }
    const lowest = await until("four-1 reports EniFull", async () => {
      const s = await statusOf("shop", "four-1");
      return cond(s, "WithinLimits")?.reason === "EniFull" ? s : undefined;
    });
    expect(cond(lowest, "WithinLimits")?.status).toBe("False");
    expect(cond(lowest, "Ready")?.status).toBe("False");
    // Five policies now want each ENI that holds a web pod; "web" has the default priority 100,
    // the lowest of all, so it loses its slots too, and four-2..4 hold the three.
    for (const n of [2, 3, 4]) {
      const st = await until(`four-${n} programmed`, async () => {
        const x = await statusOf("shop", `four-${n}`);
        return cond(x, "SessionsProgrammed")?.status === "True" && cond(x, "WithinLimits")?.status === "True"
          ? x
          : undefined;
      });
      expect(st.mirroredSources).toBeGreaterThan(0);
    }
    expect(cond(await statusOf("shop", "web"), "WithinLimits")?.reason).toBe("EniFull");
    const perEni = new Map<string, number>();
    for (const s of sim.state.sessions.values())
      perEni.set(s.networkInterfaceId, (perEni.get(s.networkInterfaceId) ?? 0) + 1);
    expect(Math.max(...perEni.values())).toBe(3);
    for (const n of [1, 2, 3, 4])
      await rest.request({ method: "DELETE", path: policyPath("shop", `four-${n}`), what: "cleanup" });
    // With the four gone, "web" gets its slots back.
    await until("web within limits again", async () => {
      const st = await statusOf("shop", "web");
      return cond(st, "WithinLimits")?.status === "True" && cond(st, "SessionsProgrammed")?.status === "True"
        ? st
        : undefined;
    });
  });

  it("removes every session and filter it made when the policy is deleted, then the finalizer", async () => {
    expect(ownedSessions().length).toBeGreaterThan(0);
    // AWS refuses the deletes at first: the policy stays, and its status says why.
    sim.knobs.deny = ["DeleteTrafficMirrorSession"];
    await rest.request({ method: "DELETE", path: policyPath("shop", "web"), what: "deleting policy" });
    const waiting = await until("Ready=False Deleting", async () => {
      const ready = cond(await statusOf("shop", "web"), "Ready");
      return ready?.reason === "Deleting" ? ready : undefined;
    });
    expect(waiting.status).toBe("False");
    expect(waiting.message).toMatch(/being deleted; [1-9]\d* AWS changes failed, retrying/);
    expect(ownedSessions().length).toBeGreaterThan(0);
    sim.knobs.deny = [];
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
