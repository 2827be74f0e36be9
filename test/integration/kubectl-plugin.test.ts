// The kubectl plugin against a real apiserver, the operator's loop, the EC2 emulator's data plane
// and two collector processes (as if on two collector nodes), each watching the operator's map:
// - capture makes a time-boxed policy, streams from every collector it finds through the
//   collector pods' stream addresses, and writes one pcapng that tshark reads: only the selected
//   pods' packets that pass --filter, from both collectors, in time order, none of another
//   policy's; at the end the policy is deleted and nothing of it is left in the emulator;
//   Ctrl-C does the same early; mistakes and refusals give one sentence;
// - why and status read the scenario's policies: mirrored, unsupported instance type, namespace
//   not allowed, selected by nothing; the bundled plugin runs as kubectl runs it.
// kwok pods run no code, so the apiserver cannot port-forward to the collector pods here: the
// plugin's connect step reaches the collector processes directly (the port-forward path runs
// against a real kubelet in real-node.test.ts).
import { execFile } from "node:child_process";
import { createWriteStream, mkdtempSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION } from "../../src/api/resources.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { parseFilters, parseFor, parseSelector, UserError } from "../../src/plugin/args.ts";
import { capture, type CaptureDeps, type CaptureRequest } from "../../src/plugin/capture.ts";
import { paths } from "../../src/plugin/cluster.ts";
import { collectorCounts, statusReport, whyReport } from "../../src/plugin/status.ts";
import type { SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { REPO_ROOT } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import { startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { createPod, runningPodIp, stopScenario } from "../fixtures/mirroring.ts";
import { startTestOperator } from "../fixtures/operator.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  until,
} from "../fixtures/scenario.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { makeWorld } from "../fixtures/world.ts";

const run = promisify(execFile);
const kubeconfigPath = inject("kubeconfigPath");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const stateDir = inject("harnessStateDir");
const FIRST = 822; // 822 and 823 run collectors (zones a, b); 825 (a) and 826 (b) hold pods; 827 is an m6i
const NODES = 6;
const PREFIX = "kplugin";
const SYSTEM = "kplugin-system";
const SHOP = "kplugin-shop";
const BANK = "kplugin-bank";
const TARGET = "kplugin-collector";
const COLLECTOR_LABELS = { "kplugin.test/collector": "true" };
const CLIENT = "10.0.200.9";
const world = makeWorld({
  nodes: NODES,
  podsPerNode: 0,
  firstIndex: FIRST,
  collectors: [FIRST, FIRST + 1],
  instanceType: (i) => (i === FIRST + 5 ? "m6i.large" : "m5.large"),
});
const nodeName = (i: number) => eksNodeSpec(i, { prefix: PREFIX }).name;

let sim: Ec2Sim;
let runtime: OperatorRuntime;
const collectors: CollectorProcess[] = [];
let home: string;
const ips = new Map<string, string>();

/** The plugin's connect step, without the apiserver: a collector pod's port is its process's. */
const direct = (_ns: string, _pod: string, port: number): Promise<Duplex> =>
  new Promise((resolve, reject) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });

/**
 * A kubeconfig for a ServiceAccount of SHOP (a tenant) holding `rules` there and `systemRules` in
 * the collector's namespace: the plugin then runs with exactly those rights.
 */
async function tenantKubeconfig(name: string, rules: unknown[], systemRules: unknown[]): Promise<string> {
  const post = (path: string, body: unknown) =>
    rest.request({ method: "POST", path, body, what: `creating ${path}` });
  await post(`/api/v1/namespaces/${SHOP}/serviceaccounts`, { metadata: { name } });
  for (const [ns, r] of [
    [SHOP, rules],
    [SYSTEM, systemRules],
  ] as const) {
    await post(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, { metadata: { name }, rules: r });
    await post(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: SHOP }],
    });
  }
  const token = await rest.request<{ status: { token: string } }>({
    method: "POST",
    path: `/api/v1/namespaces/${SHOP}/serviceaccounts/${name}/token`,
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
    what: "requesting a token",
  });
  const user = new KubeConfig();
  user.loadFromOptions({
    clusters: [kc.getCurrentCluster()!],
    users: [{ name, token: token.status.token }],
    contexts: [{ name, cluster: kc.getCurrentCluster()!.name, user: name, namespace: SHOP }],
    currentContext: name,
  });
  const file = join(home, `${name}.kubeconfig`);
  writeFileSync(file, user.exportConfig());
  return file;
}

/** Traffic to and from each pod: TCP 80 and 443 in, TCP 80 out. */
function traffic(pods: readonly string[], round: number): SyntheticPacket[] {
  return pods.flatMap((name, n) => {
    const ip = ips.get(name)!;
    const port = 30000 + round * 100 + n * 3;
    return [
      { src: CLIENT, dst: ip, protocol: 6, srcPort: port, dstPort: 80, payload: `r${round} ${name} in80` },
      {
        src: CLIENT,
        dst: ip,
        protocol: 6,
        srcPort: port + 1,
        dstPort: 443,
        payload: `r${round} ${name} in443`,
      },
      {
        src: ip,
        dst: CLIENT,
        protocol: 6,
        srcPort: 80,
        dstPort: port + 2,
        payload: `r${round} ${name} out80`,
      },
    ];
  });
}

function request(file: string, selector: string, o: Partial<CaptureRequest> = {}): CaptureRequest {
  return {
    namespace: SHOP,
    selector: parseSelector(selector),
    selectorText: selector,
    duration: parseFor("60s"),
    filters: [],
    collectorNamespace: SYSTEM,
    out: createWriteStream(file),
    ...o,
  };
}

/** Deps for one capture: lines said are kept; `stop()` is the user's Ctrl-C. */
function deps(): { d: CaptureDeps; said: string[]; stop: () => void } {
  const said: string[] = [];
  let stop: () => void = () => undefined;
  const interrupted = new Promise<void>((r) => (stop = r));
  return {
    said,
    stop: () => stop(),
    d: {
      rest,
      connect: direct,
      say: (l) => said.push(l),
      interrupted,
      onSecondInterrupt: () => undefined,
      pollMs: 200,
    },
  };
}

const ownedBy = (policy: string) =>
  [...sim.state.sessions.values()].filter((s) =>
    (s.tags["traffic-mirror.twtech.io/owners"] ?? "").split(",").includes(policy),
  );

describe("kubectl trafficmirror", () => {
  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "tmo-kplugin-"));
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(sim.state, world.inventory);
    await createEksNodes(rest, {
      first: FIRST,
      count: NODES,
      collectors: [FIRST, FIRST + 1],
      pool: PREFIX,
      prefix: PREFIX,
      collectorLabels: COLLECTOR_LABELS,
      instanceType: (i) => (i === FIRST + 5 ? "m6i.large" : "m5.large"),
    });
    await createNamespaces(rest, [SYSTEM, SHOP, BANK]);
    for (const ns of [SYSTEM, SHOP, BANK])
      await until(`default SA in ${ns}`, () =>
        rest.get(`/api/v1/namespaces/${ns}/serviceaccounts/default`, "SA"),
      );
    await createCollectorTarget(rest, TARGET, {
      collector: { nodeSelector: COLLECTOR_LABELS, selectionMode: "Pod" },
      allowedNamespaces: { from: "List", names: [SHOP] },
    });
    const pods: [string, string, number, Record<string, string>][] = [
      [SHOP, "web-a", 3, { app: "web" }],
      [SHOP, "web-b", 4, { app: "web" }],
      [SHOP, "web-c", 3, { app: "web" }],
      [SHOP, "api-a", 4, { app: "api" }],
      [SHOP, "web-old", 5, { app: "web-old" }],
      [SHOP, "lonely", 3, { app: "lonely" }],
      [BANK, "ledger", 3, { app: "ledger" }],
    ];
    for (const [namespace, name, node, labels] of pods)
      await createPod(rest, { namespace, name, nodeName: nodeName(FIRST + node), labels });
    for (const [ns, name] of pods) ips.set(name, await runningPodIp(rest, ns, name));
    await createPolicy(rest, {
      namespace: SHOP,
      name: "api",
      spec: { podSelector: { matchLabels: { app: "api" } }, targetRef: { name: TARGET } },
    });
    await createPolicy(rest, {
      namespace: SHOP,
      name: "old",
      spec: { podSelector: { matchLabels: { app: "web-old" } }, targetRef: { name: TARGET } },
    });
    await createPolicy(rest, {
      namespace: BANK,
      name: "ledger",
      spec: { podSelector: { matchLabels: { app: "ledger" } }, targetRef: { name: TARGET } },
    });
    for (const i of [0, 1]) {
      const c = await startCollectorProcess({
        stateDir,
        name: `collector-kplugin-${i}`,
        stream: true,
        env: {
          KUBECONFIG: kubeconfigPath,
          TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `${SYSTEM}/${VNI_MAP_CONFIGMAP}`,
        },
      });
      collectors.push(c);
      const eni = world.inventory.networkInterfaces.find(
        (e) => e.instanceId === world.inventory.instances[i]!.instanceId && e.deviceIndex === 0,
      )!;
      sim.dataPlane.setEndpoint(eni.networkInterfaceId, { port: c.port });
      // The collector DaemonSet's pod on that node, as the chart makes it (kwok runs no code).
      await rest.request({
        method: "POST",
        path: `/api/v1/namespaces/${SYSTEM}/pods`,
        what: "creating collector pod",
        body: {
          metadata: {
            name: `collector-${i}`,
            labels: {
              "app.kubernetes.io/part-of": "traffic-mirror-operator",
              "app.kubernetes.io/component": "collector",
            },
          },
          spec: {
            nodeName: nodeName(FIRST + i),
            containers: [
              {
                name: "collector",
                image: "registry.example/tmo:1",
                env: [
                  { name: "TMO_COLLECTOR_STREAM_ADDR", value: `127.0.0.1:${c.streamPort}` },
                  { name: "TMO_COLLECTOR_METRICS_ADDR", value: `127.0.0.1:${c.metricsPort}` },
                ],
              },
            ],
          },
        },
      });
      await runningPodIp(rest, SYSTEM, `collector-${i}`);
    }
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: "it-kplugin",
      namespace: SYSTEM,
    }));
  }, 240_000);

  afterAll(() =>
    stopScenario(rest, { runtime, sim, collector: collectors[1], nodePrefix: `${PREFIX}-`, home }).finally(
      () => collectors[0]?.stop(),
    ),
  );

  it("captures the selected pods' filtered packets from both collectors, in time order, then leaves nothing", async () => {
    const file = join(home, "web.pcapng");
    const { d, said } = deps();
    const running = capture(
      request(file, "app=web", { duration: parseFor("15s"), filters: parseFilters(["tcp/80"]) }),
      d,
    );
    await until("streaming", () =>
      Promise.resolve(said.some((l) => l.startsWith("streaming from 2 ")) ? true : undefined),
    );
    const policy = said.find((l) => l.startsWith("created "))!.split(" ")[2]!;
    // The other policy's pod, unselected pods and port 443 are sent too.
    const everyone = ["web-a", "web-b", "web-c", "api-a", "lonely"];
    for (let round = 0; round < 3; round++) {
      await sim.dataPlane.send(traffic(everyone, round));
      await new Promise((r) => setTimeout(r, 300));
    }
    // Whose capture it is, as the apiserver knows the caller.
    const [pns, pname] = policy.split("/") as [string, string];
    const made = await rest.get<{
      metadata: { annotations: Record<string, string>; labels: Record<string, string> };
    }>(paths.policy(pns, pname), "reading the capture's policy");
    expect(made.metadata.annotations["trafficmirror.twtech.io/captured-by"]).toMatch(/\S/);
    expect(made.metadata.labels["trafficmirror.twtech.io/capture"]).toBe("true");
    const result = await running;
    expect(result.policy).toBe(policy);
    // Over the 15 s, then deleted and cleaned up: nothing of it in EC2, the object gone.
    expect(said.at(-1)).toBe("mirror sessions removed; nothing is left in AWS");
    expect(ownedBy(policy)).toEqual([]);
    const [ns, name] = policy.split("/") as [string, string];
    await expect(rest.get(paths.policy(ns, name), "probing")).rejects.toThrow(/404/);
    const rows = tsharkFields(
      file,
      ["frame.interface_name", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport"],
      { home },
    );
    const seen = rows.map(([, , src, dst, sp, dp]) => {
      const name = [...ips].find(([, ip]) => ip === dst || ip === src)![0];
      return `${name} ${ips.get(name) === dst ? `in${dp}` : `out${sp}`}`;
    });
    const want = ["web-a", "web-b", "web-c"].flatMap((n) => [`${n} in80`, `${n} out80`]);
    expect(seen.sort()).toEqual([...want, ...want, ...want].sort());
    expect(result.packets).toBe(rows.length);
    // Both collectors' streams, in one timeline.
    expect(new Set(rows.map((r) => r[0]!.replace(/ w0$/, "")))).toEqual(
      new Set(["collector-0", "collector-1"]),
    );
    const times = rows.map((r) => Number(r[1]));
    expect(times).toEqual([...times].sort((a, b) => a - b));
  }, 120_000);

  it("stops at Ctrl-C: deletes the policy and waits until its sessions are gone", async () => {
    const file = join(home, "stopped.pcapng");
    const { d, said, stop } = deps();
    const running = capture(request(file, "app in (web)"), d);
    await until("streaming", () =>
      Promise.resolve(said.some((l) => l.startsWith("streaming")) ? true : undefined),
    );
    const policy = said.find((l) => l.startsWith("created "))!.split(" ")[2]!;
    expect(ownedBy(policy).length).toBeGreaterThan(0);
    const started = Date.now();
    stop();
    await running;
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(ownedBy(policy)).toEqual([]);
    expect(said).toContain("mirror sessions removed; nothing is left in AWS");
  }, 120_000);

  it("says when the selector matches no pod, and still cleans up at Ctrl-C", async () => {
    const { d, said, stop } = deps();
    const running = capture(request(join(home, "none.pcapng"), "app=nothing"), d);
    await until("the note", () =>
      Promise.resolve(
        said.includes("  no pod matches the selector (yet): pods that appear while it runs are mirrored")
          ? true
          : undefined,
      ),
    );
    stop();
    expect((await running).packets).toBe(0);
    expect(said.at(-1)).toBe("mirror sessions removed; nothing is left in AWS");
  }, 60_000);

  it("says in one sentence why it cannot capture, and leaves no policy behind", async () => {
    const attempt = async (o: Partial<CaptureRequest>): Promise<string> => {
      const err = await capture(request(join(home, "x.pcapng"), "app=ledger", o), deps().d).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UserError);
      return (err as Error).message;
    };
    expect(await attempt({ namespace: BANK })).toBe(
      `no collector TrafficMirrorTarget allows namespace ${BANK}`,
    );
    expect(await attempt({ namespace: BANK, target: TARGET })).toMatch(
      /^the operator will not mirror this capture: NamespaceNotAllowed: .*does not allow namespace kplugin-bank$/,
    );
    expect(await attempt({ target: "absent" })).toBe("there is no TrafficMirrorTarget named absent");
    expect(await attempt({ collectorNamespace: BANK })).toBe(
      `no collector pod runs in namespace ${BANK} (pass --collector-namespace if it is elsewhere)`,
    );
    await until("capture policies gone", async () => {
      const l = await rest.get<{ items: unknown[] }>(
        `/apis/${API_VERSION}/trafficmirrorpolicies?labelSelector=trafficmirror.twtech.io%2Fcapture`,
        "listing",
      );
      return l.items.length === 0 ? true : undefined;
    });
    expect(() => parseFilters(["tcp/99999"])).toThrow(
      "--filter tcp/99999: ports are 0-65535, the lower one first",
    );
    expect(() => parseFor("10 minutes")).toThrow(/^--for 10 minutes is not a duration/);
    expect(() => parseSelector("app=we b")).toThrow(UserError);
  }, 120_000);

  it("why: each policy that selects a pod, and whether it is mirrored or why not", async () => {
    await until("api and old reported", async () => {
      const p = await rest.get<{ items: { status?: { conditions?: unknown[] } }[] }>(
        `/apis/${API_VERSION}/namespaces/${SHOP}/trafficmirrorpolicies`,
        "listing",
      );
      return p.items.length >= 2 && p.items.every((x) => x.status?.conditions) ? true : undefined;
    });
    expect(await whyReport(rest, SHOP, "pod/api-a")).toMatch(
      new RegExp(
        `^pod ${SHOP}/api-a \\(node ${nodeName(FIRST + 4)}, IP ${ips.get("api-a")}\\):\\n  api: mirrored by tms-\\S+ on eni-\\S+ to ${TARGET}$`,
      ),
    );
    expect(await whyReport(rest, SHOP, "pod/web-old")).toMatch(
      /\n {2}old: not mirrored: UnsupportedInstanceType: .*m6i\.large/,
    );
    expect(await whyReport(rest, BANK, "ledger")).toMatch(
      /\n {2}ledger: not mirrored: NamespaceNotAllowed: /,
    );
    expect(await whyReport(rest, SHOP, "pod/lonely")).toMatch(
      /\n {2}no TrafficMirrorPolicy in kplugin-shop selects it$/,
    );
    await expect(whyReport(rest, SHOP, "pod/nobody")).rejects.toThrow(
      `pod nobody does not exist in namespace ${SHOP}`,
    );
  });

  it("status: the policies' table with sessions, reasons and what the collectors kept", async () => {
    await sim.dataPlane.send(traffic(["api-a"], 9));
    await until("api's packets counted", async () =>
      (await collectors[1]!.sample("tmo_collector_packets_total", `{policy="${SHOP}/api"}`)) >= 3
        ? true
        : undefined,
    );
    const text = await statusReport(rest, SHOP, () => collectorCounts(rest, SYSTEM, direct));
    const lines = text.split("\n");
    expect(lines[0]).toMatch(
      /^POLICY\s+TARGET\s+READY\s+REASON\s+PODS\s+MIRRORED\s+ENIS\s+SESSIONS\s+ENDS\s+COLLECTED$/,
    );
    const api = lines.find((l) => l.startsWith(`${SHOP}/api `))!;
    expect(api).toMatch(
      new RegExp(`^${SHOP}/api\\s+${TARGET}\\s+True\\s+Ready\\s+1\\s+1\\s+1\\s+1\\s+-\\s+\\d+ packets$`),
    );
    expect(Number(/(\d+) packets$/.exec(api)![1])).toBe(
      await collectors[1]!.sample("tmo_collector_packets_total", `{policy="${SHOP}/api"}`),
    );
    expect(lines.find((l) => l.startsWith(`${SHOP}/old `))).toMatch(
      /\s+False\s+UnsupportedInstanceType\s+1\s+0\s+0\s+0\s+-\s+0 packets$/,
    );
    expect(text).toMatch(
      new RegExp(
        `\\n  ${SHOP}/api: tms-\\S+ on eni-\\S+ \\(${nodeName(FIRST + 4)}\\) number \\d+ VNI \\d+, 1 sources`,
      ),
    );
    expect(text).toContain(`  ${SHOP}/old: ${SHOP}/web-old not mirrored: UnsupportedInstanceType: `);
    expect(text).not.toContain(BANK);
  });

  it("runs bundled as kubectl runs a plugin, and says in one sentence what it may not do", async () => {
    await run("node", ["test/tools/build-plugin.ts"], { cwd: REPO_ROOT });
    const bin = join(REPO_ROOT, "dist");
    const env = { ...process.env, KUBECONFIG: kubeconfigPath, PATH: `${bin}:${process.env["PATH"]}` };
    const status = await run(
      "kubectl",
      ["trafficmirror", "status", "-n", BANK, "--collector-namespace", SYSTEM],
      {
        env,
      },
    );
    expect(status.stdout).toMatch(
      new RegExp(`^POLICY .*\\n${BANK}/ledger\\s+${TARGET}\\s+False\\s+NamespaceNotAllowed\\s`),
    );
    // kwok's pods take no port-forward: the table still comes, with the sentence why counts are missing.
    expect(status.stdout).toMatch(
      /\ncollector counts: could not port-forward to the collector pod collector-0 in namespace kplugin-system: Unexpected server response: 500\n$/,
    );
    const why = await run("kubectl", ["trafficmirror", "why", "pod/ledger", "-n", BANK], { env });
    expect(why.stdout).toContain("ledger: not mirrored: NamespaceNotAllowed");
    const bad = await run(
      "kubectl",
      ["trafficmirror", "capture", "-n", SHOP, "-l", "app=web", "--filter", "sctp/9", "-w", join(home, "y")],
      { env },
    ).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad?.code).toBe(1);
    // With a tenant's own rights: no policies of its own to make, then no port-forward to the collector.
    const policies = { apiGroups: ["trafficmirror.twtech.io"], resources: ["trafficmirrorpolicies"] };
    const reader = await tenantKubeconfig("reader", [{ ...policies, verbs: ["get", "list"] }], []);
    const writer = await tenantKubeconfig(
      "writer",
      [{ ...policies, verbs: ["get", "list", "create", "delete"] }],
      [{ apiGroups: [""], resources: ["pods"], verbs: ["list"] }],
    );
    const attempt = (kubeconfig: string) =>
      run(
        "kubectl",
        [
          "trafficmirror",
          "capture",
          "-l",
          "app=web",
          "--target",
          TARGET,
          "--collector-namespace",
          SYSTEM,
          "-w",
          join(home, "z"),
        ],
        {
          env: { ...env, KUBECONFIG: kubeconfig },
        },
      ).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
    expect((await attempt(reader))?.stderr).toBe(
      `error: you are not allowed to create TrafficMirrorPolicies in namespace ${SHOP}\n`,
    );
    expect((await attempt(writer))?.stderr).toBe(
      `error: you are not allowed to port-forward to the collector pods in namespace ${SYSTEM}\n`,
    );
    const own = await run("kubectl", ["trafficmirror", "status", "--collector-namespace", SYSTEM], {
      env: { ...env, KUBECONFIG: writer },
    });
    expect(own.stdout).toMatch(new RegExp(`\\n${SHOP}/api\\s`));
    expect(own.stdout).toMatch(
      /\ncollector counts: you are not allowed to port-forward to the collector pod collector-\d in namespace kplugin-system\n$/,
    );
    expect(bad?.stderr).toBe(
      "error: --filter sctp/9 is not protocol[/port], e.g. tcp/443, udp/53, tcp/8000-8080 or icmp\n",
    );
  }, 120_000);
});
