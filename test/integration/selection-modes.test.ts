// Where pods are selected, end to end, in both modes of a collector target: 12 pods on one ENI, 8
// of them selected, traffic to and from all 12 through the emulator's data plane. The policy's
// files (tshark) hold every selected pod's packets and none of the others', at the start, after
// pods come and go (an unselected pod may get a selected pod's old address), and after a label is
// removed. The collector follows the operator's map through the apiserver. In Eni mode the pod
// changes cost no AWS call and the collector drops what AWS copied of the other pods.
import { KubeConfig } from "@kubernetes/client-node";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { streamRequest } from "../../src/collector/stream.ts";
import { API_VERSION } from "../../src/api/resources.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorMetrics } from "../../src/controller/metrics.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { formatIp } from "../../src/plan/ipv4.ts";
import {
  capturedPackets,
  createPod,
  deletePod,
  mapInCollector,
  runningPodIp,
  setPodLabels,
  stopScenario,
  untilReady,
} from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createEksNodes, createNamespaces, createPolicy, until } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kubeconfigPath = inject("kubeconfigPath");
const stateDir = inject("harnessStateDir");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const FIRST = 660; // per mode: a collector node and a workload node (660–661 Pod, 662–663 Eni, 664–665 Auto)
const PREFIX = "selmode";
const SYSTEM = "selmode-system";
const CLIENT = "10.0.200.10";
const MODES = ["Pod", "Eni", "Auto"] as const;
type Mode = (typeof MODES)[number];
const world = makeWorld({
  nodes: 6,
  podsPerNode: 0,
  firstIndex: FIRST,
  collectors: [FIRST, FIRST + 2, FIRST + 4],
});
/** selectionMode Auto tightens an ENI whose pods have been quiet this long. */
const AUTO_QUIET_MS = 3_000;
const ns = (m: Mode) => `selmode-${m.toLowerCase()}`;
const workNode = (m: Mode) => eksNodeSpec(FIRST + 1 + MODES.indexOf(m) * 2, { prefix: PREFIX }).name;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let metrics: OperatorMetrics;
let collector: CollectorProcess;
let home: string;

/** Per mode: pod name to address, of the pods that exist; and every address a pod of it ever had. */
const pods: Record<Mode, Map<string, string>> = { Pod: new Map(), Eni: new Map(), Auto: new Map() };
const everHeld: Record<Mode, Set<string>> = { Pod: new Set(), Eni: new Set(), Auto: new Set() };

async function addPod(m: Mode, name: string, app: string): Promise<void> {
  await createPod(rest, { namespace: ns(m), name, nodeName: workNode(m), labels: { app } });
  const ip = await runningPodIp(rest, ns(m), name);
  pods[m].set(name, ip);
  everHeld[m].add(ip);
}

async function removePod(m: Mode, name: string): Promise<void> {
  await deletePod(rest, ns(m), name);
  pods[m].delete(name);
}

/**
 * Waits until the policy mirrors exactly `selected` (status and AWS done) and the collector has
 * the map that selects exactly their addresses.
 */
async function settled(m: Mode, selected: string[]): Promise<void> {
  await untilReady(rest, ns(m), "web", {
    mirrored: selected.length,
    selected: selected.length,
    timeoutMs: 90_000,
  });
  const want = selected.map((n) => pods[m].get(n)!).sort();
  await mapInCollector(rest, {
    namespace: SYSTEM,
    collector,
    what: `${m}: the map selecting ${selected.join(", ")}`,
    ok: (map) => {
      const ips = map.sessions
        .flatMap((e) => e.selections ?? [])
        .filter((s) => s.policy === `${ns(m)}/web`)
        .flatMap((s) => s.ips);
      return map.sessions.every((e) => e.sessionId) && JSON.stringify(ips.sort()) === JSON.stringify(want);
    },
  });
}

/** Traffic of one phase to and from every address a pod of the mode ever held; client ports (phase × 1000 + n) mark the phase, the pods listen on 80. */
async function sendPhase(m: Mode, phase: number): Promise<number> {
  const packets: SyntheticPacket[] = [];
  let n = 0;
  for (const ip of everHeld[m]) {
    const port = phase * 1000 + n++;
    packets.push({ src: CLIENT, dst: ip, protocol: 6, srcPort: port, dstPort: 80, payload: "in" });
    packets.push({ src: ip, dst: CLIENT, protocol: 6, srcPort: 80, dstPort: port, payload: "out" });
  }
  return (await sim.dataPlane.send(packets)).filter((c) => c.sent).length;
}

/** The pods (by current name) whose packets of a phase are in the policy's files, as `name dir`. */
function capturedInPhase(m: Mode, phase: number): string[] {
  const byIp = new Map([...pods[m]].map(([name, ip]) => [ip, name]));
  const inPhase = (p: string | undefined) => Math.floor(Number(p) / 1000) === phase;
  return capturedPackets(collector, `${ns(m)}/web`, home)
    .filter(([, , sp, dp]) => inPhase(sp) || inPhase(dp))
    .map(([src, dst]) => (src === CLIENT ? `${byIp.get(dst!) ?? dst} in` : `${byIp.get(src!) ?? src} out`))
    .sort();
}

const web = (...i: number[]) => i.map((k) => `web-${k}`);
const both = (names: string[]) => names.flatMap((n) => [`${n} in`, `${n} out`]).sort();

/**
 * Sends a phase's traffic and returns what the policy's files hold of it, once they hold at least
 * what `expected` says (files close each second); anything more shows in the caller's comparison.
 */
async function phase(m: Mode, n: number, expected: string[]): Promise<string[]> {
  expect(await sendPhase(m, n)).toBeGreaterThan(0);
  await until(`${m}: phase ${n} on disk`, () =>
    Promise.resolve(capturedInPhase(m, n).length >= expected.length ? true : undefined),
  ).catch(() => undefined); // the comparison below says what is missing
  return capturedInPhase(m, n);
}

const mutatingCalls = () => sim.calls.filter((c) => /^(Create|Delete|Modify)/.test(c.action)).length;

describe("selection modes on a shared ENI", () => {
  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "tmo-selmode-"));
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    for (const m of MODES) {
      const first = FIRST + MODES.indexOf(m) * 2;
      await createEksNodes(rest, {
        first,
        count: 2,
        collectors: [first],
        pool: PREFIX,
        prefix: PREFIX,
        collectorLabels: { "selmode.test/collector": m },
      });
    }
    await createNamespaces(rest, [SYSTEM, ...MODES.map(ns)]);
    for (const m of MODES) {
      await until(`default SA in ${ns(m)}`, () =>
        rest.get(`/api/v1/namespaces/${ns(m)}/serviceaccounts/default`, "reading SA"),
      );
      await rest.request({
        method: "POST",
        path: `/apis/${API_VERSION}/trafficmirrortargets`,
        what: `creating target for ${m}`,
        body: {
          apiVersion: API_VERSION,
          kind: "TrafficMirrorTarget",
          metadata: { name: ns(m) },
          spec: {
            collector: { nodeSelector: { "selmode.test/collector": m }, selectionMode: m },
            allowedNamespaces: { from: "List", names: [ns(m)] },
          },
        },
      });
      // Selected pods first, so that the eight hold the lowest addresses (a pod-precise filter
      // of them fits in AWS's 10 rules).
      for (let i = 0; i < 8; i++) await addPod(m, `web-${i}`, "web");
      for (let i = 0; i < 4; i++) await addPod(m, `other-${i}`, "other");
      await createPolicy(rest, {
        namespace: ns(m),
        name: "web",
        spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: ns(m) } },
      });
    }
    collector = await startCollectorProcess({
      stateDir,
      name: "collector-selmode",
      stream: true,
      env: {
        KUBECONFIG: kubeconfigPath,
        TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `${SYSTEM}/${VNI_MAP_CONFIGMAP}`,
        TMO_COLLECTOR_ROTATE_SECONDS: "1",
      },
    });
    for (const m of MODES) {
      const collectorEni = world.inventory.networkInterfaces[MODES.indexOf(m) * 4]!;
      sim.dataPlane.setEndpoint(collectorEni.networkInterfaceId, { port: collector.port });
    }
    ({ runtime, metrics } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: "selmode",
      namespace: SYSTEM,
      autoTighten: { quietMs: AUTO_QUIET_MS, perCycle: 10 },
    }));
  }, 240_000);

  afterAll(() => stopScenario(rest, { runtime, sim, collector, nodePrefix: `${PREFIX}-`, home }));

  describe.each(MODES)("selectionMode %s", (m) => {
    it("keeps the 8 selected pods' packets and none of the 4 others'", async () => {
      await settled(m, web(0, 1, 2, 3, 4, 5, 6, 7));
      const want = both(web(0, 1, 2, 3, 4, 5, 6, 7));
      expect(await phase(m, 1, want)).toEqual(want);
      // The operator's coverage gauges say the same.
      const text = await metrics.registry.getSingleMetricAsString("tmo_policy_sources");
      expect(text).toContain(`tmo_policy_sources{policy="${ns(m)}/web",state="selected"} 8`);
      expect(text).toContain(`tmo_policy_sources{policy="${ns(m)}/web",state="mirrored"} 8`);
    });

    it("follows pods that come and go, and keeps nothing of an address a selected pod left", async () => {
      const calls = mutatingCalls();
      await removePod(m, "web-7");
      await removePod(m, "other-0");
      // The unselected pod first: if addresses are reused, it may get web-7's.
      await addPod(m, "other-4", "other");
      await addPod(m, "web-8", "web");
      await settled(m, web(0, 1, 2, 3, 4, 5, 6, 8));
      // Traffic also goes to every address the pods ever held, held now by an unselected pod or by nobody.
      const want = both(web(0, 1, 2, 3, 4, 5, 6, 8));
      expect(await phase(m, 2, want)).toEqual(want);
      // With selection at the collector, the ENI's session and filter stay as they were.
      if (m === "Eni") expect(mutatingCalls()).toBe(calls);
    });

    it("drops a pod whose label no longer matches", async () => {
      const calls = mutatingCalls();
      await setPodLabels(rest, ns(m), "web-2", { app: "retired" });
      await settled(m, web(0, 1, 3, 4, 5, 6, 8));
      const want = both(web(0, 1, 3, 4, 5, 6, 8));
      expect(await phase(m, 3, want)).toEqual(want);
      if (m === "Eni") expect(mutatingCalls()).toBe(calls);
    });
  });

  it("in Eni mode, Suricata alerts on selected pods' signatures only, and the stream carries only them", async () => {
    const SIGNATURE = "tmo-selmode-signature-5c1e";
    // The stream's records: classic pcap, 24-byte header, then a 16-byte header per packet.
    const streamed: string[] = [];
    const socket = connect(collector.streamPort!, "127.0.0.1");
    socket.write(streamRequest(`${ns("Eni")}/web`));
    let buf = Buffer.alloc(0);
    let header = false;
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!header && buf.length >= 24) [buf, header] = [buf.subarray(24), true];
      while (header && buf.length >= 16 && buf.length >= 16 + buf.readUInt32LE(8)) {
        const frame = buf.subarray(16, 16 + buf.readUInt32LE(8));
        buf = buf.subarray(16 + frame.length);
        if (frame.length >= 38 && frame[23] === 17 && frame.readUInt16BE(36) === 9999)
          streamed.push(formatIp(frame.readUInt32BE(26)));
      }
    });
    await until("the stream client connected", async () =>
      (await collector.sample("tmo_collector_stream_clients")) === 1 ? true : undefined,
    );
    const packets: SyntheticPacket[] = [...pods.Eni.values()].map((ip, n) => ({
      src: ip,
      dst: CLIENT,
      protocol: 17,
      srcPort: 4000 + n,
      dstPort: 9999,
      payload: `hello ${SIGNATURE}`,
    }));
    await sim.dataPlane.send(packets);
    const selected = ["web-0", "web-1", "web-3", "web-4", "web-5", "web-6", "web-8"].map((n) =>
      pods.Eni.get(n)!,
    );
    await until("the selected pods' packets streamed", () =>
      Promise.resolve(streamed.length >= selected.length ? true : undefined),
    );
    socket.destroy();
    expect(streamed.sort()).toEqual([...selected].sort());
    // Suricata over every file of the policy (files close each second).
    const rules = join(home, "selmode.rules");
    writeFileSync(
      rules,
      `alert udp any any -> any 9999 (msg:"TMO selmode signature"; content:"${SIGNATURE}"; sid:9000002; rev:1;)\n`,
    );
    const alertsFrom = (): string[] => {
      const logs = mkdtempSync(join(home, "suricata-"));
      const files = collector.files(`${ns("Eni")}/web`);
      for (const f of files)
        execFileSync("suricata", ["-r", f, "-S", rules, "-l", logs, "-k", "none", "--runmode", "single"], {
          stdio: ["ignore", "pipe", "pipe"],
          timeout: 120_000,
          env: { ...process.env, HOME: home },
        });
      // One eve.json for all files (Suricata appends).
      return readFileSync(join(logs, "eve.json"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { event_type: string; src_ip?: string })
        .filter((e) => e.event_type === "alert")
        .map((e) => e.src_ip!)
        .sort();
    };
    let alerts: string[] = [];
    await until("Suricata's alerts on the closed files", () => {
      alerts = alertsFrom();
      return Promise.resolve(alerts.length >= selected.length ? true : undefined);
    }).catch(() => undefined);
    expect(alerts).toEqual([...selected].sort());
  });

  it("times each selected pod from Ready to covered", async () => {
    const h = await metrics.registry.getSingleMetricAsString("tmo_pod_coverage_seconds");
    const count = Number(/tmo_pod_coverage_seconds_count\{target_kind="collector"\} (\d+)/.exec(h)?.[1]);
    // 8 per mode at the start, and web-8 of each mode later.
    expect(count).toBe(27);
  });

  it("in Auto mode, tightens the ENI's filter once its pods are quiet, and the collector stops dropping", async () => {
    const eni = world.inventory.networkInterfaces[MODES.indexOf("Auto") * 4 + 2]!.networkInterfaceId;
    const precise = () => {
      const s = [...sim.state.sessions.values()].find((x) => x.networkInterfaceId === eni);
      const f = s && sim.state.filters.get(s.trafficMirrorFilterId);
      return f !== undefined && f.ingressRules.some((r) => r.destinationCidrBlock !== "0.0.0.0/0");
    };
    await until(
      "the Auto ENI's filter pod-precise",
      () => Promise.resolve(precise() ? true : undefined),
      60_000,
    );
    const policy = `{policy="${ns("Auto")}/web"}`;
    const dropped = await collector.sample("tmo_collector_selection_dropped_packets_total", policy);
    const want = both(web(0, 1, 3, 4, 5, 6, 8));
    expect(await phase("Auto", 5, want)).toEqual(want);
    // AWS no longer copies the other pods' packets: nothing more to drop.
    expect(await collector.sample("tmo_collector_selection_dropped_packets_total", policy)).toBe(dropped);
    expect(dropped).toBeGreaterThan(0); // it did drop while the ENI's filter was ENI-wide
  });

  it("in Eni mode, counts what AWS copied of the unselected pods and the collector dropped", async () => {
    const dropped = await collector.sample(
      "tmo_collector_selection_dropped_packets_total",
      `{policy="${ns("Eni")}/web"}`,
    );
    // Three phases of traffic to and from the unselected pods and the left addresses.
    expect(dropped).toBeGreaterThanOrEqual(3 * 2 * 4);
    expect(
      await collector.sample("tmo_collector_selection_dropped_packets_total", `{policy="${ns("Pod")}/web"}`),
    ).toBe(0);
  });
});
