// The chart's pods for real (make e2e-node): a real kubelet with containerd and runc joins the test
// control plane beside the kwok nodes, and `helm install` runs the image `make image` built on it.
// Both operator replicas run with the in-cluster config of their ServiceAccount and one holds the
// Lease; the collector (host network, UDP 4789) receives the emulator's VXLAN copies and writes
// pcapng files into its hostPath, which tshark reads. The leader is deleted while it converges:
// the other replica takes over, and AWS ends with no duplicate and no orphan. An upgrade rolls the
// pods and keeps the files; an uninstall with policies present removes what the operator made in
// AWS (docs/adr/0013). The hardening admission policies check is read from the running processes.
// `kubectl trafficmirror capture` streams from the collector pod's two workers through the
// apiserver's port-forward and leaves no policy and no session behind.
// Needs root, cgroups and the tools of `bash test/tools/install.sh real-node`; skips, saying
// why, where the machine cannot.
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { stringify } from "yaml";
import { API_VERSION } from "../../src/api/resources.ts";
import { isOwnedBy, TAG_KEY } from "../../src/api/tags.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import {
  containerPid,
  hostChanges,
  hostSnapshot,
  POD_GATEWAY,
  REAL_NODE_LABEL,
  REAL_NODE_TAINT,
  realNodeUnavailable,
  startRealNode,
  type RealNode,
} from "../harness/real-node.ts";
import { IMAGE, imageUnavailable } from "../fixtures/image.ts";
import { createPod, runningPodIp } from "../fixtures/mirroring.ts";
import { createEksNodes, createNamespaces, createPolicy, deleteNodes, until } from "../fixtures/scenario.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { makeWorld } from "../fixtures/world.ts";

const why = realNodeUnavailable() ?? imageUnavailable();
if (why) console.warn(`real node tests skipped: ${why}`);

const kubeconfigPath = inject("kubeconfigPath");
const stateDir = inject("harnessStateDir");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);

const RELEASE = "tmo";
const NS = "tmo-real";
const APPS = "real-apps";
const CLUSTER = "realnode";
const FIRST = 700; // kwok nodes 700–701 are collector nodes, 702–709 workload nodes
const COLLECTORS = 2;
const WORKERS = 8;
const PREFIX = "realnode";
const COLLECTOR_LABEL = { "realnode.test/collector": "true" };
const CLIENT = "10.0.200.10";
const world = makeWorld({
  nodes: COLLECTORS + WORKERS,
  podsPerNode: 0,
  firstIndex: FIRST,
  collectors: [FIRST, FIRST + 1],
});

let sim: Ec2Sim;
let node: RealNode | undefined;
let captures: string;
let home: string;
const hostBefore = why ? undefined : hostSnapshot();
const figures: Record<string, string> = {};

const helmEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  KUBECONFIG: kubeconfigPath,
  HELM_CACHE_HOME: home,
  HELM_CONFIG_HOME: home,
});
const helm = (...args: string[]): string =>
  execFileSync(join(TOOLS_BIN, "helm"), args, {
    encoding: "utf8",
    env: helmEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
/** `helm` without blocking the event loop, for what must be watched while helm runs. */
const helmAsync = async (...args: string[]): Promise<string> =>
  (await promisify(execFile)(join(TOOLS_BIN, "helm"), args, { encoding: "utf8", env: helmEnv() })).stdout;

interface Pod {
  metadata: { name: string; uid: string; creationTimestamp: string; labels: Record<string, string> };
  spec: {
    nodeName?: string;
    hostNetwork?: boolean;
    securityContext?: Record<string, unknown>;
    containers: { name: string; env?: { name: string }[]; resources?: { limits?: Record<string, string> } }[];
  };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime: string }[];
    containerStatuses?: { name: string; containerID?: string; ready: boolean }[];
  };
}

const pods = async (component: "operator" | "collector"): Promise<Pod[]> =>
  (
    await rest.get<{ items: Pod[] }>(
      `/api/v1/namespaces/${NS}/pods?labelSelector=app.kubernetes.io/component=${component}`,
      "listing pods",
    )
  ).items.filter((p) => !(p.metadata as { deletionTimestamp?: string }).deletionTimestamp);
const ready = (p: Pod): boolean =>
  p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

interface Lease {
  spec: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}
const lease = (): Promise<Lease> =>
  rest.get<Lease>(
    `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/traffic-mirror-operator`,
    "reading lease",
  );
/** The holder of a lease that has not expired, or undefined. */
function validHolder(l: Lease): string | undefined {
  const { holderIdentity, renewTime, leaseDurationSeconds } = l.spec;
  if (!holderIdentity || !renewTime) return undefined;
  return Date.parse(renewTime) + (leaseDurationSeconds ?? 15) * 1000 > Date.now()
    ? holderIdentity
    : undefined;
}

/** AWS resources this cluster owns in the emulator, by kind, and the keys held more than once. */
function owned(): {
  sessions: number;
  filters: number;
  targets: number;
  duplicates: string[];
  orphans: string[];
} {
  const byKey = new Map<string, number>();
  const mine = <T extends { tags: Record<string, string> }>(m: Map<string, T>): T[] =>
    [...m.values()].filter((r) => isOwnedBy(r.tags, CLUSTER));
  const sessions = mine(sim.state.sessions);
  const filters = mine(sim.state.filters);
  const targets = mine(sim.state.targets);
  for (const r of [...sessions, ...filters, ...targets]) {
    const k = r.tags[TAG_KEY]!;
    byKey.set(k, (byKey.get(k) ?? 0) + 1);
  }
  const used = new Set(sessions.flatMap((s) => [s.trafficMirrorFilterId, s.trafficMirrorTargetId]));
  const orphans = [
    ...filters.filter((f) => !used.has(f.trafficMirrorFilterId)).map((f) => f.trafficMirrorFilterId),
    ...targets.filter((t) => !used.has(t.trafficMirrorTargetId)).map((t) => t.trafficMirrorTargetId),
  ];
  return {
    sessions: sessions.length,
    filters: filters.length,
    targets: targets.length,
    duplicates: [...byKey].filter(([, n]) => n > 1).map(([k]) => k),
    orphans,
  };
}

const policyReady = (name: string, mirrored?: number) =>
  until(
    `policy ${name} Ready with ${mirrored ?? "its"} sources`,
    async () => {
      const p = await rest.get<{
        status?: { mirroredSources?: number; conditions?: { type: string; status: string }[] };
      }>(`/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies/${name}`, "reading policy");
      const ok =
        (mirrored === undefined || p.status?.mirroredSources === mirrored) &&
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      return ok ? true : undefined;
    },
    180_000,
  );

/** Capture files the collector pod wrote for a policy, in its hostPath. */
function captureFiles(policy: string): string[] {
  const d = join(captures, APPS, policy);
  return existsSync(d)
    ? readdirSync(d)
        .filter((f) => f.endsWith(".pcapng"))
        .map((f) => join(d, f))
    : [];
}

/** Sends `n` packets to and from the web pods; the client port marks the round. */
async function traffic(ips: string[], round: number): Promise<number> {
  const packets: SyntheticPacket[] = ips.flatMap((ip, i) => [
    { src: CLIENT, dst: ip, protocol: 6, srcPort: round * 100 + i, dstPort: 80, payload: "in" },
    { src: ip, dst: CLIENT, protocol: 6, srcPort: 80, dstPort: round * 100 + i, payload: "out" },
  ]);
  return (await sim.dataPlane.send(packets)).filter((c) => c.sent).length;
}

/** The packets of a round in the policy's files, as tshark reads them. */
function capturedRound(policy: string, round: number): string[][] {
  return captureFiles(policy)
    .flatMap((f) => tsharkFields(f, ["ip.src", "ip.dst", "tcp.srcport", "tcp.dstport"], { home }))
    .filter(([, , sp, dp]) => Math.floor(Number(sp === "80" ? dp : sp) / 100) === round);
}

function valuesFile(): string {
  const f = join(home, "values.yaml");
  writeFileSync(f, values());
  return f;
}

function values(): string {
  const onRealNode = {
    nodeSelector: REAL_NODE_LABEL,
    tolerations: [{ ...REAL_NODE_TAINT, operator: "Equal" }],
  };
  const [repository, tag] = [IMAGE.slice(0, IMAGE.lastIndexOf(":")), IMAGE.slice(IMAGE.lastIndexOf(":") + 1)];
  return stringify({
    clusterName: CLUSTER,
    image: { repository, tag, pullPolicy: "Never" },
    aws: {
      region: "us-east-1",
      ec2Endpoint: `${new URL(sim.url).protocol}//${POD_GATEWAY}:${new URL(sim.url).port}`,
    },
    operator: {
      ...onRealNode,
      extraEnv: [
        { name: "AWS_ACCESS_KEY_ID", value: "test" },
        { name: "AWS_SECRET_ACCESS_KEY", value: "test" },
      ],
    },
    collector: {
      ...onRealNode,
      // Only the real node (null drops the chart's default collector label from the selector).
      nodeSelector: { ...REAL_NODE_LABEL, "traffic-mirror.twtech.io/collector": null },
      rotation: { maxFileSeconds: 1 },
      // Two receive workers: the plugin's capture merges their streams.
      workers: 2,
      storage: { type: "hostPath", hostPath: { path: captures } },
    },
  });
}

describe.skipIf(why !== undefined)("the chart on a real node", () => {
  const webIps: string[] = [];

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "tmo-realnode-"));
    captures = join(home, "captures");
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    await createEksNodes(rest, {
      first: FIRST,
      count: COLLECTORS + WORKERS,
      collectors: [FIRST, FIRST + 1],
      pool: PREFIX,
      prefix: PREFIX,
      collectorLabels: COLLECTOR_LABEL,
    });
    // The copies for the collector nodes' ENIs arrive on this machine's UDP 4789: the real node's
    // collector pod (host network) listens there.
    for (let i = 0; i < COLLECTORS; i++)
      sim.dataPlane.setEndpoint(world.inventory.networkInterfaces[2 * i]!.networkInterfaceId, { port: 4789 });
    // Each flow from its own outer source port, as AWS sends them: the collector's two workers share them.
    sim.dataPlane.spreadFlows(16);
    node = await startRealNode({
      server: inject("apiServer"),
      kubeconfigPath,
      caCert: join(stateDir, "ca.crt"),
      caKey: join(stateDir, "ca.key"),
      images: [IMAGE],
      gatewayPorts: [Number(new URL(sim.url).port)],
      log: (m) => console.log(`[real-node] ${m}`),
    });
    await createNamespaces(rest, [APPS]);
    for (let i = 0; i < 2; i++) {
      const nodeName = (
        await rest.get<{ items: { metadata: { name: string; labels: Record<string, string> } }[] }>(
          `/api/v1/nodes?labelSelector=example.com/pool=${PREFIX}`,
          "listing nodes",
        )
      ).items[0]!.metadata.name;
      await createPod(rest, { namespace: APPS, name: `web-${i}`, nodeName, labels: { app: "web" } });
      webIps.push(await runningPodIp(rest, APPS, `web-${i}`));
    }
  }, 600_000); // another run may hold the real node for a few minutes

  afterEach((ctx) => {
    if (ctx.task.result?.state !== "fail") return;
    // What the release looks like, for the failure's reader.
    const kubectl = (...a: string[]): string => {
      try {
        return execFileSync(join(TOOLS_BIN, "kubectl"), ["--kubeconfig", kubeconfigPath, ...a], {
          encoding: "utf8",
        });
      } catch (err) {
        return String(err);
      }
    };
    console.log(kubectl("-n", NS, "get", "pods,ds,deploy,lease", "-o", "wide"));
    console.log(kubectl("-n", APPS, "get", "trafficmirrorpolicies", "-o", "jsonpath={.items[*].status}"));
    console.log(
      kubectl("-n", NS, "get", "events", "--sort-by=.lastTimestamp").split("\n").slice(-25).join("\n"),
    );
    console.log(
      kubectl(
        "-n",
        NS,
        "logs",
        "-l",
        "app.kubernetes.io/name=traffic-mirror-operator",
        "--tail=20",
        "--prefix",
      ),
    );
  });

  afterAll(async () => {
    try {
      for (const [k, v] of Object.entries(figures)) console.log(`figure: ${k}: ${v}`);
      try {
        helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "120s");
      } catch {
        // Uninstalled by the test already, or never installed.
      }
      await node?.stop();
      if (hostBefore) expect(hostChanges(hostBefore)).toEqual([]);
    } finally {
      sim?.dataPlane.close();
      await sim?.stop();
      await deleteNodes(rest, `${PREFIX}-`);
      if (home) rmSync(home, { recursive: true, force: true });
    }
  }, 300_000);

  it("installs: both operator replicas run from the in-cluster config and one holds the Lease", async () => {
    const t0 = Date.now();
    helm(
      ...["install", RELEASE, join(REPO_ROOT, "charts", "traffic-mirror-operator")],
      ...["-n", NS, "--create-namespace", "--wait", "--timeout", "240s", "-f", valuesFile()],
    );
    // --wait lets a Deployment through with maxUnavailable (1) of its replicas not Ready.
    const ops = await until("both operator replicas Ready", async () => {
      const p = await pods("operator");
      return p.length === 2 && p.every(ready) ? p : undefined;
    });
    figures["helm install → both replicas Ready"] = `${Date.now() - t0} ms`;
    for (const p of ops) {
      expect(p.status.phase).toBe("Running");
      expect(p.spec.nodeName).toBe(node!.name);
      expect(p.status.podIP).toMatch(/^10\.244\.0\./);
      expect(p.spec.containers[0]!.env?.map((e) => e.name)).not.toContain("KUBECONFIG");
    }
    const holder = await until("a lease holder", async () => validHolder(await lease()));
    expect(ops.map((p) => p.metadata.name)).toContain(holder);
    const col = await pods("collector");
    expect(col).toHaveLength(1);
    expect(col[0]!.spec.hostNetwork).toBe(true);
    const startToReady = [...ops, ...col].map(
      (p) =>
        Date.parse(p.status.conditions!.find((c) => c.type === "Ready")!.lastTransitionTime) -
        Date.parse(p.metadata.creationTimestamp),
    );
    figures["pod created → Ready (s, 1 s resolution)"] = startToReady.map((ms) => ms / 1000).join(", ");
  }, 300_000);

  it("runs hardened: non-root, read-only root, no capabilities, seccomp, limits (read from the processes)", async () => {
    for (const p of [...(await pods("operator")), ...(await pods("collector"))]) {
      const c = p.status.containerStatuses!.find((s) => s.name === p.spec.containers[0]!.name)!;
      const pid = containerPid(c.containerID!);
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim();
      const what = `${p.metadata.name} (pid ${pid})`;
      expect(field("Uid"), what).toBe("65532\t65532\t65532\t65532");
      expect(field("Gid"), what).toBe("65532\t65532\t65532\t65532");
      expect(field("CapEff"), what).toBe("0000000000000000");
      expect(field("CapBnd"), what).toBe("0000000000000000");
      expect(field("NoNewPrivs"), what).toBe("1");
      expect(field("Seccomp"), what).toBe("2"); // filter mode: the runtime's default profile
      const root = readFileSync(`/proc/${pid}/mountinfo`, "utf8")
        .split("\n")
        .find((l) => l.split(" ")[4] === "/")!;
      expect(root.split(" ")[5]!.split(","), what).toContain("ro");
      // The memory limit as the kernel enforces it (cgroup v1 here, v2 elsewhere).
      const limit = p.spec.containers[0]!.resources?.limits?.memory;
      expect(limit, what).toBe("1Gi");
      const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
      const v1 = cg.find((l) => /^\d+:memory:/.test(l))?.split(":")[2];
      const enforced = v1
        ? readFileSync(join("/sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"), "utf8")
        : readFileSync(
            join("/sys/fs/cgroup", cg.find((l) => l.startsWith("0::"))!.slice(3), "memory.max"),
            "utf8",
          );
      expect(Number(enforced), what).toBe(1024 ** 3);
    }
  });

  it("mirrors into the collector pod: the emulator's VXLAN copies become pcapng files in its hostPath", async () => {
    await rest.request({
      method: "POST",
      path: `/apis/${API_VERSION}/trafficmirrortargets`,
      what: "creating target",
      body: {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorTarget",
        metadata: { name: "realnode" },
        spec: {
          collector: { nodeSelector: COLLECTOR_LABEL },
          allowedNamespaces: { from: "List", names: [APPS] },
          allowNodeSources: true,
        },
      },
    });
    await createPolicy(rest, {
      namespace: APPS,
      name: "web",
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "realnode" } },
    });
    await policyReady("web", webIps.length);
    // The collector follows the operator's map through the apiserver: resend until it has it.
    const got = await until(
      "round 1 in the policy's files",
      async () => {
        await traffic(webIps, 1);
        await sleep(1_500);
        const r = capturedRound("web", 1);
        return r.length >= 2 * webIps.length ? r : undefined;
      },
      90_000,
    );
    const dirs = new Set(got.map(([src, dst]) => (src === CLIENT ? `${dst} in` : `${src} out`)));
    expect([...dirs].sort()).toEqual(webIps.flatMap((ip) => [`${ip} in`, `${ip} out`]).sort());
    const files = captureFiles("web");
    // Written by the collector's user, not root.
    expect(files.map((f) => statSync(f).uid)).toEqual(files.map(() => 65532));
    figures["capture files written by the collector pod (round 1)"] = String(files.length);
  }, 240_000);

  it("captures with the kubectl plugin through port-forward: both workers merged in time order, no other policy's packets, nothing left after", async () => {
    // Another policy's pod on the same node, mirrored to the same collector.
    const nodeName = (
      await rest.get<{ spec: { nodeName: string } }>(`/api/v1/namespaces/${APPS}/pods/web-0`, "pod")
    ).spec.nodeName;
    await createPod(rest, { namespace: APPS, name: "api-0", nodeName, labels: { app: "api" } });
    const apiIp = await runningPodIp(rest, APPS, "api-0");
    await createPolicy(rest, {
      namespace: APPS,
      name: "api",
      spec: { podSelector: { matchLabels: { app: "api" } }, targetRef: { name: "realnode" } },
    });
    await policyReady("api", 1);
    execFileSync(process.execPath, [join(REPO_ROOT, "test/tools/build-plugin.ts")], { stdio: "ignore" });
    const out = join(home, "out.pcapng");
    const t0 = Date.now();
    // As a user runs it: kubectl finds the bundled plugin on PATH and it port-forwards through the apiserver.
    const plugin = spawn(
      join(TOOLS_BIN, "kubectl"),
      ["trafficmirror", "capture", "-n", APPS, "-l", "app=web", "--for", "20s", "-w", out].concat([
        "--target",
        "realnode",
        "--collector-namespace",
        NS,
      ]),
      {
        env: {
          ...process.env,
          KUBECONFIG: kubeconfigPath,
          PATH: `${join(REPO_ROOT, "dist")}:${process.env["PATH"]}`,
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let said = "";
    plugin.stderr.on("data", (d: Buffer) => (said += d.toString()));
    const exited = new Promise<number | null>((resolve) => plugin.on("exit", (code) => resolve(code)));
    await until(
      "the plugin streaming",
      () => Promise.resolve(/streaming from 2 collector workers/.test(said) ? true : undefined),
      60_000,
    );
    figures["plugin: command → streaming from both workers"] = `${Date.now() - t0} ms`;
    const policy = /created TrafficMirrorPolicy (\S+)/.exec(said)![1]!;
    // Many flows, to the capture's pods and the other policy's, until the capture ends.
    for (let round = 10; Date.now() - t0 < 17_000; round++) {
      await traffic([...webIps, apiIp], round);
      await sleep(500);
    }
    expect(await exited, said).toBe(0);
    figures["plugin: --for 20s → exited after the AWS cleanup"] = `${Date.now() - t0} ms`;
    expect(said).toContain("mirror sessions removed; nothing is left in AWS");
    const rows = tsharkFields(out, ["frame.interface_name", "frame.time_epoch", "ip.src", "ip.dst"], {
      home,
    });
    expect(rows.length).toBeGreaterThan(20);
    const ends = new Set(rows.map(([, , src, dst]) => (src === CLIENT ? `${dst} in` : `${src} out`)));
    expect([...ends].sort()).toEqual(webIps.flatMap((ip) => [`${ip} in`, `${ip} out`]).sort());
    expect(rows.filter(([, , src, dst]) => src === apiIp || dst === apiIp)).toEqual([]);
    const interfaces = new Set(rows.map((r) => r[0]!.replace(/^.* (w\d)$/, "$1")));
    expect([...interfaces].sort()).toEqual(["w0", "w1"]);
    const times = rows.map((r) => Number(r[1]));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    figures["plugin: packets in out.pcapng (w0, w1)"] =
      `${rows.length} (${rows.filter((r) => r[0]!.endsWith("w0")).length}, ${rows.filter((r) => r[0]!.endsWith("w1")).length})`;
    // No policy of the plugin's left, and no session serving it.
    const left = await rest.get<{ items: unknown[] }>(
      `/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies?labelSelector=trafficmirror.twtech.io%2Fcapture`,
      "listing capture policies",
    );
    expect(left.items).toEqual([]);
    const serving = [...sim.state.sessions.values()].filter((x) =>
      (x.tags["traffic-mirror.twtech.io/owners"] ?? "").split(",").includes(policy),
    );
    expect(serving).toEqual([]);
    await rest.request({
      method: "DELETE",
      path: `/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies/api`,
      what: "deleting policy api",
    });
  }, 240_000);

  it("fails over when the leader is deleted during a converge: no duplicate, no orphan in AWS", async () => {
    const ops = await pods("operator");
    const leader = validHolder(await lease())!;
    const other = ops.map((p) => p.metadata.name).find((n) => n !== leader)!;
    const duration = (await lease()).spec.leaseDurationSeconds ?? 15;
    const before = sim.calls.length;
    // Each EC2 call takes 300 ms for this converge, so that the kill lands in the middle of it.
    sim.knobs.latencyMs = 300;
    await createPolicy(rest, {
      namespace: APPS,
      name: "nodes",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": PREFIX } },
        targetRef: { name: "realnode" },
      },
    });
    // A converge in flight: the leader has started creating sessions for the new policy.
    await until(
      "the leader creating sessions",
      () =>
        Promise.resolve(
          sim.calls.slice(before).some((c) => c.action === "CreateTrafficMirrorSession") ? true : undefined,
        ),
      60_000,
    );
    const workerEnis = world.inventory.networkInterfaces
      .slice(2 * COLLECTORS)
      .map((e) => e.networkInterfaceId);
    const mirrored = () =>
      new Set(
        [...sim.state.sessions.values()]
          .filter((x) => isOwnedBy(x.tags, CLUSTER))
          .map((x) => x.networkInterfaceId),
      );
    const atKill = workerEnis.filter((e) => mirrored().has(e)).length;
    const t0 = Date.now();
    await rest.request({
      method: "DELETE",
      path: `/api/v1/namespaces/${NS}/pods/${leader}`,
      what: "deleting the leader",
    });
    const next = await until(
      "a new lease holder",
      async () => {
        const h = validHolder(await lease());
        return h && h !== leader ? h : undefined;
      },
      60_000,
    );
    const failover = Date.now() - t0;
    figures["failover (leader pod deleted → other replica holds the Lease)"] = `${failover} ms`;
    // The standing replica, or the pod the Deployment made in the deleted one's place if it was
    // quicker (both are a live replica taking over; which wins is a race).
    const candidates = [other, ...(await pods("operator")).map((p) => p.metadata.name)];
    expect(candidates).toContain(next);
    expect(next).not.toBe(leader);
    expect(failover).toBeLessThanOrEqual((duration + 5) * 1000);
    await until(
      "every workload ENI mirrored",
      () => Promise.resolve(workerEnis.every((e) => mirrored().has(e)) ? true : undefined),
      180_000,
    );
    await policyReady("nodes");
    sim.knobs.latencyMs = 0;
    await sleep(3_000); // a cycle more: what is no longer wanted would be gone by now
    const o = owned();
    expect(o.duplicates).toEqual([]);
    expect(o.orphans).toEqual([]);
    console.log(
      `converge at the kill: ${atKill} of ${workerEnis.length} workload ENIs; after: ${o.sessions} sessions, ${o.filters} filters, ${o.targets} targets`,
    );
    expect(atKill).toBeLessThan(workerEnis.length); // the kill did hit a converge in flight
    await until("the Deployment back at 2 Ready replicas", async () => {
      const p = await pods("operator");
      return p.length === 2 && p.every(ready) ? true : undefined;
    });
  }, 300_000);

  it("upgrades to a changed value: the pods roll, the Lease is never lost for longer than a failover, the files stay", async () => {
    const uids = new Set(
      [...(await pods("operator")), ...(await pods("collector"))].map((p) => p.metadata.uid),
    );
    const filesBefore = captureFiles("web");
    expect(filesBefore.length).toBeGreaterThan(0);
    const duration = (await lease()).spec.leaseDurationSeconds ?? 15;
    // Watch the Lease through the upgrade: the longest time with no valid holder.
    let watching = true;
    let lastHeld = Date.now();
    let longestGap = 0;
    const watcher = (async () => {
      while (watching) {
        const h = validHolder(await lease().catch(() => ({ spec: {} })));
        if (h) lastHeld = Date.now();
        longestGap = Math.max(longestGap, Date.now() - lastHeld);
        await sleep(200);
      }
    })();
    const t0 = Date.now();
    // Not `helm`: a synchronous call would stop the watcher above for as long as helm waits, and
    // the whole wait would count as a gap.
    await helmAsync(
      ...["upgrade", RELEASE, join(REPO_ROOT, "charts", "traffic-mirror-operator")],
      ...["-n", NS, "-f", valuesFile(), "--wait", "--timeout", "240s"],
      // A changed value for each: the operator's log level, the collector's file rotation.
      ...["--set", "operator.logLevel=debug", "--set", "collector.rotation.maxFileSeconds=2"],
    );
    const rolled = await until(
      "new operator and collector pods Ready",
      async () => {
        const ps = [...(await pods("operator")), ...(await pods("collector"))];
        return ps.length === 3 && ps.every((p) => ready(p) && !uids.has(p.metadata.uid)) ? ps : undefined;
      },
      180_000,
    );
    figures["helm upgrade → all pods replaced and Ready"] = `${Date.now() - t0} ms`;
    watching = false;
    await watcher;
    figures["longest time without a Lease holder during the upgrade"] = `${longestGap} ms`;
    // Handed over on release, as in a failover: well under the lease duration, which only a lease
    // left held (not released) would take to expire.
    expect(longestGap).toBeLessThan(duration * 1000);
    for (const p of rolled.filter((x) => x.metadata.labels["app.kubernetes.io/component"] === "operator"))
      expect(p.spec.containers[0]!.env).toContainEqual(
        expect.objectContaining({ name: "TMO_LOG_LEVEL", value: "debug" }),
      );
    // The files of before are kept, and the new collector pod writes more beside them.
    for (const f of filesBefore) expect(existsSync(f), f).toBe(true);
    await until(
      "round 2 in the policy's files",
      async () => {
        await traffic(webIps, 2);
        await sleep(1_500);
        return capturedRound("web", 2).length >= 2 * webIps.length ? true : undefined;
      },
      90_000,
    );
    expect(captureFiles("web").length).toBeGreaterThan(filesBefore.length);
  }, 300_000);

  it("refuses to uninstall while policies exist, saying why; after they are deleted, removes everything and AWS holds nothing of the operator's", async () => {
    const kept = owned();
    expect(kept.sessions).toBeGreaterThan(0);
    let refused = "";
    try {
      helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "180s");
    } catch (err) {
      refused = String((err as { stderr?: string }).stderr ?? err);
    }
    // Helm names the hook that failed; its log says why (below).
    expect(refused).toMatch(/job \S+-uninstall-check failed/);
    const why = execFileSync(
      join(TOOLS_BIN, "kubectl"),
      [
        "--kubeconfig",
        kubeconfigPath,
        "-n",
        NS,
        "logs",
        `job/${RELEASE}-traffic-mirror-operator-uninstall-check`,
      ],
      { encoding: "utf8" },
    );
    expect(why).toContain("Not uninstalling");
    expect(why).toContain(`${APPS}/web`);
    expect(why).toContain("kubectl delete trafficmirrorpolicies --all -A");
    // Nothing was removed: the release's objects, its pods and what it made in AWS are as they
    // were (Helm marks the release "uninstalling" until an uninstall goes through).
    expect(helm("status", RELEASE, "-n", NS)).toContain("STATUS: uninstalling");
    expect((await pods("operator")).filter(ready)).toHaveLength(2);
    expect(owned().sessions).toBe(kept.sessions);

    // As the message says: the policies and the target first; the operator removes their AWS side.
    for (const name of ["web", "nodes"])
      await rest.request({
        method: "DELETE",
        path: `/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies/${name}`,
        what: `deleting policy ${name}`,
      });
    await rest.request({
      method: "DELETE",
      path: `/apis/${API_VERSION}/trafficmirrortargets/realnode`,
      what: "deleting target",
    });
    const gone = (path: string) =>
      until(
        `${path} gone`,
        () =>
          rest.get(path, "probing").then(
            () => undefined,
            () => true,
          ),
        120_000,
      );
    await gone(`/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies/web`);
    await gone(`/apis/${API_VERSION}/namespaces/${APPS}/trafficmirrorpolicies/nodes`);
    await gone(`/apis/${API_VERSION}/trafficmirrortargets/realnode`);
    const left = owned();
    expect([left.sessions, left.filters, left.targets]).toEqual([0, 0, 0]);

    const files = captureFiles("web");
    helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "180s");
    await until("no pods of the release", async () => {
      const all = await rest.get<{ items: unknown[] }>(`/api/v1/namespaces/${NS}/pods`, "listing pods");
      return all.items.length === 0 ? true : undefined;
    });
    // The capture files stay on the node (a hostPath is the node's, not the release's).
    for (const f of files) expect(existsSync(f), f).toBe(true);
  }, 400_000);
});
