// `make demo`: the product's main job on one machine. A real control plane with EKS-like kwok
// nodes, the EC2 emulator seeded with the matching VPC, `helm install` of the chart (CRDs, RBAC,
// ServiceAccounts; the operator and the collector themselves run here as local processes), a
// sample target and policy, a workload, and the emulator's data plane sending synthetic pod traffic
// that AWS's rules would mirror to the collector. It prints a live table of policies, sessions and
// capture files. Ctrl-C stops everything. `--once` exits after tshark has read a closed capture file.
// `--real-node` (root, after `make image`): the operator and the collector run as the chart's pods
// instead, on a real kubelet with containerd beside the kwok nodes (test/harness/real-node.ts).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AppsV1Api, KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import {
  readVniMapConfigMap,
  vniMapPayload,
  type VniMap,
  type VniMapConfigMap,
} from "../../src/api/vni-map.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim } from "../ec2-sim/server.ts";
import { startCollectorProcess } from "../fixtures/collector.ts";
import { IMAGE, imageUnavailable } from "../fixtures/image.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { freePorts, REPO_ROOT, startControlPlane, TOOLS_BIN } from "../harness/controlplane.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  until,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";
import {
  POD_GATEWAY,
  REAL_NODE_LABEL,
  REAL_NODE_TAINT,
  realNodeUnavailable,
  startRealNode,
  type RealNode,
} from "../harness/real-node.ts";
import { stringify } from "yaml";

const once = process.argv.includes("--once");
const realNode = process.argv.includes("--real-node");
const NODES = 4;
const stateDir = mkdtempSync(join(tmpdir(), "tmo-harness-demo-"));
const say = (m: string): void => console.log(`[demo] ${m}`);

if (realNode) {
  const why = realNodeUnavailable() ?? imageUnavailable();
  if (why) {
    say(`--real-node: not on this machine: ${why}`);
    process.exit(1);
  }
}
say("starting a local control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok)");
const cp = await startControlPlane({ stateDir });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const rest = new KubeRest(kc);
const sim = await startEc2Sim();
const world = makeWorld({ nodes: NODES, podsPerNode: 0, collectors: [0] });
seed(sim.state, world.inventory);
say(`EC2 emulator on ${sim.url}, seeded with ${NODES} m5.large instances and their ENIs`);
await createEksNodes(rest, { first: 0, count: NODES, collectors: [0], pool: "apps" });
const NS = "traffic-mirror-system";
// The collector pod's hostPath: kept after the demo, like the local collector's files.
const captures = join(mkdtempSync(join(tmpdir(), "tmo-demo-")), "captures");
let node: RealNode | undefined;
if (realNode) {
  node = await startRealNode({
    server: cp.server,
    kubeconfigPath: cp.kubeconfigPath,
    caCert: cp.pki.caCert,
    caKey: cp.pki.caKey,
    images: [IMAGE],
    gatewayPorts: [Number(new URL(sim.url).port)],
    log: (m) => say(`real node: ${m}`),
  });
  say(`a real node, ${node.name}, joined beside the kwok nodes (kubelet, containerd, runc)`);
}
// The chart as people install it. Without a real node its Deployment and DaemonSet are scaled to
// nothing, because kwok pods run no code: the operator and the collector run below as local
// processes. With one, they are the chart's pods on it, from the image make image built.
const onRealNode = {
  nodeSelector: REAL_NODE_LABEL,
  tolerations: [{ ...REAL_NODE_TAINT, operator: "Equal" }],
};
const values = realNode
  ? {
      clusterName: "demo",
      image: {
        repository: IMAGE.slice(0, IMAGE.lastIndexOf(":")),
        tag: IMAGE.slice(IMAGE.lastIndexOf(":") + 1),
        pullPolicy: "Never",
      },
      aws: { region: "us-east-1", ec2Endpoint: `http://${POD_GATEWAY}:${new URL(sim.url).port}` },
      operator: {
        ...onRealNode,
        logLevel: "warn",
        extraEnv: [
          { name: "AWS_ACCESS_KEY_ID", value: "demo" },
          { name: "AWS_SECRET_ACCESS_KEY", value: "demo" },
        ],
      },
      collector: {
        ...onRealNode,
        nodeSelector: { ...REAL_NODE_LABEL, "traffic-mirror.twtech.io/collector": null },
        rotation: { maxFileSeconds: 10 },
        storage: { type: "hostPath", hostPath: { path: captures } },
      },
    }
  : { clusterName: "demo", operator: { replicas: 0 }, collector: { enabled: false } };
writeFileSync(join(stateDir, "values.yaml"), stringify(values));
execFileSync(
  join(TOOLS_BIN, "helm"),
  [
    "install",
    "traffic-mirror",
    join(REPO_ROOT, "charts/traffic-mirror-operator"),
    "--kubeconfig",
    cp.kubeconfigPath,
    "-n",
    NS,
    "--create-namespace",
    "-f",
    join(stateDir, "values.yaml"),
    ...(realNode ? ["--wait", "--timeout", "300s"] : []),
  ],
  { stdio: ["ignore", "ignore", "inherit"] },
);
say(
  realNode
    ? "helm install traffic-mirror charts/traffic-mirror-operator: the operator (2 replicas) and the collector run as pods"
    : "helm install traffic-mirror charts/traffic-mirror-operator (CRDs, RBAC, ServiceAccounts, Services)",
);
await createNamespaces(rest, ["shop"]);
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
/** Where the demo's collector is: a local process, or the chart's pod (host network) on the real node. */
interface DemoCollector {
  dir: string;
  files(subdir: string): string[];
  sample(name: string, labels?: string): Promise<number>;
  writeMap?(map: VniMap): void;
  stop(): Promise<void>;
}
let op: ChildProcess | undefined;
let collector: DemoCollector;
const collectorEni = world.inventory.networkInterfaces.find(
  (e) => e.instanceId === world.inventory.instances[0]!.instanceId && e.deviceIndex === 0,
)!;
if (!realNode) {
  const [metricsPort, healthPort] = (await freePorts(2)) as [number, number];
  // Under setpriv: the kernel stops the operator if this process dies without cleaning up.
  op = spawn("setpriv", ["--pdeathsig", "SIGTERM", "--", process.execPath, "src/cmd/main.ts", "operator"], {
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
  });
  say(`operator running (pid ${op.pid}); metrics on http://127.0.0.1:${metricsPort}/metrics`);
  const local = await startCollectorProcess({
    stateDir,
    env: { TMO_COLLECTOR_ROTATE_SECONDS: "10", TMO_LOG_LEVEL: "warn" },
  });
  collector = local;
  // Copies sent to the collector node's ENI arrive at the local collector.
  sim.dataPlane.setEndpoint(collectorEni.networkInterfaceId, { port: local.port });
  say(`collector receiving VXLAN on 127.0.0.1:${local.port}; capture files under ${local.dir}`);
} else {
  // The pod listens on the host's UDP 4789 and serves /metrics on 9102 (host network).
  collector = {
    dir: captures,
    files(subdir) {
      // (Never made here: the collector's user must own what it writes into.)
      const d = join(captures, subdir);
      if (!existsSync(d)) return [];
      return readdirSync(d)
        .filter((f) => f.endsWith(".pcapng"))
        .map((f) => join(d, f))
        .sort((x, y) => statSync(x).mtimeMs - statSync(y).mtimeMs);
    },
    async sample(name, labels = "") {
      const text = await fetch("http://127.0.0.1:9102/metrics")
        .then((r) => r.text())
        .catch(() => "");
      const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
    },
    stop: () => Promise.resolve(),
  };
  sim.dataPlane.setEndpoint(collectorEni.networkInterfaceId, { port: 4789 });
  say(`the collector pod receives VXLAN on this machine's UDP 4789; capture files under ${captures}`);
}
say(`KUBECONFIG=${cp.kubeconfigPath} kubectl get trafficmirrorpolicies -A   # to look yourself`);

let stopping = false;
const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true;
    say("stopping");
    const child = op;
    if (child) {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
    }
    await collector.stop();
    await node?.stop();
    sim.dataPlane.close();
    await sim.stop();
    await cp.stop();
    rmSync(stateDir, { recursive: true, force: true });
    if (!once) say(`capture files kept in ${collector.dir}`);
  }
  process.exit(code);
};
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

/** What kubelet does for the DaemonSet: the operator's VNI map ConfigMap, as the collector's file. */
let lastMap = "";
async function syncVniMap(): Promise<void> {
  const cm = await rest
    .get<VniMapConfigMap>(`/api/v1/namespaces/${NS}/configmaps/${VNI_MAP_CONFIGMAP}`, "map")
    .catch(() => undefined);
  const payload = cm && vniMapPayload(cm);
  if (!payload || !collector.writeMap) return; // the pod watches it itself
  const text = JSON.stringify(payload);
  if (text === lastMap) return;
  lastMap = text;
  collector.writeMap(readVniMapConfigMap(payload, `ConfigMap ${NS}/${VNI_MAP_CONFIGMAP}`)!);
  await sleep(500); // the collector polls its map file every 200 ms
}

let request = 0;
/** HTTP requests from outside to every web pod (mirrored) and DNS from them (not mirrored). */
async function sendTraffic(): Promise<number> {
  const pods = await rest.get<{ items: { status?: { podIP?: string } }[] }>(
    "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb",
    "pods",
  );
  const packets: SyntheticPacket[] = [];
  for (const p of pods.items) {
    const ip = p.status?.podIP;
    if (!ip) continue;
    request++;
    packets.push(
      {
        src: "10.99.0.7",
        dst: ip,
        protocol: 6,
        srcPort: 40000 + (request % 20000),
        dstPort: 80,
        payload: `GET /orders/${request} HTTP/1.1\r\nHost: shop\r\n\r\n`,
      },
      { src: ip, dst: "169.254.169.253", protocol: 17, srcPort: 50000, dstPort: 53, payloadLength: 40 },
    );
  }
  return (await sim.dataPlane.send(packets)).filter((c) => c.sent).length;
}

function tsharkSummary(file: string): string[] {
  const fields = ["frame.interface_name", "ip.src", "ip.dst", "http.request.uri"];
  return tsharkFields(file, fields, { home: stateDir }).map((r) => r.join("\t"));
}

let mirrored = 0;
const deadline = Date.now() + 180_000;
for (;;) {
  if (stopping) await new Promise(() => undefined); // Ctrl-C: stop() exits the process
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
  if (realNode) {
    const pods = await rest.get<{
      items: { metadata: { name: string }; status?: { phase?: string; podIP?: string } }[];
    }>(`/api/v1/namespaces/${NS}/pods`, "pods");
    const lease = await rest
      .get<{ spec: { holderIdentity?: string } }>(
        `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/traffic-mirror-operator`,
        "lease",
      )
      .catch(() => undefined);
    for (const p of pods.items)
      console.log(
        `  pod ${p.metadata.name}\t${p.status?.phase ?? "-"}\t${p.status?.podIP ?? "-"}${p.metadata.name === lease?.spec.holderIdentity ? "\t(leader)" : ""}`,
      );
  }
  for (const s of sessions)
    console.log(
      `    ${s.trafficMirrorSessionId} on ${s.networkInterfaceId} → ${s.trafficMirrorTargetId} number ${s.sessionNumber} VNI ${s.virtualNetworkId}`,
    );
  const allReady =
    list.items.length > 0 &&
    list.items.every((p) => p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True");
  await syncVniMap();
  if (allReady) mirrored += await sendTraffic();
  const files = collector.files("shop/web-http");
  console.log(
    `  collector: ${mirrored} copies sent, ${await collector.sample("tmo_collector_packets_total", '{policy="shop/web-http"}')} received for shop/web-http, ${files.length} closed pcapng files in ${join(collector.dir, "shop/web-http")}`,
  );
  if (once && allReady && files.length > 0) {
    const rows = tsharkSummary(files[0]!);
    say(`tshark -r ${files[0]} reads ${rows.length} packets, for example:`);
    for (const r of rows.slice(0, 5)) console.log(`    ${r}`);
    await stop(rows.length > 0 ? 0 : 1);
  }
  if (once && Date.now() > deadline) {
    say("timed out waiting for the policy to become Ready and a capture file to close");
    await stop(1);
  }
  await sleep(2_000);
}
