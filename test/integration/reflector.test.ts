// The reflector against a real apiserver: it lists, follows pod changes through watches, and
// recovers by itself when the apiserver is restarted under it.
import { CoreV1Api, KubeConfig, Watch } from "@kubernetes/client-node";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reflector, type RawObject } from "../../src/k8s/reflector.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { apiServerSource } from "../../src/k8s/source.ts";
import { startControlPlane, type ControlPlane } from "../harness/controlplane.ts";

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe("Reflector on a real apiserver", () => {
  // A control plane of its own (etcd + apiserver), because this test restarts the apiserver.
  const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-reflector-"));
  let cp: ControlPlane;
  let core: CoreV1Api;
  let reflector: Reflector<{ ip: string | undefined; app: string | undefined }>;

  beforeAll(async () => {
    cp = await startControlPlane({ stateDir, full: false });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: "r" } } });
    reflector = new Reflector({
      name: "configmaps",
      source: apiServerSource({
        rest: new KubeRest(kc),
        watch: new Watch(kc),
        path: "/api/v1/namespaces/r/configmaps",
      }),
      log: pino({ level: "silent" }),
      pageSize: 2, // several pages even for a handful of objects
      backoff: { initialMs: 100, maxMs: 1_000 },
      transform: (o: RawObject) => {
        const data = (o.data ?? {}) as Record<string, string>;
        return { ip: data.ip, app: data.app };
      },
    });
  });

  afterAll(async () => {
    await reflector?.stop();
    await cp?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const put = (name: string, data: Record<string, string>) =>
    core.createNamespacedConfigMap({ namespace: "r", body: { metadata: { name }, data } });

  it("lists in pages and then follows changes", async () => {
    for (let i = 0; i < 5; i++) await put(`cm-${i}`, { ip: `10.0.0.${i}`, app: "web" });
    reflector.start();
    await reflector.synced();
    expect(reflector.size).toBe(5);
    await put("cm-new", { ip: "10.0.9.9", app: "db" });
    await core.deleteNamespacedConfigMap({ name: "cm-0", namespace: "r" });
    await until("watch to deliver", () => reflector.size === 5 && reflector.get("r/cm-new")?.app === "db");
    expect(reflector.get("r/cm-0")).toBeUndefined();
  });

  it("recovers by itself after the apiserver restarts, catching up on what changed meanwhile", async () => {
    const restartsBefore = reflector.stats.restarts;
    await cp.restartApiserver(1_000);
    await put("cm-after", { ip: "10.0.7.7", app: "after" });
    await until(
      "the change made after the restart",
      () => reflector.get("r/cm-after")?.app === "after",
      60_000,
    );
    expect(reflector.stats.restarts).toBeGreaterThan(restartsBefore);
    expect(reflector.healthy()).toBe(true);
  });
});
