// The operator as people run it: `node src/cmd/main.ts operator` as its own process, configured by
// environment variables, against the real apiserver and the EC2 emulator program. It serves probes
// and metrics, programs a policy, and stops cleanly on SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { freePorts, REPO_ROOT } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";
import { promtoolCheckMetrics } from "../fixtures/promtool.ts";
import { COLLECTOR_LABEL, makeWorld } from "../fixtures/world.ts";

const kubeconfigPath = inject("kubeconfigPath");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const FIRST = 540;
let sim: Ec2Sim;
let op: ChildProcess;
let output = "";
let ports: number[];

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; operator output:\n${output.slice(-2000)}`);
    await sleep(200);
  }
}

describe("operator process", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(
      sim.state,
      makeWorld({ nodes: 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] }).inventory,
    );
    for (const i of [FIRST, FIRST + 1]) {
      await rest.request({
        method: "POST",
        path: "/api/v1/nodes",
        body: makeEksNode(
          eksNodeSpec(i, { labels: i === FIRST ? COLLECTOR_LABEL : { "example.com/pool": "proc" } }),
        ),
        what: "creating node",
      });
    }
    for (const ns of ["proc-system", "proc-apps"])
      await rest.request({
        method: "POST",
        path: "/api/v1/namespaces",
        body: { metadata: { name: ns } },
        what: "ns",
      });
    ports = await freePorts(2);
    op = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", process.execPath, "src/cmd/main.ts", "operator"], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        KUBECONFIG: kubeconfigPath,
        TMO_CLUSTER_NAME: "proc",
        TMO_NAMESPACE: "proc-system",
        TMO_POD_NAME: "operator-0",
        TMO_EC2_ENDPOINT: sim.url,
        AWS_REGION: "us-east-1",
        TMO_METRICS_ADDR: `127.0.0.1:${ports[0]}`,
        TMO_HEALTH_ADDR: `127.0.0.1:${ports[1]}`,
        TMO_RESYNC_SECONDS: "5",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    op.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    op.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  });

  afterAll(async () => {
    if (op && op.exitCode === null) op.kill("SIGKILL");
    await sim?.stop();
    for (const i of [FIRST, FIRST + 1])
      await rest
        .request({ method: "DELETE", path: `/api/v1/nodes/${eksNodeSpec(i).name}`, what: "rm" })
        .catch(() => undefined);
  });

  it("becomes ready, programs a policy, and exports metrics that pass promtool", async () => {
    await until("readyz", async () =>
      (await fetch(`http://127.0.0.1:${ports[1]}/readyz`)).status === 200 ? true : undefined,
    );
    await rest.request({
      method: "POST",
      path: `/apis/${API_VERSION}/trafficmirrortargets`,
      what: "target",
      body: {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorTarget",
        metadata: { name: "proc-collector" },
        spec: {
          collector: { nodeSelector: COLLECTOR_LABEL },
          allowedNamespaces: { from: "All" },
          allowNodeSources: true,
        },
      },
    });
    await rest.request({
      method: "POST",
      path: `/apis/${API_VERSION}/namespaces/proc-apps/trafficmirrorpolicies`,
      what: "policy",
      body: {
        apiVersion: API_VERSION,
        kind: "TrafficMirrorPolicy",
        metadata: { name: "nodes" },
        spec: {
          nodeSelector: { matchLabels: { "example.com/pool": "proc" } },
          targetRef: { name: "proc-collector" },
        },
      },
    });
    const status = await until("policy Ready", async () => {
      const p = await rest.get<{ status?: PolicyStatus }>(
        `/apis/${API_VERSION}/namespaces/proc-apps/trafficmirrorpolicies/nodes`,
        "read",
      );
      return p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" ? p.status : undefined;
    });
    expect(status.selectedNodes).toBe(1);
    expect(status.sessionCount).toBe(2); // both ENIs of the one selected node
    const metrics = await (await fetch(`http://127.0.0.1:${ports[0]}/metrics`)).text();
    expect(metrics).toMatch(/tmo_ec2_calls_total\{action="CreateTrafficMirrorSession",outcome="success"\} 2/);
    expect(metrics).toMatch(/tmo_leader 1/);
    expect(metrics).toMatch(/^tmo_operator_nodejs_active_handles\{type="\w+"\} \d+$/m);
    expect(promtoolCheckMetrics(metrics)).toEqual({ code: 0, output: "" });
    // Logs are JSON lines, never with credentials.
    expect(output).toMatch(/"msg":"Operator started"/);
    expect(output).not.toMatch(/secretAccessKey|emulator"/);
  });

  it("stops cleanly on SIGTERM and gives up its lease", async () => {
    const exited = new Promise<number | null>((resolve) => op.once("exit", (code) => resolve(code)));
    op.kill("SIGTERM");
    expect(await exited).toBe(0);
    const lease = await rest.get<{ spec: { holderIdentity?: string } }>(
      "/apis/coordination.k8s.io/v1/namespaces/proc-system/leases/traffic-mirror-operator",
      "lease",
    );
    expect(lease.spec.holderIdentity ?? "").toBe("");
  });
});
