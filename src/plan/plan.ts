/**
 * The planner: a pure function from the cluster and the EC2 inventory to the AWS state that should
 * exist, the changes that reach it, and for every selected pod or node its session or the reason it
 * has none. No I/O, no clock, no randomness: the same input always gives the same plan.
 */
import type { MirrorSession } from "../api/inventory.ts";
import { Reason } from "../api/reasons.ts";
import type { VniEntry, VniMap, VniPolicy, VniSelection } from "../api/vni-map.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { arbitrate, keysOfOwnedTargets, type Arbitration } from "./arbitrate.ts";
import { diffAgainstInventory } from "./diff.ts";
import { byString, hash53, hashHex } from "./hash.ts";
import { indexInventory, type InventoryIndex } from "./inventory-index.ts";
import {
  MAX_SESSIONS_PER_ACCOUNT,
  type EniGroups,
  type Group,
  type GroupKeys,
  type Member,
  type Outcome,
  type ProgramCtx,
  type RankedPolicy,
} from "./model.ts";
import { assignVnis, keyOrder, mergeFilters, type PieceKeys } from "./order.ts";
import { matches } from "./selectors.ts";
import { locateNode, locatePod, selectSources, type LocateCtx } from "./sources.ts";
import { resolveTargets, type ResolvedTarget } from "./targets.ts";
import type {
  DesiredSession,
  Plan,
  PlanInput,
  PolicyInput,
  PolicyReport,
  SourceReport,
  TargetReport,
} from "./types.ts";

export { MAX_SESSIONS_PER_ACCOUNT, MAX_SESSIONS_PER_ENI } from "./model.ts";

/** Short stable hash of a string (at most 14 hex characters). */
function shortHash(s: string, hexChars = 12): string {
  return hashHex(s).slice(0, hexChars);
}

function policyId(p: PolicyInput): string {
  return `${p.namespace}/${p.name}`;
}

function byPriority(a: PolicyInput, b: PolicyInput): number {
  return b.spec.priority - a.spec.priority || byString(policyId(a), policyId(b));
}

function namespaceAllowed(t: ResolvedTarget, ns: string, input: PlanInput): boolean {
  const a = t.input.spec.allowedNamespaces;
  if (!a) return false;
  if (a.from === "All") return true;
  if (a.from === "List") return (a.names ?? []).includes(ns);
  const labels = input.namespaces.find((n) => n.name === ns)?.labels ?? { "kubernetes.io/metadata.name": ns };
  return matches(a.selector, labels);
}

/** A problem with the whole policy, or undefined. */
function policyBlock(
  p: PolicyInput,
  targets: Map<string, ResolvedTarget>,
  input: PlanInput,
): { reason: string; message: string } | undefined {
  if (p.deleting) return { reason: Reason.Suspended, message: "the policy is being deleted" };
  if (p.ended)
    return { reason: Reason.Expired, message: `mirroring ended at ${p.ended.at} (spec.${p.ended.by})` };
  if (p.spec.suspend) return { reason: Reason.Suspended, message: "spec.suspend is true" };
  const t = targets.get(p.spec.targetRef.name);
  if (!t)
    return {
      reason: Reason.TargetNotFound,
      message: `TrafficMirrorTarget ${p.spec.targetRef.name} does not exist`,
    };
  if (!namespaceAllowed(t, p.namespace, input)) {
    return {
      reason: Reason.NamespaceNotAllowed,
      message: `TrafficMirrorTarget ${t.input.name} does not allow namespace ${p.namespace}`,
    };
  }
  if (p.spec.nodeSelector && !t.input.spec.allowNodeSources) {
    return {
      reason: Reason.NodeSourcesNotAllowed,
      message: `TrafficMirrorTarget ${t.input.name} does not allow node sources`,
    };
  }
  if (t.problem) return { reason: Reason.TargetNotReady, message: t.problem.message };
  return undefined;
}

function groupKeyOf(p: PolicyInput, whole: boolean): string {
  return JSON.stringify([
    p.spec.targetRef.name,
    p.spec.packetLength ?? 0,
    p.spec.filter?.mirrorDns ?? false,
    p.spec.filter?.rules ?? [],
    whole ? "node" : "pods",
  ]);
}

/** Adds a located source to its group on its ENI, making the group on first use. */
export function addMember(groupsByEni: Map<string, EniGroups>, m: Member, keys: GroupKeys): void {
  const { target, groupKey } = keys;
  const eniId = m.eni.networkInterfaceId;
  const spec = m.owner.policy.spec;
  let onEni = groupsByEni.get(eniId);
  if (!onEni) {
    onEni = { gids: [], groups: [] };
    groupsByEni.set(eniId, onEni);
  }
  const at = onEni.gids.indexOf(keys.gid);
  let g = at < 0 ? undefined : onEni.groups[at]!;
  if (!g) {
    g = {
      groupKey,
      sessionKey: `session-${eniId}-${keys.hash}`,
      hash: keys.hash,
      eni: m.eni,
      target,
      priority: spec.priority,
      packetLength: spec.packetLength,
      mirrorDns: spec.filter?.mirrorDns ?? false,
      userRules: spec.filter?.rules ?? [],
      whole: m.ip === "all",
      eniWide: m.ip === "all" || target.input.spec.collector?.selectionMode === "Eni",
      auto: m.ip !== "all" && target.input.spec.collector?.selectionMode === "Auto",
      keyHash: keys.keyHash,
      gid: keys.gid,
      members: [],
    };
    onEni.gids.push(keys.gid);
    onEni.groups.push(g);
  }
  g.priority = Math.max(g.priority, spec.priority);
  g.members.push(m);
}

/** Policies in priority order, each with its rank and, once all are registered, its report. */
function rankPolicies(policies: readonly PolicyInput[]): RankedPolicy[] {
  const sorted = [...policies].sort(byPriority);
  const ranked: RankedPolicy[] = [];
  sorted.forEach((policy, i) => {
    const prev = ranked[i - 1];
    const rank = prev && byPriority(prev.policy, policy) === 0 ? prev.rank : i;
    const id = policyId(policy);
    ranked.push({ policy, id, rank, report: { policy: id, sources: [], sessionKeys: [], shadowedBy: [] } });
  });
  return ranked;
}

function podsByNamespace(pods: readonly LeanPod[]): Map<string, LeanPod[]> {
  const m = new Map<string, LeanPod[]>();
  for (const pod of pods) {
    const list = m.get(pod.namespace);
    if (list) list.push(pod);
    else m.set(pod.namespace, [pod]);
  }
  return m;
}

/**
 * What the incremental planner learns from a full plan's collecting phase: each policy's locating
 * context, and every source placed, in the order placed.
 */
export interface DemandRecorder {
  /** A policy that is not blocked, with what placing its sources needs. */
  policy(rp: RankedPolicy, keys: GroupKeys, ctx: LocateCtx<RankedPolicy>): void;
  /** A located source (`pod` undefined for a node). */
  member(m: Member, pod: LeanPod | undefined): void;
  /** A source that could not be located. */
  failure(rp: RankedPolicy, report: SourceReport, pod: LeanPod | undefined): void;
}

function collectDemands(
  input: PlanInput,
  targets: Map<string, ResolvedTarget>,
  idx: InventoryIndex,
  at: { targetEnis: Set<string>; recorder?: DemandRecorder },
) {
  const { targetEnis, recorder } = at;
  const reports = new Map<string, PolicyReport>();
  const groupsByEni = new Map<string, EniGroups>();
  const nodesByName = new Map(input.nodes.map((n) => [n.name, n]));
  const byNamespace = podsByNamespace(input.pods);
  const nodeCache = new Map();
  const podNodeCache = new Map();
  const groupIds = new Map<string, number>();
  const ranked = rankPolicies(input.policies);
  for (const rp of ranked) {
    const p = rp.policy;
    const report = rp.report;
    reports.set(rp.id, report);
    const blocked = policyBlock(p, targets, input);
    if (blocked) {
      report.blocked = blocked;
      continue;
    }
    const target = targets.get(p.spec.targetRef.name)!;
    const ctx: LocateCtx<RankedPolicy> = {
      owner: rp,
      idx,
      nodesByName,
      targetEnis,
      allowNodeSources: target.input.spec.allowNodeSources,
      nodeCache,
      podNodeCache,
    };
    const sel = selectSources(p, byNamespace.get(p.namespace) ?? [], input.nodes);
    const groupKey = groupKeyOf(p, sel.nodes.length > 0);
    let gid = groupIds.get(groupKey);
    if (gid === undefined) groupIds.set(groupKey, (gid = groupIds.size));
    const keys: GroupKeys = { target, groupKey, hash: shortHash(groupKey), keyHash: hash53(groupKey), gid };
    const place = (l: Member | SourceReport, pod?: LeanPod): void => {
      if ("eni" in l) {
        addMember(groupsByEni, l, keys);
        recorder?.member(l, pod);
      } else {
        report.sources.push(l);
        recorder?.failure(rp, l, pod);
      }
    };
    recorder?.policy(rp, keys, ctx);
    for (const pod of sel.pods) place(locatePod(pod, ctx), pod);
    for (const n of sel.nodes) for (const l of locateNode(n, ctx)) place(l);
  }
  // Sources go to the report a lookup by id finds, which for a repeated id is the last one.
  for (const rp of ranked) rp.report = reports.get(rp.id)!;
  return { reports, groupsByEni, ranked };
}

/** Sessions per target ref object (sessions hold their slot's ref object). */
function sessionsPerRef(sessions: readonly DesiredSession[]): Map<object, number> {
  const perObject = new Map<object, number>();
  for (const x of sessions) perObject.set(x.target, (perObject.get(x.target) ?? 0) + 1);
  return perObject;
}

/** What the plan says of each target, given how many sessions use each AWS target's ref object. */
export function targetReports(
  targets: Map<string, ResolvedTarget>,
  input: PlanInput,
  perObject: ReadonlyMap<object, number>,
): Map<string, TargetReport> {
  const reports = new Map<string, TargetReport>();
  // Count per ref object, then per ref as JSON (rare repeats).
  const perRef = new Map<string, number>();
  for (const [ref, n] of perObject) {
    const k = JSON.stringify(ref);
    perRef.set(k, (perRef.get(k) ?? 0) + n);
  }
  for (const t of input.targets) {
    const r = targets.get(t.name);
    const policies = input.policies
      .filter((p) => p.spec.targetRef.name === t.name)
      .map(policyId)
      .sort();
    reports.set(t.name, {
      name: t.name,
      problem: r?.problem,
      policies,
      awsTargets: (r?.slots ?? []).map((s) => ({
        ...("key" in s.ref ? { key: s.ref.key } : { id: s.ref.id }),
        networkInterfaceId: s.networkInterfaceId,
        sessions: perRef.get(JSON.stringify(s.ref)) ?? 0,
        capacity: s.capacity,
      })),
    });
  }
  return reports;
}

/** Plans the whole cluster's mirroring. */
export function planMirroring(
  input: PlanInput,
  idx: InventoryIndex = indexInventory(input.inventory, input.clusterName),
): Plan {
  return planWithState(input, idx).plan;
}

/** A full plan and the working state behind it, which the incremental planner keeps. */
export interface PlanState {
  plan: Plan;
  targets: Map<string, ResolvedTarget>;
  ranked: RankedPolicy[];
  out: Outcome;
  arbitration: Arbitration;
  quota: ProgramCtx["quota"];
  keyOfTarget: () => Map<string, string>;
}

/** `planMirroring`, also returning its working state; `recorder` hears every placed source. */
export function planWithState(input: PlanInput, idx: InventoryIndex, recorder?: DemandRecorder): PlanState {
  const targets = resolveTargets(input.targets, {
    idx,
    nodes: input.nodes,
    collectorKernelMode: input.collectorKernelMode,
  });
  const targetEnis = new Set(idx.targetEnis);
  for (const t of targets.values())
    for (const s of t.slots) if (s.networkInterfaceId) targetEnis.add(s.networkInterfaceId);
  const { reports, groupsByEni, ranked } = collectDemands(input, targets, idx, { targetEnis, recorder });
  const out = emptyOutcome();
  const quota = quotaOf(input, idx);
  const tighten = input.tightenEnis ?? new Set<string>();
  const keyOfTarget = keysOfOwnedTargets(idx);
  const arbitration = arbitrate(groupsByEni, { idx, tighten, quota, reports, keyOfTarget, out }, targets);
  const order = assignVnis(out);
  const sessions = order.map((i) => out.sessions[i]!);
  const desiredTargets = [...targets.values()]
    .flatMap((t) => t.slots.flatMap((s) => (s.desired ? [s.desired] : [])))
    .sort((a, b) => byString(a.key, b.key));
  // Keys are distinct (pod filter keys hold an ENI id, whole-node ones only hex), so merging the
  // two sorted lists is sorting them together.
  const podFilterKeys: PieceKeys = {
    eni: out.podFilterGroups.map((g) => g.eni.networkInterfaceId),
    hash: out.podFilterGroups.map((g) => g.hash),
    key: (i) => out.podFilters[i]!.key,
  };
  const { filters, existing: filterExisting } = mergeFilters(
    keyOrder(podFilterKeys, out.podFilterRuns).map((i) => ({
      filter: out.podFilters[i]!,
      existing: out.podFilterExisting[i],
    })),
    [...out.wholeFilters.values()].sort((a, b) => byString(a.filter.key, b.filter.key)),
  );
  const desired = { targets: desiredTargets, filters, sessions };
  const plan: Plan = {
    desired,
    diff: diffAgainstInventory(desired, idx, {
      sessions: order.map((i) => out.existing[i]),
      filterOfSession: order.map((i) => out.existingFilterOfSession[i]),
      filters: filterExisting,
    }),
    policies: reports,
    targets: targetReports(targets, input, sessionsPerRef(out.sessions)),
    vniMap: vniMapOf(order, out, idx),
    ...(out.auto.size > 0 ? { auto: out.auto } : {}),
  };
  return { plan, targets, ranked, out, arbitration, quota, keyOfTarget };
}

/** An outcome with nothing in it yet. */
export function emptyOutcome(): Outcome {
  return {
    sessions: [],
    existing: [],
    existingFilterOfSession: [],
    podFilterExisting: [],
    groups: [],
    podFilters: [],
    podFilterGroups: [],
    sessionRuns: [],
    podFilterRuns: [],
    wholeFilters: new Map(),
    sharedUses: [],
    auto: new Map(),
  };
}

function quotaOf(input: PlanInput, idx: InventoryIndex): ProgramCtx["quota"] {
  const limit = input.sessionBudget ?? MAX_SESSIONS_PER_ACCOUNT;
  const others = idx.foreignSessionCount;
  return {
    limit,
    others,
    message: `AWS allows ${limit} mirror sessions per account and Region (${others} of them not this operator's); higher-priority sessions hold the rest`,
  };
}

/**
 * What collectors need: each session's VNI, ENI and pods, and per policy it serves what that
 * policy selected there, with every such policy's target and rules, so a packet is attributed to
 * exactly the policies that selected it.
 */
function vniMapOf(order: readonly number[], out: Outcome, idx: InventoryIndex): VniMap {
  return {
    version: 1,
    ...vniParts(
      order.map((i) => out.sessions[i]!),
      order.map((i) => out.existing[i]),
      order.map((i) => out.groups[i]!),
      idx,
    ),
  };
}

/** The VNI map's sessions and policies, for sessions in key order. */
export function vniParts(
  sessions: readonly DesiredSession[],
  existing: readonly (MirrorSession | undefined)[],
  groups: readonly Group[],
  idx: InventoryIndex,
): Omit<VniMap, "version"> {
  const policies: Record<string, VniPolicy> = {};
  const entries = sessions.map((s, i) => {
    const g = groups[i]!;
    for (const m of g.members) {
      if (policies[m.owner.id]) continue;
      policies[m.owner.id] = vniPolicy(m.owner.policy);
    }
    return vniEntry(s, existing[i], g, idx);
  });
  return { sessions: entries, policies };
}

/** What the VNI map says of a policy. */
export function vniPolicy(p: PolicyInput): VniPolicy {
  const spec = p.spec;
  return {
    target: spec.targetRef.name,
    rules: spec.filter?.rules ?? [],
    mirrorDns: spec.filter?.mirrorDns ?? false,
  };
}

/** One session's entry in the VNI map. */
export function vniEntry(
  s: DesiredSession,
  existing: MirrorSession | undefined,
  g: Group,
  idx: InventoryIndex,
): VniEntry {
  const eni = idx.eni(s.networkInterfaceId);
  const selections: VniSelection[] = [];
  for (const m of g.members) {
    let sel = selections.find((x) => x.policy === m.owner.id);
    if (!sel) selections.push((sel = { policy: m.owner.id, ips: [] }));
    if (m.ip === "all") sel.whole = true;
    else {
      sel.ips.push(m.ipText!);
      if (m.ip6Text !== undefined && m.ip6Text !== m.ipText) sel.ips.push(m.ip6Text);
    }
  }
  const entry: VniEntry = {
    vni: s.virtualNetworkId,
    sessionId: existing?.trafficMirrorSessionId,
    policies: s.owners,
    networkInterfaceId: s.networkInterfaceId,
    sourceIp: eni?.primaryIp ?? "",
    nodeName: s.nodeName,
    instanceId: s.instanceId,
    pods: s.pods,
    selections,
  };
  if (g.whole && eni)
    entry.localAddresses = [
      ...eni.privateIps,
      ...eni.ipv4Prefixes,
      ...(eni.ipv6Addresses ?? []),
      ...(eni.ipv6Prefixes ?? []),
    ];
  if (g.eniWide && !g.whole) entry.selectionAtCollector = true;
  return entry;
}

/** Every source report of a plan that has a reason, for tests and the `plan` command. */
export function unmirroredSources(plan: Plan): SourceReport[] {
  return [...plan.policies.values()].flatMap((r) => r.sources.filter((s) => s.reason));
}
