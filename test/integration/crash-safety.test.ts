// Crash safety: the operator is killed with SIGKILL at random points while it converges 300
// sessions, and started again, ten times. Afterwards every desired session, filter and target
// exists exactly once, nothing it owns is left over, and the plan is empty.
import { spawn, type ChildProcess } from "node:child_process";
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION } from "../../src/api/resources.ts";
import { isOwnedBy, TAG_KEY } from "../../src/api/tags.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { freePorts, REPO_ROOT } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  onlyFrom,
  operatorEnv,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kubeconfigPath = inject("kubeconfigPath");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const cluster = "crash";
const FIRST = 300; // nodes 300..451: 2 collectors (targets take 10 sources each: 30 collectors needed)
const WORKERS = 150;
const COLLECTORS = 30;
let sim: Ec2Sim;
const running: ChildProcess[] = [];

function startOperator(ports: number[]): ChildProcess {
  const op = spawn(
    "setpriv",
    ["--pdeathsig", "SIGKILL", "--", process.execPath, "src/cmd/main.ts", "operator"],
    {
      cwd: REPO_ROOT,
      env: operatorEnv({
        kubeconfig: kubeconfigPath,
        cluster,
        namespace: "crash-system",
        ec2: sim.url,
        ports,
        // The emulator does not throttle here; the client-side buckets are widened to match, so
        // the test spends its time on crashes rather than on AWS's 5 calls a second.
        extra: {
          TMO_LEADER_ELECTION: "false",
          TMO_MUTATING_RATE: "2000",
          TMO_MUTATING_BURST: "2000",
          TMO_DESCRIBE_RATE: "2000",
          TMO_DESCRIBE_BURST: "2000",
          TMO_APPLY_CONCURRENCY: "2",
          TMO_LOG_LEVEL: "error",
        },
      }),
      stdio: "ignore",
    },
  );
  running.push(op);
  return op;
}

function ownedCounts(): { sessions: number; byKey: Map<string, number> } {
  const byKey = new Map<string, number>();
  const all = [...sim.state.sessions.values(), ...sim.state.filters.values(), ...sim.state.targets.values()];
  for (const r of all) {
    if (!isOwnedBy(r.tags, cluster)) continue;
    const k = r.tags[TAG_KEY]!;
    byKey.set(k, (byKey.get(k) ?? 0) + 1);
  }
  return {
    sessions: [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, cluster)).length,
    byKey,
  };
}

describe("crash safety", () => {
  beforeAll(async () => {
    await installCrds(rest);
    // 15 ms per call and 2 calls at a time: a full converge takes several seconds to kill into.
    sim = await startEc2Sim({ knobs: { latencyMs: 15 } });
    const collectors = Array.from({ length: COLLECTORS }, (_, i) => FIRST + i);
    seed(
      sim.state,
      makeWorld({ nodes: WORKERS + COLLECTORS, podsPerNode: 0, firstIndex: FIRST, collectors }).inventory,
    );
    await createEksNodes(rest, {
      first: FIRST,
      count: WORKERS + COLLECTORS,
      collectors,
      pool: "crash",
      prefix: "crash",
    });
    await createNamespaces(rest, ["crash-system", "crash-apps"]);
    await createCollectorTarget(rest, "crash-collector", {
      allowNodeSources: true,
      ...onlyFrom("crash-apps"),
    });
    // Whole-node mirroring of 150 workers: two ENIs each, 300 sessions.
    await createPolicy(rest, {
      namespace: "crash-apps",
      name: "all-workers",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": "crash" } },
        targetRef: { name: "crash-collector" },
      },
    });
  });

  afterAll(async () => {
    for (const op of running) if (op.exitCode === null) op.kill("SIGKILL");
    await sim?.stop();
    await deleteNodes(rest, "crash-");
  });

  it("converges 300 sessions through 10 SIGKILLs with no duplicate and no orphan", async () => {
    const kills: number[] = [];
    let seedRand = 12345;
    const rand = (): number => (seedRand = (seedRand * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 10; k++) {
      // Halfway, change the policy so every session is replaced: later kills hit that converge.
      if (k === 4) {
        await rest.mergePatch(
          `/apis/${API_VERSION}/namespaces/crash-apps/trafficmirrorpolicies/all-workers`,
          { spec: { packetLength: 128 } },
          "patching policy",
        );
      }
      const op = startOperator(await freePorts(2));
      // Kill after a random 0.5–3.5 s (sometimes before the caches sync), or, every other run,
      // as soon as this run has made a session: a converge applied in units can finish inside
      // the window, and a kill that always came after it would hit nothing in flight.
      // (On a loaded machine the operator may take longer than the window to start: that run
      // waits for its first session however long it takes, up to 30 s.)
      const at = ownedCounts().sessions;
      const early = k % 2 === 0 && at < 300;
      const due = Date.now() + (early ? 30_000 : 500 + rand() * 3000);
      while (Date.now() < due && !(k % 2 === 0 && ownedCounts().sessions > at)) await sleep(5);
      op.kill("SIGKILL");
      await new Promise((r) =>
        op.exitCode !== null || op.signalCode !== null ? r(null) : op.once("exit", r),
      );
      kills.push(ownedCounts().sessions);
    }
    // The kills really hit a converge in flight: progress was partial after the first ones.
    expect(kills[0]).toBeLessThan(300);
    expect(kills.some((n) => n > 0 && n < 300)).toBe(true);
    const op = startOperator(await freePorts(2));
    const deadline = Date.now() + 120_000;
    while (ownedCounts().sessions < 300 && Date.now() < deadline) await sleep(500);
    await sleep(3_000); // a cycle more: filters no longer wanted would be deleted by now
    op.kill("SIGTERM");
    const { sessions, byKey } = ownedCounts();
    expect(sessions).toBe(300);
    expect(
      [...sim.state.sessions.values()].every((s) => !isOwnedBy(s.tags, cluster) || s.packetLength === 128),
    ).toBe(true);
    const duplicates = [...byKey].filter(([, n]) => n > 1);
    expect(duplicates).toEqual([]);
    // Orphans: every owned filter is used by an owned session, every owned target is a collector's.
    const usedFilters = new Set([...sim.state.sessions.values()].map((s) => s.trafficMirrorFilterId));
    const orphanFilters = [...sim.state.filters.values()].filter(
      (f) => isOwnedBy(f.tags, cluster) && !usedFilters.has(f.trafficMirrorFilterId),
    );
    expect(orphanFilters).toEqual([]);
    // Other suites' TrafficMirrorTargets live on the shared control plane too (and get AWS targets
    // of their own); this test's target has exactly one AWS target per collector node.
    const ours = [...sim.state.targets.values()].filter(
      (t) => isOwnedBy(t.tags, cluster) && t.tags[TAG_KEY]!.startsWith("target-crash-collector-"),
    );
    expect(ours).toHaveLength(COLLECTORS);
    console.log(`owned sessions after each kill: ${kills.join(", ")}`);
  }, 300_000);
});
