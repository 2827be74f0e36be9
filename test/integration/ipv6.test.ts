// EKS IPv6 clusters end to end: nodes whose primary ENI holds a /80 (kwok gives pods addresses
// from it), pods with IPv6 addresses only, and a dual-stack variant with both. A policy becomes
// Ready, the emulator holds filters with IPv6 CIDRs that accept exactly the selected pods, and the
// copies (IPv6 inner packets in IPv4 VXLAN from the emulator's data plane) reach the collector
// process, whose files tshark reads: the selected pods' packets, none of the others', with the
// original length of a truncated copy read from its inner IPv6 header. A third variant selects at
// the collector (`selectionMode: Eni`): AWS copies every pod's packets and the collector drops the
// unselected pods' IPv6 packets before anything is written.
import { KubeConfig } from "@kubernetes/client-node";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { MirrorFilter } from "../../src/api/inventory.ts";
import { API_VERSION } from "../../src/api/resources.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { mirrorFilterAccepts } from "../ec2-sim/dataplane.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { createPod, mapInCollector, policyStatus, stopScenario, untilReady } from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createEksNodes, createNamespaces, createPolicy, until } from "../fixtures/scenario.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { makeWorld } from "../fixtures/world.ts";

const kubeconfigPath = inject("kubeconfigPath");
const stateDir = inject("harnessStateDir");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const FIRST = 680; // per variant a collector node and a workload node: 680–681 IPv6, 682–683 dual-stack, 684–685 IPv6 selecting at the collector
const PREFIX = "ipv6";
const SYSTEM = "ipv6-system";
const CLIENT4 = "10.0.200.20";
const CLIENT6 = "2001:db8:77::20";
/** Bytes of each copy kept by the IPv6 variant's policy (its packets are longer). */
const PACKET_LENGTH = 96;
const PAYLOAD = "x".repeat(300);

// The third selects at the collector: AWS copies every pod's packets, the collector keeps the
// selected pods' IPv6 packets and drops the rest.
const VARIANTS = [
  { family: "IPv6", ns: "ipv6-only", first: FIRST, selected: 4, others: 2, mode: "Pod" },
  { family: "DualStack", ns: "ipv6-dual", first: FIRST + 2, selected: 3, others: 2, mode: "Pod" },
  { family: "IPv6", ns: "ipv6-eni", first: FIRST + 4, selected: 4, others: 2, mode: "Eni" },
] as const;
type Variant = (typeof VARIANTS)[number];

const worlds = VARIANTS.map((v) =>
  makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: v.first, collectors: [v.first], ipFamily: v.family }),
);

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let collector: CollectorProcess;
let home: string;
/** Per variant: pod name to its addresses (kwok's, from the node's pod CIDRs). */
const podIps = new Map<string, Map<string, string[]>>();

const workNode = (v: Variant) => eksNodeSpec(v.first + 1, { prefix: PREFIX }).name;
const names = (v: Variant) => ({
  web: Array.from({ length: v.selected }, (_, i) => `web-${i}`),
  other: Array.from({ length: v.others }, (_, i) => `other-${i}`),
});

async function runningPodIps(namespace: string, name: string): Promise<string[]> {
  return until(`addresses of ${namespace}/${name}`, async () => {
    const p = await rest.get<{ status?: { phase?: string; podIPs?: { ip: string }[] } }>(
      `/api/v1/namespaces/${namespace}/pods/${name}`,
      "reading pod",
    );
    return p.status?.phase === "Running" && p.status.podIPs?.length
      ? p.status.podIPs.map((x) => x.ip)
      : undefined;
  });
}

/** Traffic between a client of each family and every address of every pod, both ways, on TCP 80. */
function trafficOf(v: Variant): SyntheticPacket[] {
  const out: SyntheticPacket[] = [];
  let n = 0;
  for (const ips of podIps.get(v.ns)!.values())
    for (const ip of ips) {
      const client = ip.includes(":") ? CLIENT6 : CLIENT4;
      const port = 40000 + n++;
      out.push({ src: client, dst: ip, protocol: 6, srcPort: port, dstPort: 80, payload: PAYLOAD });
      out.push({ src: ip, dst: client, protocol: 6, srcPort: 80, dstPort: port, payload: PAYLOAD });
    }
  return out;
}

/** What tshark reads in a policy's files: `pod direction family`, and each packet's lengths. */
function captured(v: Variant): { seen: string[]; lengths: Set<string> } {
  const byIp = new Map<string, string>();
  for (const [name, ips] of podIps.get(v.ns)!) for (const ip of ips) byIp.set(ip, name);
  const seen: string[] = [];
  const lengths = new Set<string>();
  for (const f of collector.files(`${v.ns}/web`))
    for (const [src4, dst4, src6, dst6, len, capLen] of tsharkFields(
      f,
      ["ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "frame.len", "frame.cap_len"],
      { home },
    )) {
      const [src, dst] = src6 ? [src6, dst6!] : [src4!, dst4!];
      const inbound = src === CLIENT4 || src === CLIENT6;
      const pod = byIp.get(inbound ? dst : src) ?? (inbound ? dst : src);
      seen.push(`${pod} ${inbound ? "in" : "out"} ${src6 ? "v6" : "v4"}`);
      lengths.add(`${src6 ? "v6" : "v4"} ${len} ${capLen}`);
    }
  return { seen: seen.sort(), lengths };
}

describe.each(VARIANTS)("an EKS $family cluster, selectionMode $mode", (v) => {
  it("mirrors exactly the selected pods: Ready, IPv6 filter rules in EC2, and tshark reads only their packets", async () => {
    const { web, other } = names(v);
    const ips = podIps.get(v.ns)!;
    await untilReady(rest, v.ns, "web", {
      mirrored: web.length,
      selected: web.length,
      timeoutMs: 90_000,
    });
    // One session on the workload node, counting each pod once (a dual-stack pod's two addresses too).
    const status = await policyStatus(rest, v.ns, "web");
    expect(status?.sessions?.map((x) => x.sources)).toEqual([web.length]);
    // Every pod address of the family kwok gave out (and only those of the workload node's /80).
    for (const ipList of ips.values()) {
      expect(ipList.some((ip) => ip.includes(":"))).toBe(true);
      expect(ipList.some((ip) => !ip.includes(":"))).toBe(v.family === "DualStack");
    }
    // The emulator's filter on the workload ENI: IPv6 rules, accepting exactly the selected pods.
    const workEni = worlds[VARIANTS.indexOf(v)]!.inventory.networkInterfaces.find(
      (e) => e.instanceId === eksNodeSpec(v.first + 1).instanceId && e.deviceIndex === 0,
    )!;
    const sessions = [...sim.state.sessions.values()].filter(
      (s) => s.networkInterfaceId === workEni.networkInterfaceId,
    );
    expect(sessions).toHaveLength(1);
    const filter: MirrorFilter = sim.state.filters.get(sessions[0]!.trafficMirrorFilterId)!;
    const rules = [...filter.ingressRules, ...filter.egressRules];
    expect(rules.some((r) => r.destinationCidrBlock.includes(":") || r.sourceCidrBlock.includes(":"))).toBe(
      true,
    );
    for (const r of rules) expect(r.sourceCidrBlock.includes(":")).toBe(r.destinationCidrBlock.includes(":"));
    for (const [name, ipList] of ips)
      for (const ip of ipList) {
        const client = ip.includes(":") ? CLIENT6 : CLIENT4;
        const p: SyntheticPacket = { src: client, dst: ip, protocol: 6, srcPort: 1, dstPort: 80 };
        // Selecting at the collector, AWS's filter takes the whole ENI (`::/0`).
        expect(mirrorFilterAccepts(filter, p, "ingress"), `${name} ${ip}`).toBe(
          v.mode === "Eni" || web.includes(name),
        );
      }
    await mapInCollector(rest, {
      namespace: SYSTEM,
      collector,
      what: `${v.ns}: the map selecting the web pods`,
      ok: (map) =>
        map.sessions.some((e) => e.sessionId && e.selections?.some((s) => s.policy === `${v.ns}/web`)),
    });
    const copies = await sim.dataPlane.send(trafficOf(v));
    // AWS copied only the selected pods' packets where the filter is pod-precise, every pod's
    // where the collector selects.
    const copied = (v.mode === "Eni" ? [...web, ...other] : web).flatMap((n) => ips.get(n)!).length * 2;
    expect(copies.filter((c) => c.sent)).toHaveLength(copied);
    const want = web
      .flatMap((n) =>
        ips
          .get(n)!
          .flatMap((ip) => [`${n} in`, `${n} out`].map((x) => `${x} ${ip.includes(":") ? "v6" : "v4"}`)),
      )
      .sort();
    let got = captured(v);
    await until(`${v.ns}: the copies on disk`, () => {
      got = captured(v);
      return Promise.resolve(got.seen.length >= want.length ? true : undefined);
    }).catch(() => undefined); // the comparison below says what is missing
    expect(got.seen).toEqual(want);
    for (const n of other) expect(got.seen.join(" ")).not.toContain(n);
    // Frame lengths: 14 Ethernet + 40 IPv6 (20 IPv4) + 20 TCP + 300 payload; the first variant's
    // policy keeps 96 bytes of each, and the collector writes the original length read from the
    // inner IPv6 header.
    const v6Length = 14 + 40 + 20 + PAYLOAD.length;
    expect([...got.lengths].sort()).toEqual(
      v.ns === "ipv6-only"
        ? [`v6 ${v6Length} ${PACKET_LENGTH}`]
        : v.family === "IPv6"
          ? [`v6 ${v6Length} ${v6Length}`]
          : [`v4 ${v6Length - 20} ${v6Length - 20}`, `v6 ${v6Length} ${v6Length}`],
    );
  });
});

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "tmo-ipv6-"));
  await installCrds(rest);
  sim = await startEc2Sim();
  seed(sim.state, {
    instances: worlds.flatMap((w) => w.inventory.instances),
    networkInterfaces: worlds.flatMap((w) => w.inventory.networkInterfaces),
  });
  for (const v of VARIANTS)
    await createEksNodes(rest, {
      first: v.first,
      count: 2,
      collectors: [v.first],
      pool: PREFIX,
      prefix: PREFIX,
      collectorLabels: { "ipv6.test/collector": v.ns },
      ipFamily: v.family,
    });
  await createNamespaces(rest, [SYSTEM, ...VARIANTS.map((v) => v.ns)]);
  for (const v of VARIANTS) {
    await until(`default SA in ${v.ns}`, () =>
      rest.get(`/api/v1/namespaces/${v.ns}/serviceaccounts/default`, "reading SA"),
    );
    await rest.request({
      method: "POST",
      path: `/apis/${API_VERSION}/trafficmirrortargets`,
      what: `creating target ${v.ns}`,
      body: {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorTarget",
        metadata: { name: v.ns },
        spec: {
          collector: { nodeSelector: { "ipv6.test/collector": v.ns }, selectionMode: v.mode },
          allowedNamespaces: { from: "List", names: [v.ns] },
        },
      },
    });
    const ips = new Map<string, string[]>();
    podIps.set(v.ns, ips);
    // Selected pods first: kwok hands out the /80's addresses in order, so they hold ::1 onwards.
    const { web, other } = names(v);
    for (const [list, app] of [
      [web, "web"],
      [other, "other"],
    ] as const)
      for (const name of list) {
        await createPod(rest, { namespace: v.ns, name, nodeName: workNode(v), labels: { app } });
        ips.set(name, await runningPodIps(v.ns, name));
      }
    await createPolicy(rest, {
      namespace: v.ns,
      name: "web",
      spec: {
        podSelector: { matchLabels: { app: "web" } },
        targetRef: { name: v.ns },
        ...(v.ns === "ipv6-only" ? { packetLength: PACKET_LENGTH } : {}),
      },
    });
  }
  collector = await startCollectorProcess({
    stateDir,
    name: "collector-ipv6",
    env: {
      KUBECONFIG: kubeconfigPath,
      TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `${SYSTEM}/${VNI_MAP_CONFIGMAP}`,
      TMO_COLLECTOR_ROTATE_SECONDS: "1",
    },
  });
  // Both variants' collector nodes: their primary ENIs are the targets, on one collector process.
  for (const w of worlds) {
    const collectorEni = w.inventory.networkInterfaces[0]!;
    sim.dataPlane.setEndpoint(collectorEni.networkInterfaceId, { port: collector.port });
  }
  ({ runtime } = await startTestOperator({ kc, rest, ec2Url: sim.url, cluster: "ipv6", namespace: SYSTEM }));
}, 240_000);

afterAll(() => stopScenario(rest, { runtime, sim, collector, nodePrefix: `${PREFIX}-`, home }));
