// `make demo`: the product's main job on one machine. A real control plane with EKS-like kwok
// nodes, the EC2 emulator seeded with the matching VPC, the CRDs and a sample target and policy,
// a workload, and the operator as its own process; then a live table of what is mirrored.
// Ctrl-C stops everything. `--once` exits after the policy is Ready (for a quick check).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AppsV1Api, KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim } from "../ec2-sim/server.ts";
import { freePorts, REPO_ROOT, startControlPlane } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  until,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const once = process.argv.includes("--once");
const NODES = 4;
const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-demo-"));
const say = (m: string): void => console.log(`[demo] ${m}`);

say("starting a local control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok)");
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
const sim = await startEc2Sim();
seed(sim.state, makeWorld({ nodes: NODES, podsPerNode: 0, collectors: [0] }).inventory);
say(`EC2 emulator on ${sim.url}, seeded with ${NODES} m5.large instances and their ENIs`);
await createEksNodes(rest, { first: 0, count: NODES, collectors: [0], pool: "apps" });
await installCrds(rest);
await createNamespaces(rest, ["traffic-mirror-system", "shop"]);
await createCollectorTarget(rest, "in-cluster-collector", {
  allowedNamespaces: { from: "List", names: ["shop"] },
});
await createPolicy(rest, {
  namespace: "shop",
  name: "web-http",
  spec: {
    podSelector: { matchLabels: { app: "web" } },
    targetRef: { name: "in-cluster-collector" },
    filter: {
      rules: [{ direction: "both", action: "accept", protocol: "TCP", localPorts: { from: 80, to: 80 } }],
      mirrorDns: false,
    },
  },
});
await until("the default ServiceAccount in shop", () =>
  rest.get("/api/v1/namespaces/shop/serviceaccounts/default", "sa"),
);
await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
  namespace: "shop",
  body: {
    metadata: { name: "web" },
    spec: {
      replicas: 6,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        // Application pods stay off the collector node: an ENI that is a mirror target is never a source.
        spec: {
          nodeSelector: { "example.com/pool": "apps" },
          containers: [{ name: "web", image: "registry.example/web:1" }],
        },
      },
    },
  },
});
say("applied a TrafficMirrorTarget, a TrafficMirrorPolicy and a 6-pod Deployment");
const [metricsPort, healthPort] = (await freePorts(2)) as [number, number];
// Under setpriv: the kernel stops the operator if this process dies without cleaning up.
const op = spawn(
  "setpriv",
  ["--pdeathsig", "SIGTERM", "--", process.execPath, "src/cmd/main.ts", "operator"],
  {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      KUBECONFIG: cp.kubeconfigPath,
      TMO_CLUSTER_NAME: "demo",
      TMO_NAMESPACE: "traffic-mirror-system",
      TMO_EC2_ENDPOINT: sim.url,
      AWS_REGION: "us-east-1",
      TMO_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
      TMO_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
      TMO_LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  },
);
say(`operator running (pid ${op.pid}); metrics on http://127.0.0.1:${metricsPort}/metrics`);
say(`KUBECONFIG=${cp.kubeconfigPath} kubectl get trafficmirrorpolicies -A   # to look yourself`);

let stopping = false;
const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true;
    say("stopping");
    op.kill("SIGTERM");
    await new Promise((r) => (op.exitCode !== null ? r(null) : op.once("exit", r)));
    await sim.stop();
    await cp.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
  process.exit(code);
};
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

const deadline = Date.now() + 120_000;
for (;;) {
  const list = await rest.get<{
    items: { metadata: { namespace: string; name: string }; status?: PolicyStatus }[];
  }>(`/apis/${API_VERSION}/trafficmirrorpolicies`, "list");
  const lines = list.items.map((p) => {
    const ready = p.status?.conditions?.find((c) => c.type === "Ready");
    return `${p.metadata.namespace}/${p.metadata.name}\tReady=${ready?.status ?? "-"} (${ready?.reason ?? "-"})\tpods=${p.status?.selectedPods ?? 0} mirrored=${p.status?.mirroredSources ?? 0} sessions=${p.status?.sessionCount ?? 0}`;
  });
  const sessions = [...sim.state.sessions.values()];
  console.log(
    `\n${new Date().toISOString()}  EC2: ${sessions.length} sessions, ${sim.state.filters.size} filters, ${sim.state.targets.size} targets`,
  );
  for (const l of lines) console.log(`  ${l}`);
  for (const s of sessions)
    console.log(
      `    ${s.trafficMirrorSessionId} on ${s.networkInterfaceId} → ${s.trafficMirrorTargetId} number ${s.sessionNumber} VNI ${s.virtualNetworkId}`,
    );
  const allReady =
    list.items.length > 0 &&
    list.items.every((p) => p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True");
  if (once && allReady) {
    say("the policy is Ready and its sessions exist; the packet collector arrives with the collector work");
    await stop(0);
  }
  if (once && Date.now() > deadline) {
    say("timed out waiting for the policy to become Ready");
    await stop(1);
  }
  await sleep(2_000);
}
