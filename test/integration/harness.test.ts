// Proves the harness is a real control plane: CRDs are served, the scheduler places a Deployment's
// pods on kwok nodes where they run with IPs from the node's pod range, and the DaemonSet
// controller puts one pod on each matching node.
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Pod,
} from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { eksNodeSpec, makeEksNode, type EksNodeSpec } from "../fixtures/eks.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function ipInCidr(ip: string, cidr: string): boolean {
  const toInt = (a: string): number => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  const [base, bits] = cidr.split("/") as [string, string];
  const size = 2 ** (32 - Number(bits));
  return Math.floor(toInt(ip) / size) === Math.floor(toInt(base) / size);
}

describe("control-plane harness", () => {
  const ns = "harness-proof";
  // Indexes far from other suites' nodes so tests on the shared control plane do not collide.
  const specs: EksNodeSpec[] = [700, 701, 702].map((i) =>
    eksNodeSpec(i, { prefix: "harness", labels: i === 702 ? {} : { "example.com/collector": "true" } }),
  );

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: ns } } });
    for (const s of specs) await core.createNode({ body: makeEksNode(s) });
    await until("nodes Ready", async () => {
      const nodes = await Promise.all(specs.map((s) => core.readNode({ name: s.name })));
      const ready = nodes.every((n) =>
        n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
      );
      return ready ? true : undefined;
    });
    // Pods are admitted only once the namespace's default ServiceAccount exists.
    await until("default ServiceAccount", () =>
      core.readNamespacedServiceAccount({ name: "default", namespace: ns }).catch(() => undefined),
    );
  });

  afterAll(async () => {
    await core.deleteNamespace({ name: ns }).catch(() => undefined);
    for (const s of specs) await core.deleteNode({ name: s.name }).catch(() => undefined);
  });

  it("serves a CRD and stores an object of it", async () => {
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({
      body: {
        metadata: { name: "widgets.harness.tmo.test" },
        spec: {
          group: "harness.tmo.test",
          scope: "Namespaced",
          names: { plural: "widgets", singular: "widget", kind: "Widget" },
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              schema: {
                openAPIV3Schema: {
                  type: "object",
                  properties: {
                    spec: { type: "object", properties: { size: { type: "integer", minimum: 1 } } },
                  },
                },
              },
            },
          ],
        },
      },
    });
    await until("CRD Established", async () => {
      const crd = await ext.readCustomResourceDefinition({ name: "widgets.harness.tmo.test" });
      return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")
        ? true
        : undefined;
    });
    const custom = kc.makeApiClient(CustomObjectsApi);
    const target = { group: "harness.tmo.test", version: "v1", namespace: ns, plural: "widgets" };
    const created = (await until("widget created", () =>
      custom
        .createNamespacedCustomObject({
          ...target,
          body: {
            apiVersion: "harness.tmo.test/v1",
            kind: "Widget",
            metadata: { name: "w" },
            spec: { size: 3 },
          },
        })
        .catch(() => undefined),
    )) as { spec: { size: number } };
    expect(created.spec.size).toBe(3);
    // The schema is enforced by the real apiserver, not by us.
    await expect(
      custom.createNamespacedCustomObject({
        ...target,
        body: {
          apiVersion: "harness.tmo.test/v1",
          kind: "Widget",
          metadata: { name: "bad" },
          spec: { size: 0 },
        },
      }),
    ).rejects.toThrow(/should be greater than or equal to 1/);
  });

  it("schedules a Deployment's pods onto kwok nodes, Running with IPs from the node's pod range", async () => {
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "web" },
        spec: {
          replicas: 5,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: {
              nodeSelector: {
                "eks.amazonaws.com/nodegroup": "default",
                "kubernetes.io/hostname": specs[0]!.name,
              },
              containers: [{ name: "web", image: "registry.example/web:1" }],
            },
          },
        },
      },
    });
    const pods = await until("5 running pods", async () => {
      const list = await core.listNamespacedPod({ namespace: ns, labelSelector: "app=web" });
      const running = list.items.filter((p) => p.status?.phase === "Running" && p.status.podIP);
      return running.length === 5 ? running : undefined;
    });
    const ips = new Set(pods.map((p: V1Pod) => p.status!.podIP!));
    expect(ips.size).toBe(5);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBe(specs[0]!.name);
      expect(
        ipInCidr(p.status!.podIP!, specs[0]!.podCidr),
        `${p.status!.podIP} in ${specs[0]!.podCidr}`,
      ).toBe(true);
    }
  });

  it("runs one DaemonSet pod on each matching node and none elsewhere", async () => {
    await apps.createNamespacedDaemonSet({
      namespace: ns,
      body: {
        metadata: { name: "collector" },
        spec: {
          selector: { matchLabels: { app: "collector" } },
          template: {
            metadata: { labels: { app: "collector" } },
            spec: {
              nodeSelector: { "example.com/collector": "true" },
              hostNetwork: true,
              containers: [{ name: "c", image: "registry.example/collector:1" }],
            },
          },
        },
      },
    });
    const pods = await until("2 running daemon pods", async () => {
      const list = await core.listNamespacedPod({ namespace: ns, labelSelector: "app=collector" });
      const running = list.items.filter((p) => p.status?.phase === "Running");
      return running.length === 2 ? running : undefined;
    });
    const nodes = pods.map((p) => p.spec!.nodeName).sort();
    expect(nodes).toEqual([specs[0]!.name, specs[1]!.name].sort());
    // Host-network pods carry their node's address, as on EKS.
    for (const p of pods) {
      const spec = specs.find((s) => s.name === p.spec!.nodeName)!;
      expect(p.status?.podIP).toBe(spec.internalIp);
    }
    const ds = await apps.readNamespacedDaemonSet({ name: "collector", namespace: ns });
    expect(ds.status?.desiredNumberScheduled).toBe(2);
  });
});
