/**
 * One global cycle: read the caches and the kept EC2 inventory, plan, apply, then report (status,
 * finalizers, Events, the VNI map). Per-ENI limits are shared between policies, so the whole
 * cluster is planned at once rather than one policy at a time. A cycle's length is bounded: work
 * left when its budget is spent is reported as progress and planned again at once (ADR 15).
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
import { policyEnd } from "../api/expiry.ts";
import {
  encodeVniMapJson,
  VNI_MAP_CONFIGMAP_KEY,
  VNI_MAP_LEGACY_CONFIGMAP_KEY,
  type VniMap,
} from "../api/vni-map.ts";
import { AutoTightener, type AutoTightenOptions } from "./auto.ts";
import { CoverageTracker } from "./coverage.ts";
import { KeptInventory } from "../aws/kept-inventory.ts";
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
import { DepartureHold, type HeldDiff } from "./departures.ts";
import { UnitOrder } from "./unit-order.ts";
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
  /** A full read of the EC2 inventory at least this often (TMO_RESYNC_SECONDS; default 300 s). */
  resyncMs?: number;
  /**
   * No new AWS change starts after a cycle has run this long (TMO_CYCLE_BUDGET_SECONDS; default
   * 5 s): the VNI map and status say what is done, and the next cycle plans the rest at once.
   */
  cycleBudgetMs?: number;
  /** While sessions are being programmed, a policy's progress is written at most this often (3 s). */
  progressIntervalMs?: number;
  /**
   * A filter edit that only stops mirroring departed pods' addresses waits until no pod has left
   * its ENI for this long, at most three times it (TMO_DEPARTURE_GRACE_SECONDS; default 10 s; 0
   * applies at once; ADR 23).
   */
  departureGraceMs?: number;
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

/**
 * A policy as the planner sees it, with its end (a time-boxed policy) and whether that has passed
 * at `nowMs`; undefined when its spec does not validate.
 */
export function policyInputOf(
  p: LeanCustom,
  nowMs: number,
): { input: PolicyInput; endMs: number | undefined } | undefined {
  const spec = PolicySpecSchema.safeParse(p.spec);
  if (!spec.success) return undefined;
  const end = policyEnd(spec.data, p.createdAt);
  const input: PolicyInput = {
    namespace: p.namespace ?? "",
    name: p.name,
    generation: p.generation,
    deleting: p.deleting,
    spec: spec.data,
    ...(end && end.atMs <= nowMs ? { ended: { at: new Date(end.atMs).toISOString(), by: end.by } } : {}),
  };
  return { input, endMs: end?.atMs };
}

/** The planner's inputs, and each time-boxed policy's end by `namespace/name`. */
function toInputs(
  s: ClusterSnapshot,
  log: Logger,
  nowMs: number,
): { policies: PolicyInput[]; targets: TargetInput[]; ends: Map<string, number> } {
  const policies: PolicyInput[] = [];
  const ends = new Map<string, number>();
  for (const p of s.policies) {
    const r = policyInputOf(p, nowMs);
    if (!r) {
      log.warn({ policy: `${p.namespace}/${p.name}` }, "Skipped a policy whose spec does not validate");
      continue;
    }
    policies.push(r.input);
    if (r.endMs !== undefined) ends.set(`${r.input.namespace}/${r.input.name}`, r.endMs);
  }
  const targets: TargetInput[] = [];
  for (const t of s.targets) {
    const spec = TargetSpecSchema.safeParse(t.spec);
    if (spec.success)
      targets.push({ name: t.name, generation: t.generation, deleting: t.deleting, spec: spec.data });
    else log.warn({ target: t.name }, "Skipped a target whose spec does not validate");
  }
  return { policies, targets, ends };
}

/** Milliseconds until the next end of a policy still running, or undefined when none is due. */
function untilNextEnd(ends: ReadonlyMap<string, number>, nowMs: number): number | undefined {
  let next: number | undefined;
  for (const at of ends.values()) if (at > nowMs && (next === undefined || at < next)) next = at;
  return next === undefined ? undefined : next - nowMs;
}

/** The desired sessions whose changes wait in `pending` units (not started for lack of time). */
function pendingSessionKeys(plan: Plan, result: ApplyResult | undefined): Set<string> {
  const keys = new Set<string>();
  if (!result || result.complete) return keys;
  const filters = new Set<string>();
  for (const u of result.pendingUnits) {
    for (const f of u.createFilters) filters.add(f.key);
    for (const e of u.editFilters) filters.add(e.key);
    for (const m of u.modifySessions) keys.add(m.key);
    for (const c of u.createSessions) keys.add(c.key);
  }
  for (const s of plan.desired.sessions) if (filters.has(s.filterKey)) keys.add(s.key);
  return keys;
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
  return {
    dryRun,
    failedKeys,
    otherFailures: other,
    sessionIds,
    pendingKeys: pendingSessionKeys(plan, result),
  };
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
  // The EC2 inventory, kept between cycles and updated by the writes made through `kept.api`.
  const kept = new KeptInventory({
    api: d.api,
    cluster: d.cluster,
    resyncMs: d.resyncMs ?? 300_000,
    observe: (reason) => d.metrics.inventoryDescribes.inc({ reason }),
  });
  const budgetMs = d.cycleBudgetMs ?? 5_000;
  const progress = new ProgressWrites(d.progressIntervalMs ?? 3_000);
  const departures = new DepartureHold(d.departureGraceMs ?? 10_000);
  // Units left at the end of the last cycle and when they arrived: newer work first among equals.
  const unitOrder = new UnitOrder();
  // The last map encoded: an unchanged map (most cycles) is not compressed again.
  const lastMap: EncodedMap = { json: "", encoded: "" };
  return async (snapshot, { log, reasons }): Promise<CycleResult> => {
    const started = Date.now();
    const { policies, targets, ends } = toInputs(snapshot, log, now().getTime());
    await ensureFinalizers(d.rest, snapshot);
    const extraTargetIds = targets.flatMap((t) =>
      t.spec.trafficMirrorTargetId ? [t.spec.trafficMirrorTargetId] : [],
    );
    // What the map's ConfigMap holds is read again at a resync (publishVniMap).
    if (reasons.has("resync")) lastMap.stored = undefined;
    const inventory = await kept.read({
      nodes: snapshot.nodes,
      pods: snapshot.pods,
      extraTargetIds,
      resync: reasons.has("resync"),
    });
    const planStarted = performance.now();
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
    d.metrics.planDuration.observe({ kind: planner.last.kind }, (performance.now() - planStarted) / 1000);
    // One index for planning and applying: the planner's, kept current.
    const idx = planner.index!;
    recordPlan(d.metrics, plan);
    // Edits that only let departed pods go wait a little for an arrival to share their calls.
    const hold = departures.split(plan, idx, snapshot.pods, Date.now());
    d.metrics.heldFilterEdits.set(hold.held.length);
    logFilterEdits(log, hold);
    const changes = diffSize(hold.diff);
    // A session copies packets from the moment it is made: collectors learn its VNI first, so no
    // copy arrives unnamed. (Made sessions' ids are added once they exist, below.)
    const vnisChange =
      plan.diff.createSessions.length > 0 ||
      plan.diff.modifySessions.some((m) => m.virtualNetworkId !== undefined);
    if (vnisChange) await publishVniMap(d, plan, new Map(), lastMap);
    const result =
      d.dryRun || changes === 0
        ? undefined
        : await applyPlanDiff(hold.diff, {
            api: kept.api,
            idx,
            concurrency: d.concurrency,
            log,
            deadline: started + budgetMs,
            order: unitOrder.order(plan, policies),
          });
    unitOrder.left(result?.pendingUnits ?? []);
    const pending = result !== undefined && !result.complete;
    if (changes > 0) logApplied(log, changes, result, d.dryRun);
    const outcome = outcomeOf(plan, result, d.dryRun, idx.ownedSessions);
    d.metrics.sessions.set({ state: "desired" }, plan.desired.sessions.length);
    d.metrics.sessions.set({ state: "programmed" }, outcome.sessionIds.size);
    // The map before status: a policy reads Ready only once collectors can name its sessions.
    await publishVniMap(d, plan, outcome.sessionIds, lastMap);
    const at = now();
    const ready = await report({
      d,
      snapshot,
      plan,
      outcome,
      idx,
      result,
      now: at.toISOString(),
      progress,
      ends,
    });
    const kinds = new Map(targets.map((t) => [t.name, targetKind(t)]));
    const targetOf = new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p.spec.targetRef.name]));
    coverage.record({
      plan,
      pods: snapshot.pods,
      programmed: d.dryRun ? new Set() : programmedNow(outcome),
      targetKind: (p) => kinds.get(targetOf.get(p) ?? "") ?? "unknown",
      ready,
      nowMs: at.getTime(),
    });
    const failed = (result?.failures.length ?? 0) > 0;
    const recheck = tightener.observe(plan.auto, at.getTime());
    // Work left for lack of time goes on at once (after the events that came meanwhile are planned).
    // A time-boxed policy ends on time without a poll: the next cycle is due at the earliest end.
    const nextEnd = untilNextEnd(ends, at.getTime());
    const requeue = Math.min(
      pending ? 0 : Infinity,
      failed ? 5_000 : Infinity,
      recheck ?? Infinity,
      hold.dueInMs ?? Infinity,
      nextEnd ?? Infinity,
    );
    return requeue === Infinity ? {} : { requeueAfterMs: requeue };
  };
}

function recordPlan(m: OperatorMetrics, plan: Plan): void {
  m.planSize.set({ kind: "sessions" }, plan.desired.sessions.length);
  m.planSize.set({ kind: "filters" }, plan.desired.filters.length);
  m.planSize.set({ kind: "targets" }, plan.desired.targets.length);
  for (const [action, list] of Object.entries(plan.diff))
    m.planChanges.set({ action }, (list as unknown[]).length);
}

/**
 * At debug level, which filter edits this cycle plans (with their rule calls) and which wait. An
 * edit the cycle's time runs out before is planned again by the next cycle, so one edit can be
 * listed in several cycles: count calls from `tmo_ec2_calls_total`, not from these lines.
 */
function logFilterEdits(log: Logger, hold: HeldDiff): void {
  if (!log.isLevelEnabled("debug") || (hold.diff.editFilters.length === 0 && hold.held.length === 0)) return;
  log.debug(
    { edits: hold.diff.editFilters.map((e) => `${e.key} ${e.rules.length}`), held: hold.held },
    "Filter edits planned",
  );
}

function logApplied(log: Logger, changes: number, result: ApplyResult | undefined, dryRun: boolean): void {
  const pending = result !== undefined && !result.complete;
  log.info(
    {
      changes,
      failures: result?.failures.length ?? 0,
      pendingUnits: result?.pendingUnits.length ?? 0,
      pendingDeletes: result?.pendingDeletes ?? 0,
      dryRun,
    },
    pending ? "Applied part of the plan; the rest next cycle" : "Applied plan",
  );
}

/** Sessions in place as planned: made or kept, and not waiting on a change of a later cycle. */
function programmedNow(o: ProgrammingOutcome): ReadonlyMap<string, string> {
  if (!o.pendingKeys || o.pendingKeys.size === 0) return o.sessionIds;
  return new Map([...o.sessionIds].filter(([k]) => !o.pendingKeys!.has(k)));
}

async function report(c: {
  d: ReconcileDeps;
  snapshot: ClusterSnapshot;
  plan: Plan;
  outcome: ProgrammingOutcome;
  idx: InventoryIndex;
  result: ApplyResult | undefined;
  now: string;
  progress: ProgressWrites;
  /** Each time-boxed policy's end (ms since the epoch), by `namespace/name`. */
  ends: ReadonlyMap<string, number>;
}): Promise<Set<string>> {
  const { d, snapshot, plan, outcome } = c;
  const ready = new Set<string>();
  const sessions = new Map(plan.desired.sessions.map((s) => [s.key, s]));
  // Clean: every change ran and none failed (a deletion's finalizer goes only then).
  const clean = (c.result?.failures.length ?? 0) === 0 && (c.result?.complete ?? true) && !d.dryRun;
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
      endMs: c.ends.get(key),
    });
    if (status.conditions?.some((x) => x.type === "Ready" && x.status === "True")) ready.add(key);
    await writePolicyStatus(c, p, stored, status);
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

async function writePolicyStatus(
  c: ReportCtx,
  p: LeanCustom,
  stored: Condition[],
  status: PolicyStatus,
): Promise<void> {
  // Progress alone ("120 of 600 sessions") is written at most every few seconds per policy.
  if (c.progress.skip(p.uid, stored, status.conditions ?? [])) return;
  if (await writeStatus({ rest: c.d.rest, ref: policyRef(p), current: p.status, desired: status })) {
    c.progress.wrote(p.uid);
    await noteReadyChange(c.d, p, stored, status.conditions ?? []);
  }
}

function deletingBlock(
  dryRun: boolean,
  result: ApplyResult | undefined,
): { reason: string; message: string } {
  const failed = result?.failures.length ?? 0;
  return {
    reason: Reason.Deleting,
    message: dryRun
      ? "being deleted; in dry-run mode the operator removes nothing in AWS, so the finalizer stays"
      : failed > 0 || result?.complete !== false
        ? `being deleted; ${failed} AWS changes failed, retrying before the finalizer is removed`
        : "being deleted; its AWS resources are being removed",
  };
}

/**
 * Coalesces status writes while sessions are being programmed: a write whose only news is progress
 * (`SessionsProgrammed=False`, reason `Programming`, before and after) waits until `intervalMs` has
 * passed since the object's last write. Any other change is written at once.
 */
export class ProgressWrites {
  readonly #intervalMs: number;
  readonly #last = new Map<string, number>();

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  skip(uid: string, before: readonly Condition[], after: readonly Condition[]): boolean {
    const programming = (cs: readonly Condition[]): boolean =>
      cs.some((x) => x.type === ConditionType.SessionsProgrammed && x.reason === Reason.Programming);
    if (!programming(before) || !programming(after)) return false;
    const others = (cs: readonly Condition[]): string =>
      JSON.stringify(
        cs
          .filter((x) => x.type !== ConditionType.SessionsProgrammed && x.type !== ConditionType.Ready)
          .map((x) => [x.type, x.status, x.reason, x.message]),
      );
    if (others(before) !== others(after)) return false;
    return Date.now() - (this.#last.get(uid) ?? 0) < this.#intervalMs;
  }

  wrote(uid: string): void {
    this.#last.set(uid, Date.now());
  }
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
    // Work under way (sessions being made, pods starting) is no warning.
    type:
      now.status === "True" || now.reason === Reason.Programming || now.reason === Reason.Pending
        ? "Normal"
        : "Warning",
    reason: now.reason,
    note: now.message,
    action: "Reconcile",
  });
}

/** A map's compact JSON and its encoding for the ConfigMap. */
interface EncodedMap {
  json: string;
  encoded: string;
  /** The encoding the ConfigMap held when this operator last wrote or read it. */
  stored?: string;
}

/**
 * Writes the map when it differs from what the ConfigMap held at this operator's last write: the
 * ConfigMap (a megabyte at 30,000 pods) is not read when nothing changed. A resync forgets what it
 * held, so a hand edit or a deletion is undone within one.
 */
async function publishVniMap(
  d: ReconcileDeps,
  plan: Plan,
  madeIds: ReadonlyMap<string, string>,
  last: EncodedMap,
): Promise<void> {
  // In dry-run mode no session is made, so there is nothing for collectors to name; the map
  // (another operator's, when a dry-run one runs beside it) is left as it is.
  if (d.dryRun) return;
  // Entries are in the order of the desired sessions; fill in the ids of sessions made just now.
  const doc: VniMap = {
    ...plan.vniMap,
    sessions: plan.vniMap.sessions.map((e, i) => ({
      ...e,
      sessionId: e.sessionId ?? madeIds.get(plan.desired.sessions[i]!.key),
    })),
  };
  const json = JSON.stringify(doc);
  if (json !== last.json) Object.assign(last, { json, encoded: encodeVniMapJson(json) });
  if (last.stored === last.encoded) return;
  const encoded = last.encoded;
  await writeConfigMapKey({
    rest: d.rest,
    namespace: d.namespace,
    name: VNI_MAP_CONFIGMAP,
    // Compact and gzip-compressed: a large cluster's map is megabytes of JSON (ADR 0024). The
    // same map encodes to the same bytes, so an unchanged map is not written again.
    key: VNI_MAP_CONFIGMAP_KEY,
    value: encoded,
    binary: true,
    replaces: [VNI_MAP_LEGACY_CONFIGMAP_KEY],
    labels: { "app.kubernetes.io/part-of": "traffic-mirror-operator" },
  });
  last.stored = encoded;
}
