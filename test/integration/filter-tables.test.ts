// Filters with reject entries, end to end: the operator on a real apiserver with kwok pods, the
// emulator's data plane applying the filters it made, and the collector as a process. Two ENIs
// whose selected pods an accept list alone selects poorly: 20 consecutive selected pods on two /28
// prefixes (the operator's scale run: 12 accept rules, over AWS's 10), and selected pods around an
// unselected one on secondary IPs. The filters carry reject rules for held unselected addresses
// inside accepted blocks; every selected pod's packets reach the collector (tshark), the emulator
// copies no packet of an unselected pod, of a free address of a prefix or of the primary address.
import { KubeConfig } from "@kubernetes/client-node";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { NetworkInterface } from "../../src/api/inventory.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { formatIp, parseCidr } from "../../src/plan/ipv4.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import {
  capturedPackets,
  condition,
  createPod,
  mapInCollector,
  policyStatus,
  runningPodIp,
  stopScenario,
  untilReady,
} from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createPolicy, createSuiteCorner, until } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kubeconfigPath = inject("kubeconfigPath");
const stateDir = inject("harnessStateDir");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const FIRST = 700; // 700 runs the collector; 701 holds pods on two /28 prefixes, 702 on secondary IPs
const PREFIX = "ftable";
const SYSTEM = "ftable-system";
const NS = "ftable";
const CLIENT = "10.0.200.11";
const prefixWorld = makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
const secondaryWorld = makeWorld({
  nodes: 1,
  podsPerNode: 0,
  firstIndex: FIRST + 2,
  addressing: "secondary",
});
const inventory = {
  ...prefixWorld.inventory,
  instances: [...prefixWorld.inventory.instances, ...secondaryWorld.inventory.instances],
  networkInterfaces: [
    ...prefixWorld.inventory.networkInterfaces,
    ...secondaryWorld.inventory.networkInterfaces,
  ],
};
/** The first ENI of each workload node: where its pods' addresses are. */
const podEnis = [prefixWorld.inventory.networkInterfaces[2]!, secondaryWorld.inventory.networkInterfaces[0]!];
/** Per workload node, its pods in creation order (kwok gives them .1, .2, … of the node's range). */
const layouts: { node: number; pods: { name: string; app: string }[] }[] = [
  {
    node: FIRST + 1,
    pods: [
      ...Array.from({ length: 20 }, (_, k) => ({ name: `prefix-web-${k + 1}`, app: "web" })),
      { name: "prefix-other-21", app: "other" },
      { name: "prefix-other-22", app: "other" },
    ],
  },
  {
    node: FIRST + 2,
    pods: Array.from({ length: 17 }, (_, k) => {
      const other = k + 1 === 7 || k + 1 >= 16;
      return { name: `secondary-${other ? "other" : "web"}-${k + 1}`, app: other ? "other" : "web" };
    }),
  },
];
const selectedCount = layouts.flatMap((l) => l.pods).filter((p) => p.app === "web").length;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let collector: CollectorProcess;
let home: string;
/** Pod name to address, and address to pod name. */
const ips = new Map<string, string>();
const names = new Map<string, string>();

/** Every address an ENI holds: its private IPs and every address of its prefixes. */
function heldBy(e: NetworkInterface): string[] {
  const out = new Set(e.privateIps);
  for (const p of e.ipv4Prefixes) {
    const b = parseCidr(p)!;
    for (let k = 0; k < 2 ** (32 - b.len); k++) out.add(formatIp(b.base + k));
  }
  return [...out];
}

describe("filters with reject entries on crowded ENIs", () => {
  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "tmo-ftable-"));
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, inventory);
    await createSuiteCorner(rest, {
      first: FIRST,
      count: 3,
      prefix: PREFIX,
      system: SYSTEM,
      ns: NS,
      collector: { selectionMode: "Pod" },
    });
    for (const l of layouts) {
      const nodeName = eksNodeSpec(l.node, { prefix: PREFIX }).name;
      for (const p of l.pods) {
        await createPod(rest, { namespace: NS, name: p.name, nodeName, labels: { app: p.app } });
        const ip = await runningPodIp(rest, NS, p.name);
        ips.set(p.name, ip);
        names.set(ip, p.name);
      }
    }
    await createPolicy(rest, {
      namespace: NS,
      name: "web",
      spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: NS } },
    });
    collector = await startCollectorProcess({
      stateDir,
      name: "collector-ftable",
      env: {
        KUBECONFIG: kubeconfigPath,
        TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `${SYSTEM}/${VNI_MAP_CONFIGMAP}`,
        TMO_COLLECTOR_ROTATE_SECONDS: "1",
      },
    });
    sim.dataPlane.setEndpoint(prefixWorld.inventory.networkInterfaces[0]!.networkInterfaceId, {
      port: collector.port,
    });
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: "ftable",
      namespace: SYSTEM,
    }));
  }, 300_000);

  afterAll(() => stopScenario(rest, { runtime, sim, collector, nodePrefix: `${PREFIX}-`, home }));

  it("mirrors every selected pod within AWS's 10 rules per filter, with reject rules, and reports no FilterTooLarge", async () => {
    await untilReady(rest, NS, "web", {
      mirrored: selectedCount,
      selected: selectedCount,
      timeoutMs: 180_000,
    });
    const status = await policyStatus(rest, NS, "web");
    expect(condition(status, "WithinLimits")?.status).toBe("True");
    for (const eni of podEnis) {
      const s = [...sim.state.sessions.values()].find((x) => x.networkInterfaceId === eni.networkInterfaceId);
      const f = s && sim.state.filters.get(s.trafficMirrorFilterId);
      expect(f, eni.networkInterfaceId).toBeDefined();
      const rules = [...f!.ingressRules, ...f!.egressRules];
      expect(rules.length).toBeLessThanOrEqual(10);
      expect(rules.some((r) => r.action === "reject")).toBe(true);
    }
  });

  it("copies and delivers every selected pod's packets and nothing of any other held address", async () => {
    const want = [...ips].filter(([name]) => name.includes("-web-")).map(([, ip]) => ip);
    await mapInCollector(rest, {
      namespace: SYSTEM,
      collector,
      what: "the map selecting every web pod",
      ok: (map) => {
        const selected = map.sessions
          .flatMap((e) => e.selections ?? [])
          .filter((s) => s.policy === `${NS}/web`)
          .flatMap((s) => s.ips);
        return map.sessions.every((e) => e.sessionId) && selected.length === want.length;
      },
    });
    // Every address the two ENIs hold: pods, free addresses of the prefixes, unused secondary IPs
    // and the primary addresses. Client ports 7000 + n mark this test's packets.
    const targets = podEnis.flatMap(heldBy);
    const packets: SyntheticPacket[] = [];
    targets.forEach((ip, n) => {
      packets.push({ src: CLIENT, dst: ip, protocol: 6, srcPort: 7000 + n, dstPort: 80, payload: "in" });
      packets.push({ src: ip, dst: CLIENT, protocol: 6, srcPort: 80, dstPort: 7000 + n, payload: "out" });
    });
    const copies = await sim.dataPlane.send(packets);
    const copied = new Set(copies.map((c) => c.packet));
    const expected = new Set<number>();
    packets.forEach((p, k) => {
      if (want.includes(p.src === CLIENT ? p.dst : p.src)) expected.add(k);
    });
    expect([...copied].sort((a, b) => a - b)).toEqual([...expected].sort((a, b) => a - b));
    const label = (src: string, dst: string) =>
      src === CLIENT ? `${names.get(dst) ?? dst} in` : `${names.get(src) ?? src} out`;
    const wantOnDisk = [...expected].map((k) => label(packets[k]!.src, packets[k]!.dst)).sort();
    const onDisk = () =>
      capturedPackets(collector, `${NS}/web`, home)
        .filter(([, , sp, dp]) => Number(sp) >= 7000 || Number(dp) >= 7000)
        .map(([src, dst]) => label(src!, dst!))
        .sort();
    await until("the packets on disk", () =>
      Promise.resolve(onDisk().length >= wantOnDisk.length ? true : undefined),
    ).catch(() => undefined); // the comparison below says what is missing
    expect(onDisk()).toEqual(wantOnDisk);
  });
});
