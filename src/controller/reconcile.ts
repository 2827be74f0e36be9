/**
 * One global cycle: read the caches and the EC2 inventory, plan, apply, then report (status,
 * finalizers, Events, the VNI map). Per-ENI limits are shared between policies, so the whole
 * cluster is planned at once rather than one policy at a time.
 */
import type { Logger } from "pino";
import { ConditionType, Reason } from "../api/reasons.ts";
import {
  FINALIZER,
  GROUP,
  PolicySpecSchema,
  TargetSpecSchema,
  VERSION,
  type PolicyStatus,
  type TargetStatus,
} from "../api/resources.ts";
import { VNI_MAP_CONFIGMAP_KEY, type VniMap } from "../api/vni-map.ts";
import { AutoTightener, type AutoTightenOptions } from "./auto.ts";
import { CoverageTracker } from "./coverage.ts";
import { loadInventory } from "../aws/inventory.ts";
import type { MirrorApi } from "../aws/port.ts";
import type { Condition } from "../k8s/conditions.ts";
import type { LeanCustom } from "../k8s/lean.ts";
import {
  setFinalizer,
  writeConfigMapKey,
  writeStatus,
  type EventRecorder,
  type ObjectRef,
} from "../k8s/objects.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { CycleResult } from "../k8s/trigger.ts";
import { diffSize } from "../plan/diff.ts";
import { IncrementalPlanner } from "../plan/incremental.ts";
import type { InventoryIndex } from "../plan/inventory-index.ts";
import type { Plan, PolicyInput, TargetInput } from "../plan/types.ts";
import { applyPlanDiff, type ApplyResult } from "./apply.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { ClusterSnapshot, Cycle } from "./runtime.ts";
import { policyStatus, targetStatus, type ProgrammingOutcome } from "./status.ts";

/** Name of the ConfigMap the collector reads. */
export const VNI_MAP_CONFIGMAP = "traffic-mirror-vni-map";

/** What a cycle needs. */
export interface ReconcileDeps {
  api: MirrorApi;
  rest: KubeRest;
  cluster: string;
  /** The operator's namespace (the VNI map lives there). */
  namespace: string;
  dryRun: boolean;
  concurrency: number;
  /** Sessions this cluster may hold in the account and Region (AWS's 10,000 when not given). */
  sessionBudget?: number;
  /** See `PlanInput.collectorKernelMode`. */
  collectorKernelMode?: boolean;
  /** When `selectionMode: Auto` tightens an ENI's filter (default: quiet 60 s, 10 ENIs a cycle). */
  autoTighten?: AutoTightenOptions;
  metrics: OperatorMetrics;
  events?: EventRecorder;
  now?: () => Date;
}

const policyRef = (p: LeanCustom): ObjectRef => ({
  group: GROUP,
  version: VERSION,
  plural: "trafficmirrorpolicies",
  namespace: p.namespace,
  name: p.name,
  kind: "TrafficMirrorPolicy",
  uid: p.uid,
});
const targetRef = (t: LeanCustom): ObjectRef => ({
  group: GROUP,
  version: VERSION,
  plural: "trafficmirrortargets",
  name: t.name,
  kind: "TrafficMirrorTarget",
  uid: t.uid,
});

function toInputs(s: ClusterSnapshot, log: Logger): { policies: PolicyInput[]; targets: TargetInput[] } {
  const policies: PolicyInput[] = [];
  for (const p of s.policies) {
    const spec = PolicySpecSchema.safeParse(p.spec);
    if (spec.success)
      policies.push({
        namespace: p.namespace ?? "",
        name: p.name,
        generation: p.generation,
        deleting: p.deleting,
        spec: spec.data,
      });
    else log.warn({ policy: `${p.namespace}/${p.name}` }, "Skipped a policy whose spec does not validate");
  }
  const targets: TargetInput[] = [];
  for (const t of s.targets) {
    const spec = TargetSpecSchema.safeParse(t.spec);
    if (spec.success)
      targets.push({ name: t.name, generation: t.generation, deleting: t.deleting, spec: spec.data });
    else log.warn({ target: t.name }, "Skipped a target whose spec does not validate");
  }
  return { policies, targets };
}

function outcomeOf(
  plan: Plan,
  result: ApplyResult | undefined,
  dryRun: boolean,
  owned: ReadonlyMap<string, { trafficMirrorSessionId: string }>,
): ProgrammingOutcome {
  const failedKeys = new Set<string>();
  let other = 0;
  for (const f of result?.failures ?? []) {
    const m = f.what.match(/session (session-\S+)/);
    if (m) failedKeys.add(m[1]!);
    else other++;
  }
  const sessionIds = new Map<string, string>();
  for (const s of plan.desired.sessions) {
    const id = result?.created.sessions.get(s.key) ?? owned.get(s.key)?.trafficMirrorSessionId;
    if (id) sessionIds.set(s.key, id);
  }
  return { dryRun, failedKeys, otherFailures: other, sessionIds };
}

async function ensureFinalizers(rest: KubeRest, s: ClusterSnapshot): Promise<void> {
  for (const [objs, ref] of [
    [s.policies, policyRef],
    [s.targets, targetRef],
  ] as const) {
    for (const o of objs) {
      if (o.deleting) continue;
      await setFinalizer({
        rest,
        ref: ref(o),
        finalizers: o.finalizers,
        resourceVersion: o.resourceVersion,
        finalizer: FINALIZER,
        present: true,
      });
    }
  }
}

/** Makes the cycle function the runtime runs. */
export function makeReconcileCycle(d: ReconcileDeps): Cycle {
  const now = d.now ?? (() => new Date());
  const coverage = new CoverageTracker(d.metrics);
  const tightener = new AutoTightener(d.autoTighten ?? { quietMs: 60_000, perCycle: 10 });
  // Replans only what changed since the last cycle; a full plan when it cannot tell (ADR 0016).
  const planner = new IncrementalPlanner();
  return async (snapshot, { log }): Promise<CycleResult> => {
    const { policies, targets } = toInputs(snapshot, log);
    await ensureFinalizers(d.rest, snapshot);
    const extraTargetIds = targets.flatMap((t) =>
      t.spec.trafficMirrorTargetId ? [t.spec.trafficMirrorTargetId] : [],
    );
    const inventory = await loadInventory(d.api, { nodes: snapshot.nodes, extraTargetIds });
    const started = performance.now();
    const plan = planner.plan({
      clusterName: d.cluster,
      policies,
      targets,
      namespaces: snapshot.namespaces,
      pods: snapshot.pods,
      nodes: snapshot.nodes,
      inventory,
      sessionBudget: d.sessionBudget,
      collectorKernelMode: d.collectorKernelMode,
      tightenEnis: tightener.tighten,
    });
    d.metrics.planDuration.observe({ kind: planner.last.kind }, (performance.now() - started) / 1000);
    // One index for planning and applying: the planner's, kept current.
    const idx = planner.index!;
    d.metrics.planSize.set({ kind: "sessions" }, plan.desired.sessions.length);
    d.metrics.planSize.set({ kind: "filters" }, plan.desired.filters.length);
    d.metrics.planSize.set({ kind: "targets" }, plan.desired.targets.length);
    for (const [action, list] of Object.entries(plan.diff))
      d.metrics.planChanges.set({ action }, (list as unknown[]).length);
    const changes = diffSize(plan.diff);
    // A session copies packets from the moment it is made: collectors learn its VNI first, so no
    // copy arrives unnamed. (Made sessions' ids are added once they exist, below.)
    const vnisChange =
      plan.diff.createSessions.length > 0 ||
      plan.diff.modifySessions.some((m) => m.virtualNetworkId !== undefined);
    if (!d.dryRun && vnisChange) await publishVniMap(d, plan, new Map());
    const result =
      d.dryRun || changes === 0
        ? undefined
        : await applyPlanDiff(plan.diff, { api: d.api, idx, concurrency: d.concurrency, log });
    if (changes > 0)
      log.info({ changes, failures: result?.failures.length ?? 0, dryRun: d.dryRun }, "Applied plan");
    const outcome = outcomeOf(plan, result, d.dryRun, idx.ownedSessions);
    d.metrics.sessions.set({ state: "desired" }, plan.desired.sessions.length);
    d.metrics.sessions.set({ state: "programmed" }, outcome.sessionIds.size);
    // The map before status: a policy reads Ready only once collectors can name its sessions.
    await publishVniMap(d, plan, outcome.sessionIds);
    const at = now();
    const ready = await report({ d, snapshot, plan, outcome, idx, result, now: at.toISOString() });
    const kinds = new Map(targets.map((t) => [t.name, targetKind(t)]));
    const targetOf = new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p.spec.targetRef.name]));
    coverage.record({
      plan,
      pods: snapshot.pods,
      programmed: d.dryRun ? new Set() : outcome.sessionIds,
      targetKind: (p) => kinds.get(targetOf.get(p) ?? "") ?? "unknown",
      ready,
      nowMs: at.getTime(),
    });
    const failed = (result?.failures.length ?? 0) > 0;
    const recheck = tightener.observe(plan.auto, at.getTime());
    const requeue = Math.min(failed ? 5_000 : Infinity, recheck ?? Infinity);
    return requeue === Infinity ? {} : { requeueAfterMs: requeue };
  };
}

async function report(c: {
  d: ReconcileDeps;
  snapshot: ClusterSnapshot;
  plan: Plan;
  outcome: ProgrammingOutcome;
  idx: InventoryIndex;
  result: ApplyResult | undefined;
  now: string;
}): Promise<Set<string>> {
  const { d, snapshot, plan, outcome } = c;
  const ready = new Set<string>();
  const sessions = new Map(plan.desired.sessions.map((s) => [s.key, s]));
  const clean = (c.result?.failures.length ?? 0) === 0 && !d.dryRun;
  for (const p of snapshot.policies) {
    const key = `${p.namespace}/${p.name}`;
    const r = plan.policies.get(key);
    if (p.deleting) {
      // Everything it made is gone once a clean apply left no session naming it.
      if (clean && !plan.desired.sessions.some((s) => s.owners.includes(key))) {
        await setFinalizer({
          rest: d.rest,
          ref: policyRef(p),
          finalizers: p.finalizers,
          resourceVersion: p.resourceVersion,
          finalizer: FINALIZER,
          present: false,
        });
        continue;
      }
    }
    if (!r) continue;
    const stored = ((p.status as PolicyStatus | undefined)?.conditions ?? []) as Condition[];
    const status = policyStatus({
      // A policy whose deletion waits on AWS says so, rather than keep its last Ready.
      report: p.deleting ? { ...r, blocked: deletingBlock(d.dryRun, c.result) } : r,
      generation: p.generation,
      stored,
      sessions,
      outcome,
      now: c.now,
    });
    if (status.conditions?.some((x) => x.type === "Ready" && x.status === "True")) ready.add(key);
    if (await writeStatus({ rest: d.rest, ref: policyRef(p), current: p.status, desired: status }))
      await noteReadyChange(d, p, stored, status.conditions ?? []);
  }
  await reportTargets(c, clean);
  return ready;
}

/** A target's kind as the coverage metrics name it. */
function targetKind(t: TargetInput): string {
  const s = t.spec;
  if (s.collector) return "collector";
  if (s.networkLoadBalancerArn) return "network-load-balancer";
  if (s.gatewayLoadBalancerEndpointId) return "gateway-load-balancer-endpoint";
  if (s.networkInterfaceId) return "network-interface";
  return "existing";
}

type ReportCtx = Parameters<typeof report>[0];

function deletingBlock(
  dryRun: boolean,
  result: ApplyResult | undefined,
): { reason: string; message: string } {
  const failed = result?.failures.length ?? 0;
  return {
    reason: Reason.Deleting,
    message: dryRun
      ? "being deleted; in dry-run mode the operator removes nothing in AWS, so the finalizer stays"
      : `being deleted; ${failed} AWS changes failed, retrying before the finalizer is removed`,
  };
}

async function reportTargets(c: ReportCtx, clean: boolean): Promise<void> {
  const { d, snapshot, plan } = c;
  const deletedNow = new Set(plan.diff.deleteTargets.map((x) => x.key));
  for (const t of snapshot.targets) {
    if (t.deleting) {
      const mine = [...c.idx.ownedTargets.keys()].filter(
        (k) => k === `target-${t.name}` || k.startsWith(`target-${t.name}-eni-`),
      );
      if (clean && mine.every((k) => deletedNow.has(k))) {
        await setFinalizer({
          rest: d.rest,
          ref: targetRef(t),
          finalizers: t.finalizers,
          resourceVersion: t.resourceVersion,
          finalizer: FINALIZER,
          present: false,
        });
      }
      continue;
    }
    const r = plan.targets.get(t.name);
    if (!r) continue;
    const stored = ((t.status as TargetStatus | undefined)?.conditions ?? []) as Condition[];
    const status = targetStatus({
      report: r,
      generation: t.generation,
      stored,
      idx: c.idx,
      created: c.result?.created.targets ?? new Map(),
      now: c.now,
    });
    await writeStatus({ rest: d.rest, ref: targetRef(t), current: t.status, desired: status });
  }
}

async function noteReadyChange(
  d: ReconcileDeps,
  p: LeanCustom,
  before: Condition[],
  after: Condition[],
): Promise<void> {
  const was = before.find((c) => c.type === ConditionType.Ready);
  const now = after.find((c) => c.type === ConditionType.Ready);
  if (!now || (was && was.status === now.status && was.reason === now.reason)) return;
  await d.events?.record({
    ref: policyRef(p),
    type: now.status === "True" ? "Normal" : "Warning",
    reason: now.reason,
    note: now.message,
    action: "Reconcile",
  });
}

async function publishVniMap(
  d: ReconcileDeps,
  plan: Plan,
  madeIds: ReadonlyMap<string, string>,
): Promise<void> {
  // Entries are in the order of the desired sessions; fill in the ids of sessions made just now.
  const doc: VniMap = {
    ...plan.vniMap,
    sessions: plan.vniMap.sessions.map((e, i) => ({
      ...e,
      sessionId: e.sessionId ?? madeIds.get(plan.desired.sessions[i]!.key),
    })),
  };
  await writeConfigMapKey({
    rest: d.rest,
    namespace: d.namespace,
    name: VNI_MAP_CONFIGMAP,
    key: VNI_MAP_CONFIGMAP_KEY,
    value: JSON.stringify(doc, null, 1),
    labels: { "app.kubernetes.io/part-of": "traffic-mirror-operator" },
  });
}
