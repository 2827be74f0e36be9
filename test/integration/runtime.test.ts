// The operator runtime against a real apiserver of its own: changes to pods, nodes, policies and
// targets coalesce into cycles that see them; after an apiserver restart it recovers without a
// restart of its own.
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeOperatorMetrics } from "../../src/controller/metrics.ts";
import {
  API_GROUP,
  API_VERSION,
  OperatorRuntime,
  type ClusterSnapshot,
} from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { startControlPlane, type ControlPlane } from "../harness/controlplane.ts";

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Placeholder CRDs with the real names; the real schemas are tested elsewhere. */
async function installLooseCrds(rest: KubeRest): Promise<void> {
  for (const [kind, plural, scope] of [
    ["TrafficMirrorPolicy", "trafficmirrorpolicies", "Namespaced"],
    ["TrafficMirrorTarget", "trafficmirrortargets", "Cluster"],
  ] as const) {
    await rest.request({
      method: "POST",
      path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
      what: "creating CRD",
      body: {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: `${plural}.${API_GROUP}` },
        spec: {
          group: API_GROUP,
          scope,
          names: { plural, singular: kind.toLowerCase(), kind },
          versions: [
            {
              name: API_VERSION,
              served: true,
              storage: true,
              subresources: { status: {} },
              schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
            },
          ],
        },
      },
    });
  }
  await sleep(1_500); // CRDs become served shortly after they are Established
}

describe("OperatorRuntime", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-runtime-"));
  let cp: ControlPlane;
  let rest: KubeRest;
  let core: CoreV1Api;
  let runtime: OperatorRuntime;
  const snapshots: ClusterSnapshot[] = [];
  const metrics = makeOperatorMetrics();

  beforeAll(async () => {
    cp = await startControlPlane({ stateDir, full: false });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    rest = new KubeRest(kc);
    core = kc.makeApiClient(CoreV1Api);
    await installLooseCrds(rest);
    await core.createNamespace({ body: { metadata: { name: "system" } } });
    await core.createNamespace({ body: { metadata: { name: "shop" } } });
    // No controller-manager here, so the ServiceAccount pods need is made by hand.
    await core.createNamespacedServiceAccount({ namespace: "shop", body: { metadata: { name: "default" } } });
    runtime = new OperatorRuntime({
      kc,
      rest,
      log: pino({ level: process.env.TMO_TEST_LOG ?? "silent" }),
      metrics,
      resyncMs: 60_000,
      debounceMs: 100,
      leaderElection: { namespace: "system", identity: "replica-a" },
      cycle: (s) => {
        snapshots.push(s);
        return Promise.resolve({});
      },
    });
    await runtime.start();
  });

  afterAll(async () => {
    await runtime?.stop();
    await cp?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const last = (): ClusterSnapshot => snapshots.at(-1)!;

  it("leads, and runs a first cycle on an empty cluster", async () => {
    await until("first cycle", () => snapshots.length >= 1);
    expect(runtime.leading).toBe(true);
    expect(last().policies).toEqual([]);
  });

  it("coalesces a burst of changes into few cycles that see all of them", async () => {
    const before = snapshots.length;
    await rest.request({
      method: "POST",
      path: `/apis/${API_GROUP}/${API_VERSION}/namespaces/shop/trafficmirrorpolicies`,
      what: "creating policy",
      body: {
        apiVersion: `${API_GROUP}/${API_VERSION}`,
        kind: "TrafficMirrorPolicy",
        metadata: { name: "web" },
        spec: { priority: 10 },
      },
    });
    await rest.request({
      method: "POST",
      path: `/apis/${API_GROUP}/${API_VERSION}/trafficmirrortargets`,
      what: "creating target",
      body: {
        apiVersion: `${API_GROUP}/${API_VERSION}`,
        kind: "TrafficMirrorTarget",
        metadata: { name: "collector" },
        spec: {},
      },
    });
    for (let i = 0; i < 20; i++) {
      await core.createNamespacedPod({
        namespace: "shop",
        body: {
          metadata: { name: `web-${i}`, labels: { app: "web" } },
          spec: { containers: [{ name: "c", image: "i" }] },
        },
      });
    }
    await until(
      "a cycle that sees everything",
      () => last().pods.length === 20 && last().targets.length === 1,
    );
    const cycles = snapshots.length - before;
    expect(cycles).toBeGreaterThanOrEqual(1);
    // 22 changes; debouncing and single-flight keep the cycles well below one per change.
    expect(cycles).toBeLessThan(22);
    expect(last().policies[0]).toMatchObject({
      namespace: "shop",
      name: "web",
      spec: { priority: 10 },
      generation: 1,
    });
  });

  it("recovers after the apiserver restarts, without a restart of its own", async () => {
    await cp.restartApiserver(2_000);
    await core.createNamespacedPod({
      namespace: "shop",
      body: { metadata: { name: "after-restart" }, spec: { containers: [{ name: "c", image: "i" }] } },
    });
    await until(
      "the pod made after the restart",
      () => last().pods.some((p) => p.name === "after-restart"),
      60_000,
    );
    expect(runtime.leading).toBe(true);
    expect(runtime.healthy()).toBe(true);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/tmo_cached_objects\{resource="pods"\} 2[01]/);
    expect(text).toMatch(/tmo_reconcile_cycles_total\{outcome="success"\} \d+/);
  });
});
