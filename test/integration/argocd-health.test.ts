// The Argo CD health check (config/argocd/health.lua) run by a real Lua 5.4 interpreter on status
// objects the operator itself wrote: a real reconcile loop against the EC2 emulator and the
// control plane makes a healthy target and policy, a policy whose target is missing, one in a
// namespace the target does not allow, a suspended one and a time-boxed one whose time is up.
// Reasons the loop does not reach here (AWS limits, retries, dry-run) are checked on status built
// with the real condition reasons.
// Every case runs under Lua 5.4 and 5.1 (what Argo CD's gopher-lua implements).
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import { ConditionType, Reason } from "../../src/api/reasons.ts";
import { API_VERSION } from "../../src/api/resources.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import type { Ec2Sim } from "../ec2-sim/server.ts";
import { createPolicy, startCollectorScenario, stopCollectorScenario, until } from "../fixtures/scenario.ts";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";
import { startTestOperator } from "../fixtures/operator.ts";

const run = promisify(execFile);
const SCRIPT = join(REPO_ROOT, "config", "argocd", "health.lua");
// `make tools` links Debian's lua5.4 and lua5.1 into .tools/bin (test/tools/install.sh).
const lua = (name: string): string => (existsSync(join(TOOLS_BIN, name)) ? join(TOOLS_BIN, name) : name);
const LUAS = [lua("lua5.4"), lua("lua5.1")];

/** A string as a Lua literal that Lua 5.1 and 5.4 both read: UTF-8 bytes outside ASCII as \\ddd. */
function luaString(v: string): string {
  let out = "";
  for (const b of Buffer.from(v, "utf8"))
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c
        ? String.fromCharCode(b)
        : `\\${String(b).padStart(3, "0")}`;
  return `"${out}"`;
}

/** A JSON value as a Lua table constructor (null and undefined become absent keys). */
function toLua(v: unknown): string {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "string") return luaString(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `{ ${v.map(toLua).join(", ")} }`;
  const fields = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== null && x !== undefined)
    .map(([k, x]) => `[${toLua(k)}] = ${toLua(x)}`);
  return `{ ${fields.join(", ")} }`;
}

async function runScript(interpreter: string, obj: unknown): Promise<{ status: string; message: string }> {
  const chunk = `obj = ${toLua(obj)}\nlocal hs = dofile(${toLua(SCRIPT)})\nio.write(hs.status, "\\n", hs.message)`;
  const { stdout } = await run(interpreter, ["-e", chunk]);
  const [status = "", ...message] = stdout.split("\n");
  return { status, message: message.join("\n") };
}

/**
 * Runs health.lua as Argo CD does (`obj` a global, the chunk returns {status, message}) under Lua
 * 5.4 and under Lua 5.1, the language Argo CD's interpreter (gopher-lua) implements; both must agree.
 */
async function health(obj: unknown): Promise<{ status: string; message: string }> {
  const [a, b] = await Promise.all(LUAS.map((l) => runScript(l, obj)));
  expect(b, "Lua 5.1 and 5.4 agree").toEqual(a);
  return a!;
}

type Obj = { metadata: { generation: number }; status?: { conditions?: { type: string; reason: string }[] } };

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
// The test writes as someone else than the operator, so managedFields tell the two apart.
const rest = new KubeRest(kc, { userAgent: "tmo-argocd-test/1" });
// Node indexes 745-749 are this suite's (740-744 are the chart test's); 745 is the collector.
const FIRST = 745;
const NODE_LABEL = { "argocd-health.twtech.io/collector": "true" };
const TARGET = "argohealth-collector";
const NS = "argohealth";
const OTHER_NS = "argohealth-other";

const policyPath = (ns: string, name: string): string =>
  `/apis/${API_VERSION}/namespaces/${ns}/trafficmirrorpolicies/${name}`;

/** The policy once the operator has written a Ready condition with this reason. */
async function policyWithReady(ns: string, name: string, reason?: string): Promise<Obj> {
  return until(`${ns}/${name} Ready ${reason ?? "True"}`, async () => {
    const p = await rest.get<Obj>(policyPath(ns, name), "reading policy");
    const ready = p.status?.conditions?.find((c) => c.type === ConditionType.Ready);
    return ready && (reason === undefined || ready.reason === reason) ? p : undefined;
  });
}

describe("Argo CD health check", () => {
  let sim: Ec2Sim;
  let runtime: OperatorRuntime;

  beforeAll(async () => {
    sim = await startCollectorScenario(rest, {
      first: FIRST,
      count: 3,
      prefix: "argohealth",
      collectorLabels: NODE_LABEL,
      namespaces: ["argohealth-system", NS, OTHER_NS],
      target: TARGET,
      allowed: [NS],
    });
    ({ runtime } = await startTestOperator({
      kc,
      rest: new KubeRest(kc),
      ec2Url: sim.url,
      cluster: "argohealth",
      namespace: "argohealth-system",
    }));
    const nodes = { nodeSelector: { matchLabels: { "example.com/pool": "argohealth" } } };
    await createPolicy(rest, {
      namespace: NS,
      name: "healthy",
      spec: { ...nodes, targetRef: { name: TARGET } },
    });
    await createPolicy(rest, {
      namespace: NS,
      name: "no-target",
      spec: { ...nodes, targetRef: { name: "absent" } },
    });
    await createPolicy(rest, {
      namespace: NS,
      name: "paused",
      spec: { ...nodes, targetRef: { name: TARGET }, suspend: true },
    });
    await createPolicy(rest, {
      namespace: NS,
      name: "timeboxed",
      spec: { ...nodes, targetRef: { name: TARGET }, duration: "3s" },
    });
    await createPolicy(rest, {
      namespace: OTHER_NS,
      name: "elsewhere",
      spec: { ...nodes, targetRef: { name: TARGET } },
    });
  });

  afterAll(async () => {
    await rest
      .request({ method: "DELETE", path: `/api/v1/namespaces/${NS}/pods/starting`, what: "deleting pod" })
      .catch(() => undefined);
    await stopCollectorScenario(rest, {
      policies: [
        [NS, "healthy"],
        [NS, "starting"],
        [NS, "no-target"],
        [NS, "paused"],
        [NS, "timeboxed"],
        [OTHER_NS, "elsewhere"],
      ],
      target: TARGET,
      prefix: "argohealth",
      runtime,
      sim,
    });
  });

  it("runs under both interpreters (installed by make tools)", async () => {
    const versions = await Promise.all(LUAS.map((l) => run(l, ["-v"]).then((r) => r.stdout + r.stderr)));
    expect(versions[0]).toMatch(/Lua 5\.4/);
    expect(versions[1]).toMatch(/Lua 5\.1/);
  });

  it("reads non-ASCII messages intact", async () => {
    const obj = {
      metadata: { generation: 1 },
      status: {
        observedGeneration: 1,
        conditions: [
          { type: "Ready", status: "False", reason: "EniFull", message: "ENI voll –\t3/3 \u{1F6A6}" },
        ],
      },
    };
    expect(await health(obj)).toEqual({ status: "Degraded", message: "EniFull: ENI voll –\t3/3 \u{1F6A6}" });
  });

  it("is the script the argocd-cm patch installs, for both kinds", () => {
    const patch = parse(readFileSync(join(REPO_ROOT, "config/argocd/argocd-cm-patch.yaml"), "utf8")) as {
      data: Record<string, string>;
    };
    const script = readFileSync(SCRIPT, "utf8");
    expect(Object.keys(patch.data).sort()).toEqual([
      "resource.customizations.health.trafficmirror.twtech.io_TrafficMirrorPolicy",
      "resource.customizations.health.trafficmirror.twtech.io_TrafficMirrorTarget",
    ]);
    for (const v of Object.values(patch.data)) expect(v).toBe(script);
  });

  it("calls a target and a policy the operator made Ready Healthy", async () => {
    const target = await until("target Ready", async () => {
      const t = await rest.get<Obj>(`/apis/${API_VERSION}/trafficmirrortargets/${TARGET}`, "reading target");
      return t.status?.conditions?.some((c) => c.type === "Ready") ? t : undefined;
    });
    expect(await health(target)).toMatchObject({ status: "Healthy" });
    const policy = await policyWithReady(NS, "healthy");
    expect(await health(policy)).toMatchObject({ status: "Healthy" });
    expect(sim.state.sessions.size).toBeGreaterThan(0);
  });

  it("never sees the operator write spec: it manages only status and finalizers", async () => {
    await policyWithReady(NS, "healthy");
    type Managed = {
      manager: string;
      subresource?: string;
      fieldsV1?: Record<string, Record<string, unknown>>;
    };
    const read = (path: string) =>
      rest.get<{ metadata: { managedFields?: Managed[] } }>(path, "reading managed fields");
    for (const path of [
      `/apis/${API_VERSION}/namespaces/${NS}/trafficmirrorpolicies/healthy`,
      `/apis/${API_VERSION}/trafficmirrortargets/${TARGET}`,
    ]) {
      const fields = (await read(path)).metadata.managedFields ?? [];
      const ours = fields.filter((f) => f.manager === "traffic-mirror-operator");
      expect(ours.length, path).toBeGreaterThan(0);
      for (const f of ours) {
        const top = Object.keys(f.fieldsV1 ?? {}).sort();
        expect(
          top.every((k) => k === "f:status" || k === "f:metadata"),
          `${path}: ${top.join(",")}`,
        ).toBe(true);
        expect(Object.keys(f.fieldsV1?.["f:metadata"] ?? {}).every((k) => k === "f:finalizers")).toBe(true);
      }
      // Spec is the test's alone.
      const specOwners = fields.filter((f) => f.fieldsV1?.["f:spec"]).map((f) => f.manager);
      expect(specOwners).toEqual(["tmo-argocd-test"]);
    }
  });

  it("is Progressing while the operator has not seen the latest generation, or wrote no status yet", async () => {
    const policy = await policyWithReady(NS, "healthy");
    const newer = { ...policy, metadata: { ...policy.metadata, generation: policy.metadata.generation + 1 } };
    expect(await health(newer)).toEqual({
      status: "Progressing",
      message: `Waiting for the operator to observe generation ${policy.metadata.generation + 1}`,
    });
    expect(await health({ ...policy, status: undefined })).toMatchObject({ status: "Progressing" });
    expect(await health({ ...policy, status: { observedGeneration: 1, conditions: [] } })).toMatchObject({
      status: "Progressing",
    });
  });

  it("is Degraded for a missing target and a namespace the target does not allow", async () => {
    const missing = await health(await policyWithReady(NS, "no-target", Reason.TargetNotFound));
    expect(missing.status).toBe("Degraded");
    expect(missing.message).toMatch(/^TargetNotFound: .*absent does not exist/);
    const elsewhere = await health(await policyWithReady(OTHER_NS, "elsewhere", Reason.NamespaceNotAllowed));
    expect(elsewhere.status).toBe("Degraded");
  });

  it("is Progressing, not Degraded, while the selected pods have not started", async () => {
    await until("default service account", () =>
      rest.get(`/api/v1/namespaces/${NS}/serviceaccounts/default`, "reading service account"),
    );
    // No node has this label: the pod stays Pending, as during a rollout waiting for capacity.
    await rest.request({
      method: "POST",
      path: `/api/v1/namespaces/${NS}/pods`,
      body: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "starting", labels: { app: "starting" } },
        spec: {
          nodeSelector: { "argohealth.twtech.io/nowhere": "true" },
          containers: [{ name: "app", image: "registry.example/app:1" }],
        },
      },
      what: "creating pod",
    });
    await createPolicy(rest, {
      namespace: NS,
      name: "starting",
      spec: { podSelector: { matchLabels: { app: "starting" } }, targetRef: { name: TARGET } },
    });
    const h = await health(await policyWithReady(NS, "starting", Reason.Pending));
    expect(h.status).toBe("Progressing");
    expect(h.message).toBe(
      "Pending: SourcesResolved: 1 selected pods are not running yet; first: argohealth/starting: pod is Pending",
    );
  });

  it("is Suspended for a suspended policy", async () => {
    expect(await health(await policyWithReady(NS, "paused", Reason.Suspended))).toMatchObject({
      status: "Suspended",
    });
  });

  it("is Healthy, saying it ended, for a time-boxed policy whose time is up", async () => {
    const h = await health(await policyWithReady(NS, "timeboxed", Reason.Expired));
    expect(h.status).toBe("Healthy");
    expect(h.message).toMatch(/^Expired: SourcesResolved: mirroring ended at \S+Z \(spec\.duration\)$/);
  });

  it("maps the other reasons of src/api/reasons.ts: retries progress, limits and bad sources degrade", async () => {
    const withReady = (status: "True" | "False" | "Unknown", reason: string): unknown => ({
      metadata: { generation: 3 },
      status: {
        observedGeneration: 3,
        conditions: [{ type: ConditionType.Ready, status, reason, message: "m", observedGeneration: 3 }],
      },
    });
    const cases: [string, "True" | "False" | "Unknown", string][] = [
      [Reason.Retrying, "False", "Progressing"],
      [Reason.TargetNotReady, "False", "Progressing"],
      [Reason.Pending, "False", "Progressing"],
      [Reason.Deleting, "False", "Progressing"],
      [Reason.DryRun, "Unknown", "Suspended"],
      [Reason.EniFull, "False", "Degraded"],
      [Reason.TargetFull, "False", "Degraded"],
      [Reason.FilterTooLarge, "False", "Degraded"],
      [Reason.UnsupportedInstanceType, "False", "Degraded"],
      [Reason.NodeSourcesNotAllowed, "False", "Degraded"],
      [Reason.InvalidSpec, "False", "Degraded"],
      ["SomeReasonAddedLater", "False", "Degraded"],
    ];
    for (const [reason, status, want] of cases)
      expect((await health(withReady(status, reason))).status, reason).toBe(want);
    // A Ready condition computed for an older generation is not trusted either.
    const stale = withReady("True", "Ready") as { status: { conditions: { observedGeneration: number }[] } };
    stale.status.conditions[0]!.observedGeneration = 2;
    expect((await health(stale)).status).toBe("Progressing");
  });
});
