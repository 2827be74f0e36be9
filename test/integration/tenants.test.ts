// Tenants on shared ENIs, end to end: the operator on a real apiserver with kwok pods, the emulator's
// data plane applying the sessions and filters it made, and the collector as a process. Each
// policy's files (read by tshark) hold exactly its own selection, and its status says so:
// - two namespaces mirror port 80 of their own pods on one ENI to one collector target (one shared
//   session): neither file holds the other's packets or names the other's pods;
// - two policies of one namespace on the same pods and target (AWS delivers the overlap through the
//   higher-priority session only): both files get what each asked for;
// - a shared session beside a higher-priority session to another target that takes one tenant's
//   pods: only that tenant's policy is reported Shadowed, naming only the policy that shadows it.
import { KubeConfig } from "@kubernetes/client-node";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicySpec } from "../../src/api/resources.ts";
import type { VniMap } from "../../src/api/vni-map.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { eniHolds } from "../ec2-sim/dataplane.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import { startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import { createEksNodes, createNamespaces, createPolicy, until } from "../fixtures/scenario.ts";
import {
  condition,
  createPod,
  policyStatus,
  publishedMap,
  runningPodIp,
  stopScenario,
} from "../fixtures/mirroring.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { makeTarget, makeWorld } from "../fixtures/world.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const stateDir = inject("harnessStateDir");
const FIRST = 640; // 640 runs the collector; 641–643 hold one case's pods each
const PREFIX = "tenants";
const CLUSTER = "it-tenants";
const SYSTEM = "tenants-system";
const COLLECTOR_LABELS = { "tenants.test/collector": "true" };
const NLB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/00000000000000aa";
const CLIENT = "10.0.200.9"; // on no ENI of the cluster
const world = makeWorld({ nodes: 4, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
const nodeName = (i: number) => eksNodeSpec(FIRST + i, { prefix: PREFIX }).name;
const http: PolicySpec["filter"] = {
  rules: [{ direction: "both", action: "accept", protocol: "TCP", localPorts: { from: 80, to: 80 } }],
  mirrorDns: false,
};

let sim: Ec2Sim;
let runtime: OperatorRuntime;
let collector: CollectorProcess;
let home: string;
/** Pod name (`namespace/name`) to its IP. */
const ips = new Map<string, string>();
/** IP to pod name. */
const names = new Map<string, string>();

const createCasePod = (ns: string, name: string, node: number, labels: Record<string, string>) =>
  createPod(rest, { namespace: ns, name, nodeName: nodeName(node), labels });
const statusOf = (ns: string, name: string) => policyStatus(rest, ns, name);
const cond = condition;

/** What kubelet does for the DaemonSet: the operator's map ConfigMap as the collector's file. */
async function syncMap(): Promise<VniMap> {
  const { map } = await publishedMap(rest, SYSTEM);
  collector.writeMap(map);
  return map;
}

/** Port 80 and port 443 to every pod of the cases, and port 80 from each: 3 packets a pod. */
function traffic(): SyntheticPacket[] {
  const out: SyntheticPacket[] = [];
  let n = 0;
  for (const [name, ip] of ips) {
    for (const port of [80, 443])
      out.push({
        src: CLIENT,
        dst: ip,
        protocol: 6,
        srcPort: 40000 + n++,
        dstPort: port,
        payload: `tmo ${name} in${port}`,
      });
    out.push({
      src: ip,
      dst: CLIENT,
      protocol: 6,
      srcPort: 80,
      dstPort: 40000 + n++,
      payload: `tmo ${name} out80`,
    });
  }
  return out;
}

/** Every packet in a policy's files as `pod dir port` (pod is whichever side is a pod of the cases). */
function captured(policy: string): string[] {
  const files = collector.files(policy);
  return files
    .flatMap((f) => tsharkFields(f, ["ip.src", "ip.dst", "tcp.srcport", "tcp.dstport"], { home }))
    .map(([src, dst, sp, dp]) =>
      names.has(dst!) ? `${names.get(dst!)} in ${dp}` : `${names.get(src!) ?? src} out ${sp}`,
    )
    .sort();
}

/** What a policy selecting `pods` should hold of `traffic()`, given its port filter. */
function expected(pods: string[], onlyPort80: boolean): string[] {
  return pods.flatMap((p) => [`${p} in 80`, ...(onlyPort80 ? [] : [`${p} in 443`]), `${p} out 80`]).sort();
}

/** Interface descriptions in a policy's files. */
function descriptions(policy: string): string {
  return collector
    .files(policy)
    .flatMap((f) => tsharkFields(f, ["frame.interface_description"], { home }).map((r) => r[0]))
    .join("\n");
}

describe("tenants sharing ENIs", () => {
  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "tmo-tenants-"));
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    await createEksNodes(rest, {
      first: FIRST,
      count: 4,
      collectors: [FIRST],
      pool: PREFIX,
      prefix: PREFIX,
      collectorLabels: COLLECTOR_LABELS,
    });
    await createNamespaces(rest, [SYSTEM, "team-a", "team-b"]);
    for (const ns of ["team-a", "team-b"])
      await until(`default SA in ${ns}`, () =>
        rest.get(`/api/v1/namespaces/${ns}/serviceaccounts/default`, "reading SA"),
      );
    for (const t of [
      makeTarget("tenants", { collector: { nodeSelector: COLLECTOR_LABELS, selectionMode: "Pod" } }),
      makeTarget("tenants-nlb", { networkLoadBalancerArn: NLB_ARN }),
    ])
      await rest.request({
        method: "POST",
        path: `/apis/${API_VERSION}/trafficmirrortargets`,
        what: `creating target ${t.name}`,
        body: {
          apiVersion: API_VERSION,
          kind: "TrafficMirrorTarget",
          metadata: { name: t.name },
          spec: t.spec,
        },
      });
    // Case 1 on node 1: both tenants' web pods and an unselected pod of each.
    // Case 2 on node 2: team-a's twin pods. Case 3 on node 3: both tenants' pods again.
    const pods: [string, string, number, Record<string, string>][] = [
      ["team-a", "share-0", 1, { case: "share", app: "web" }],
      ["team-a", "share-1", 1, { case: "share", app: "web" }],
      ["team-a", "share-x", 1, { case: "share", app: "other" }],
      ["team-b", "share-0", 1, { case: "share", app: "web" }],
      ["team-b", "share-x", 1, { case: "share", app: "other" }],
      ["team-a", "twin-0", 2, { case: "twin", app: "web" }],
      ["team-a", "twin-1", 2, { case: "twin", app: "web" }],
      ["team-a", "shadow-0", 3, { case: "shadow", app: "web" }],
      ["team-b", "shadow-0", 3, { case: "shadow", app: "web" }],
    ];
    for (const [ns, name, node, labels] of pods) await createCasePod(ns, name, node, labels);
    const select = (c: string) => ({ matchLabels: { case: c, app: "web" } });
    const policies: [string, string, Partial<PolicySpec> & { targetRef: { name: string } }][] = [
      ["team-a", "share", { podSelector: select("share"), targetRef: { name: "tenants" }, filter: http }],
      ["team-b", "share", { podSelector: select("share"), targetRef: { name: "tenants" }, filter: http }],
      ["team-a", "twin-all", { podSelector: select("twin"), targetRef: { name: "tenants" }, priority: 500 }],
      ["team-a", "twin-http", { podSelector: select("twin"), targetRef: { name: "tenants" }, filter: http }],
      ["team-a", "shadow", { podSelector: select("shadow"), targetRef: { name: "tenants" }, filter: http }],
      ["team-b", "shadow", { podSelector: select("shadow"), targetRef: { name: "tenants" }, filter: http }],
      ["team-b", "ids", { podSelector: select("shadow"), targetRef: { name: "tenants-nlb" }, priority: 900 }],
    ];
    for (const [namespace, name, spec] of policies) await createPolicy(rest, { namespace, name, spec });
    for (const [ns, name] of pods) {
      const ip = await runningPodIp(rest, ns, name);
      ips.set(`${ns}/${name}`, ip);
      names.set(ip, `${ns}/${name}`);
    }
    // Each pod's address is on its node's ENIs (the world's ENIs hold the nodes' pod prefixes).
    for (const [ns, name, node] of pods) {
      const eni = world.inventory.networkInterfaces.find((e) => eniHolds(e, ips.get(`${ns}/${name}`)!));
      expect(eni?.instanceId, `${ns}/${name}`).toBe(world.inventory.instances[node]!.instanceId);
    }
    collector = await startCollectorProcess({ stateDir, name: "collector-tenants" });
    const collectorEni = world.inventory.networkInterfaces[0]!;
    sim.dataPlane.setEndpoint(collectorEni.networkInterfaceId, { port: collector.port });
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: CLUSTER,
      namespace: SYSTEM,
    }));
    // Ready everywhere (team-b/share and team-b/shadow … each judged below), then the map with
    // every session's id in the collector's hands before any traffic.
    await until(
      "every policy programmed",
      async () => {
        for (const [ns, name] of policies) {
          const s = await statusOf(ns, name);
          if (cond(s, "SessionsProgrammed")?.status !== "True") return undefined;
        }
        return true;
      },
      90_000,
    );
    await until("the VNI map with every session's id", async () => {
      const map = await syncMap();
      return map.sessions.length === 5 && map.sessions.every((e) => e.sessionId) ? map : undefined;
    });
    await until("the collector has the map", () =>
      Promise.resolve(collector.log().includes('"sessions":5') ? true : undefined),
    );
    const copies = await sim.dataPlane.send(traffic());
    // The NLB has no listener here: its copies are made but go nowhere.
    const toCollector = copies.filter((c) => c.sent).length;
    await until("every copy received", async () =>
      (await collector.sample("tmo_collector_datagrams_total")) === toCollector ? true : undefined,
    );
    await collector.stop(); // closes every file
  }, 180_000);

  afterAll(() => stopScenario(rest, { runtime, sim, collector, nodePrefix: `${PREFIX}-`, home }));

  it("two tenants sharing a session each get only their own pods' packets", async () => {
    expect(captured("team-a/share")).toEqual(expected(["team-a/share-0", "team-a/share-1"], true));
    expect(captured("team-b/share")).toEqual(expected(["team-b/share-0"], true));
    // Interface descriptions name only the file's policy and its pods.
    expect(descriptions("team-a/share")).toContain("policy team-a/share");
    expect(descriptions("team-a/share")).not.toMatch(
      new RegExp(`team-b|${ips.get("team-b/share-0")!.replaceAll(".", "\\.")}\\b`),
    );
    expect(descriptions("team-b/share")).not.toMatch(/team-a/);
    for (const ns of ["team-a", "team-b"]) {
      const s = await statusOf(ns, "share");
      expect(cond(s, "Ready")?.status).toBe("True");
      expect(cond(s, "Shadowed")?.status).toBe("False");
      expect(s?.mirroredSources).toBe(ns === "team-a" ? 2 : 1);
    }
  });

  it("two policies on the same pods and target both get what they asked for", async () => {
    const twins = ["team-a/twin-0", "team-a/twin-1"];
    expect(captured("team-a/twin-all")).toEqual(expected(twins, false));
    expect(captured("team-a/twin-http")).toEqual(expected(twins, true));
    for (const name of ["twin-all", "twin-http"]) {
      const s = await statusOf("team-a", name);
      expect(cond(s, "Ready")?.status).toBe("True");
      expect(cond(s, "Shadowed")?.status).toBe("False");
    }
  });

  it("reports shadowing per policy: only the tenant whose pods another target takes", async () => {
    expect(captured("team-a/shadow")).toEqual(expected(["team-a/shadow-0"], true));
    expect(
      collector.files("team-b/shadow").flatMap((f) => tsharkFields(f, ["frame.number"], { home })),
    ).toEqual([]);
    const b = await statusOf("team-b", "shadow");
    expect(cond(b, "Shadowed")).toMatchObject({ status: "True" });
    expect(cond(b, "Shadowed")?.message).toContain("team-b/ids");
    expect(cond(b, "Shadowed")?.message).not.toContain("team-a");
    const a = await statusOf("team-a", "shadow");
    expect(cond(a, "Shadowed")?.status).toBe("False");
  });
});
