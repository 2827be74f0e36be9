// A converge that takes many cycles (EC2's mirror actions slowed to a few calls a second, the
// operator's buckets sized to match) stays responsive: the first session and a status that counts
// progress appear long before the last session, status is written only every few seconds while
// the converge runs, Events are not flooded, and a pod created meanwhile is covered before the
// converge ends.
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { isOwnedBy } from "../../src/api/tags.ts";
import { AWS_DEFAULT_LIMITS, type BucketSpec } from "../../src/aws/rate-limit.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { eksNodeSpec } from "../fixtures/eks.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  onlyFrom,
  until,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";
import { startTestOperator } from "../fixtures/operator.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const cluster = "converge";
const FIRST = 470; // 470–472 run collectors, 473–496 hold one pod each
const COLLECTORS = [FIRST, FIRST + 1, FIRST + 2];
const WORKERS = 24;
const NS = "converge-apps";
// Slow mirror actions: one unit (a filter, its two rules, its session) takes about a second.
const SLOW: Record<string, BucketSpec> = {
  CreateTrafficMirrorFilter: { burst: 1, ratePerSecond: 1.5 },
  CreateTrafficMirrorFilterRule: { burst: 2, ratePerSecond: 2 },
  ModifyTrafficMirrorFilterRule: { burst: 1, ratePerSecond: 1.5 },
  CreateTrafficMirrorSession: { burst: 1, ratePerSecond: 1 },
};
let sim: Ec2Sim;
let runtime: OperatorRuntime;

const ownedSessions = () => [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, cluster));

async function createPod(i: number, name: string): Promise<void> {
  await rest.request({
    method: "POST",
    path: `/api/v1/namespaces/${NS}/pods`,
    body: {
      metadata: { name, labels: { app: "converge" } },
      spec: {
        nodeName: eksNodeSpec(i, { prefix: "converge" }).name,
        containers: [{ name: "c", image: "i" }],
      },
    },
    what: `creating pod ${name}`,
  });
}

async function podIp(name: string): Promise<string> {
  return until(`pod ${name} running`, async () => {
    const p = await rest.get<{ status?: { phase?: string; podIP?: string } }>(
      `/api/v1/namespaces/${NS}/pods/${name}`,
      "pod",
    );
    return p.status?.phase === "Running" ? p.status.podIP : undefined;
  });
}

/** Whether a session of this cluster copies the address (a rule of its filter names it). */
function covered(ip: string): boolean {
  return ownedSessions().some((s) =>
    [...(sim.state.filters.get(s.trafficMirrorFilterId)?.ingressRules ?? [])].some(
      (r) => r.destinationCidrBlock === `${ip}/32`,
    ),
  );
}

/** Polls the emulator and the policy's status, and records when things were first seen. */
class Watcher {
  readonly started = Date.now();
  firstSession: number | undefined;
  firstProgress: number | undefined;
  /** When the last of the first pods' sessions was made: the end of the converge. */
  allSessions: number | undefined;
  lateCoveredAt: number | undefined;
  readonly messages: string[] = [];
  /** When a changed status was seen (polling every 100 ms: about the status writes). */
  readonly writes: number[] = [];
  #lastStatus = "";
  #lateIp: string | undefined;
  #lateCreated = false;

  /** Reads the policy's status; returns its SessionsProgrammed condition. */
  async #observeStatus(
    now: number,
  ): Promise<{ status: string; reason: string; message: string } | undefined> {
    const status = (
      await rest.get<{ status?: PolicyStatus }>(
        `/apis/${API_VERSION}/namespaces/${NS}/trafficmirrorpolicies/all`,
        "policy",
      )
    ).status;
    const seen = JSON.stringify(status ?? {});
    if (status && seen !== this.#lastStatus) this.writes.push(now);
    this.#lastStatus = seen;
    const programmed = status?.conditions?.find((c) => c.type === "SessionsProgrammed");
    if (programmed?.reason === "Programming") {
      this.firstProgress ??= now;
      if (this.messages.at(-1) !== programmed.message) this.messages.push(programmed.message);
    }
    return programmed;
  }

  async #createLatePod(eni: string): Promise<void> {
    this.#lateCreated = true;
    // On the node of a session already made: only that ENI's filter changes, a unit that would
    // wait behind the backlog if it were not newer work.
    const instance = sim.state.enis.get(eni)!.instanceId!;
    await createPod(Number.parseInt(instance.slice(2), 16), "late");
    void podIp("late").then((ip) => (this.#lateIp = ip));
  }

  /** One poll; true once the converge is over and the late pod is covered. */
  async step(): Promise<boolean> {
    const now = Date.now() - this.started;
    const sessions = ownedSessions();
    if (sessions.length > 0) this.firstSession ??= now;
    if (sessions.length >= WORKERS) this.allSessions ??= now;
    const programmed = await this.#observeStatus(now);
    if (!this.#lateCreated && sessions.length >= WORKERS / 3)
      await this.#createLatePod(sessions[0]!.networkInterfaceId);
    if (this.#lateIp && covered(this.#lateIp)) this.lateCoveredAt ??= now;
    if (now > 150_000) throw new Error(`not converged; progress seen: ${this.messages.join(" | ")}`);
    return (
      programmed?.status === "True" && this.lateCoveredAt !== undefined && this.allSessions !== undefined
    );
  }
}

describe("a long converge", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim({ knobs: { throttle: { model: "per-action", actions: SLOW } } });
    seed(
      sim.state,
      makeWorld({
        nodes: COLLECTORS.length + WORKERS,
        podsPerNode: 0,
        firstIndex: FIRST,
        collectors: COLLECTORS,
      }).inventory,
    );
    await createEksNodes(rest, {
      first: FIRST,
      count: COLLECTORS.length + WORKERS,
      collectors: COLLECTORS,
      pool: "converge",
      prefix: "converge",
    });
    await createNamespaces(rest, ["converge-system", NS]);
    await createCollectorTarget(rest, "converge-collector", onlyFrom(NS));
    for (let i = 0; i < WORKERS; i++) await createPod(FIRST + COLLECTORS.length + i, `pod-${i}`);
    for (let i = 0; i < WORKERS; i++) await podIp(`pod-${i}`);
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster,
      namespace: "converge-system",
      concurrency: 2,
      cycleBudgetMs: 2_000,
      identity: "converge-0",
      // The operator's share of buckets sized as the emulator's: it paces itself, nothing is throttled.
      adapter: { limits: { ...AWS_DEFAULT_LIMITS, actions: SLOW } },
    }));
  }, 120_000);

  afterAll(async () => {
    await runtime?.stop();
    await sim?.stop();
    await deleteNodes(rest, "converge-");
  });

  it("shows the first session and progress in status early, and covers a pod created meanwhile", async () => {
    const w = new Watcher();
    await createPolicy(rest, {
      namespace: NS,
      name: "all",
      spec: { podSelector: { matchLabels: { app: "converge" } }, targetRef: { name: "converge-collector" } },
    });
    while (!(await w.step())) await sleep(100);
    const { firstSession, firstProgress, lateCoveredAt, messages, writes } = w;
    const lastSession = w.allSessions!;
    expect(ownedSessions()).toHaveLength(WORKERS);
    expect(firstSession).toBeDefined();
    expect(firstProgress).toBeDefined();
    // The converge takes at least WORKERS seconds at one session a second; the first session and
    // the first progress report come within a few cycles of the start.
    expect(lastSession).toBeGreaterThan(WORKERS * 1000 * 0.8);
    expect(firstSession).toBeLessThan(lastSession / 3);
    expect(firstProgress).toBeLessThan(lastSession / 3);
    // Progress counts up: "n of 24 sessions in place", n growing.
    const counts = messages.map((m) => Number(/^(\d+) of (\d+) sessions in place$/.exec(m)?.[1]));
    expect(counts.every((n) => Number.isInteger(n))).toBe(true);
    expect(counts.length).toBeGreaterThan(2);
    expect([...counts].sort((a, b) => a - b)).toEqual(counts);
    // The late pod did not wait for the backlog.
    expect(lateCoveredAt).toBeLessThan(lastSession - 5_000);
    // Status writes while converging: at most one per 2 s cycle (and progress alone every 3 s).
    expect(writes.length).toBeLessThan(lastSession / 2_000 + 3);
    // Events: Ready went False (Programming) and then True; nothing per cycle.
    const events = await rest.get<{ items: { reason?: string; regarding?: { name?: string } }[] }>(
      `/apis/events.k8s.io/v1/namespaces/${NS}/events`,
      "events",
    );
    const mine = events.items.filter((e) => e.regarding?.name === "all");
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.length).toBeLessThanOrEqual(3);
  }, 200_000);
});
