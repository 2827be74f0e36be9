// The chart's RBAC is enough, not only small: the real reconcile loop, with leader election and
// Events, runs as the chart's ServiceAccount (a token from the TokenRequest API, no admin rights)
// against the control plane and the EC2 emulator, brings a policy to Ready, publishes the VNI map,
// and is never refused by the apiserver.
import { execFile } from "node:child_process";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION } from "../../src/api/resources.ts";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { makeOperatorMetrics } from "../../src/controller/metrics.ts";
import { makeReconcileCycle, VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { VniMap } from "../../src/api/vni-map.ts";
import { watchVniMapConfigMap } from "../../src/collector/map-watch-api.ts";
import { OperatorRuntime } from "../../src/controller/runtime.ts";
import { EventRecorder } from "../../src/k8s/objects.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  until,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";
import { publishedMap } from "../fixtures/mirroring.ts";
import { installCrds } from "../harness/crds.ts";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";
import { CHART_DIR } from "../tools/render-config.ts";

const run = promisify(execFile);
const kubeconfigPath = inject("kubeconfigPath");
const admin = new KubeConfig();
admin.loadFromFile(kubeconfigPath);
const adminRest = new KubeRest(admin);

const NS = "rbac-system";
const APP_NS = "rbac-app";
const SA = "rbac-traffic-mirror-operator";
const COLLECTOR_SA = "rbac-traffic-mirror-operator-collector";
// Node indexes 748 (collector) and 749 are this suite's share of the chart suites' 740-749.
const FIRST = 748;
const COLLECTOR = { "rbac-test.twtech.io/collector": "true" };

/** A KubeConfig that authenticates as the ServiceAccount, with a token the apiserver issued. */
async function serviceAccountConfig(sa = SA): Promise<KubeConfig> {
  const answer = await adminRest.request<{ status: { token: string } }>({
    method: "POST",
    path: `/api/v1/namespaces/${NS}/serviceaccounts/${sa}/token`,
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
    what: "requesting a ServiceAccount token",
  });
  const cluster = admin.getCurrentCluster()!;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, name: "harness" }],
    users: [{ name: sa, token: answer.status.token }],
    contexts: [{ name: "sa", cluster: "harness", user: sa }],
    currentContext: "sa",
  });
  return kc;
}

describe("chart RBAC is sufficient", () => {
  let sim: Ec2Sim;
  let runtime: OperatorRuntime;
  const logLines: string[] = [];

  beforeAll(async () => {
    await installCrds(adminRest);
    await createNamespaces(adminRest, [NS, APP_NS]);
    // Only the RBAC and ServiceAccount templates: the operator runs in this process instead.
    const { stdout } = await run(
      "helm",
      [
        "template",
        "rbac",
        CHART_DIR,
        "-n",
        NS,
        "--set",
        "clusterName=rbac",
        "--show-only",
        "templates/rbac.yaml",
        "--show-only",
        "templates/serviceaccount.yaml",
      ],
      { env: { ...process.env, PATH: `${TOOLS_BIN}:${process.env.PATH ?? ""}` }, cwd: REPO_ROOT },
    );
    const apply = run("kubectl", ["apply", "-n", NS, "-f", "-"], {
      env: { ...process.env, PATH: `${TOOLS_BIN}:${process.env.PATH ?? ""}`, KUBECONFIG: kubeconfigPath },
    });
    apply.child.stdin?.end(stdout);
    await apply;

    sim = await startEc2Sim();
    seed(
      sim.state,
      makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] }).inventory,
    );
    await createEksNodes(adminRest, {
      first: FIRST,
      count: 2,
      collectors: [FIRST],
      pool: "rbac",
      prefix: "rbac",
      collectorLabels: COLLECTOR,
    });
    await createCollectorTarget(adminRest, "rbac-collector", {
      collector: { nodeSelector: COLLECTOR, selectionMode: "Pod" },
      allowNodeSources: true,
    });

    const kc = await serviceAccountConfig();
    const rest = new KubeRest(kc);
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
        done();
      },
    });
    const log = pino({ level: "warn" }, sink);
    const metrics = makeOperatorMetrics();
    const api = new Ec2MirrorApi({
      client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
      cluster: "rbac",
    });
    runtime = new OperatorRuntime({
      kc,
      rest,
      log,
      metrics,
      resyncMs: 60_000,
      leaderElection: { namespace: NS, identity: "rbac-test" },
      cycle: makeReconcileCycle({
        api,
        rest,
        cluster: "rbac",
        namespace: NS,
        dryRun: false,
        concurrency: 2,
        metrics,
        events: new EventRecorder({
          rest,
          log,
          controller: "trafficmirror.twtech.io/operator",
          instance: "rbac-test",
        }),
      }),
    });
    await runtime.start();
  });

  afterAll(async () => {
    const policy = `/apis/${API_VERSION}/namespaces/${APP_NS}/trafficmirrorpolicies/nodes`;
    await adminRest.request({ method: "DELETE", path: policy, what: "deleting" }).catch(() => undefined);
    await until("policy gone", () =>
      adminRest.get(policy, "probing").then(
        () => undefined,
        () => true,
      ),
    ).catch(() => undefined);
    const target = `/apis/${API_VERSION}/trafficmirrortargets/rbac-collector`;
    await adminRest.request({ method: "DELETE", path: target, what: "deleting" }).catch(() => undefined);
    await until("target gone", () =>
      adminRest.get(target, "probing").then(
        () => undefined,
        () => true,
      ),
    ).catch(() => undefined);
    await runtime?.stop();
    await sim?.stop();
    await deleteNodes(adminRest, "rbac-");
    for (const path of [
      `/apis/rbac.authorization.k8s.io/v1/clusterroles/rbac-traffic-mirror-operator`,
      `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rbac-traffic-mirror-operator`,
    ])
      await adminRest.request({ method: "DELETE", path, what: "deleting" }).catch(() => undefined);
  });

  it("is not an admin: the ServiceAccount cannot read Secrets", async () => {
    const rest = new KubeRest(await serviceAccountConfig());
    await expect(rest.get(`/api/v1/namespaces/${NS}/secrets`, "listing secrets")).rejects.toThrow(/403/);
  });

  it("leads, reconciles a policy to Ready, publishes the VNI map and records Events, never refused", async () => {
    await createPolicy(adminRest, {
      namespace: APP_NS,
      name: "nodes",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": "rbac" } },
        targetRef: { name: "rbac-collector" },
      },
    });
    await until("policy Ready", async () => {
      const p = await adminRest.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
        `/apis/${API_VERSION}/namespaces/${APP_NS}/trafficmirrorpolicies/nodes`,
        "reading policy",
      );
      return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? true : undefined;
    });
    expect(runtime.leading).toBe(true);
    const lease = await adminRest.get<{ spec: { holderIdentity: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/traffic-mirror-operator`,
      "reading lease",
    );
    expect(lease.spec.holderIdentity).toBe("rbac-test");
    // The map is published after status in the same cycle: wait for the one with the sessions.
    const sessions = await until("the VNI map with the policy's sessions", async () => {
      const n = (await publishedMap(adminRest, NS)).map.sessions.length;
      return n > 0 ? n : undefined;
    });
    expect(sessions).toBeGreaterThan(0);
    const events = await until("an Event about the policy", async () => {
      const list = await adminRest.get<{ items: { regarding: { name: string } }[] }>(
        `/apis/events.k8s.io/v1/namespaces/${APP_NS}/events`,
        "listing events",
      );
      const mine = list.items.filter((e) => e.regarding.name === "nodes");
      return mine.length > 0 ? mine : undefined;
    });
    expect(events.length).toBeGreaterThan(0);
    expect(logLines.filter((l) => /403|forbidden/i.test(l))).toEqual([]);
  });

  it("lets the collector's ServiceAccount watch the VNI map and read nothing else", async () => {
    const kc = await serviceAccountConfig(COLLECTOR_SA);
    const maps: VniMap[] = [];
    const errors: Error[] = [];
    const stop = watchVniMapConfigMap({
      kc,
      namespace: NS,
      name: VNI_MAP_CONFIGMAP,
      log: pino({ level: "silent" }),
      onMap: (m) => maps.push(m),
      onError: (e) => errors.push(e),
    });
    try {
      const map = await until("the map through the collector's watch", () =>
        Promise.resolve(maps.find((m) => m.sessions.length > 0)),
      );
      expect(map.sessions.length).toBeGreaterThan(0);
      expect(errors).toEqual([]);
    } finally {
      await stop();
    }
    const rest = new KubeRest(kc);
    await expect(rest.get(`/api/v1/namespaces/${NS}/configmaps`, "listing every ConfigMap")).rejects.toThrow(
      /403/,
    );
    await expect(rest.get(`/api/v1/namespaces/${NS}/secrets`, "listing secrets")).rejects.toThrow(/403/);
    await expect(rest.get(`/api/v1/pods`, "listing pods")).rejects.toThrow(/403/);
  });
});
