/**
 * The planner: a pure function from the cluster and the EC2 inventory to the AWS state that should
 * exist, the changes that reach it, and for every selected pod or node its session or the reason it
 * has none. No I/O, no clock, no randomness: the same input always gives the same plan.
 */
import type { NetworkInterface } from "../api/inventory.ts";
import { Reason } from "../api/reasons.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { isOwnedBy } from "../api/tags.ts";
import type { VniEntry } from "../api/vni-map.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { diffAgainstInventory } from "./diff.ts";
import { buildFilterRules, type DesiredRule } from "./filters.ts";
import { byString, hash53, hashHex } from "./hash.ts";
import { indexInventory, type InventoryIndex } from "./inventory-index.ts";
import { normalizeRanges, type Ranges } from "./ipv4.ts";
import { matches } from "./selectors.ts";
import { locateNode, locatePod, selectSources, type Located, type LocateCtx } from "./sources.ts";
import { pickSlot, resolveTargets, type ResolvedTarget } from "./targets.ts";
import type {
  DesiredFilter,
  DesiredSession,
  Plan,
  PlanInput,
  PolicyInput,
  PolicyReport,
  SourceReport,
  TargetReport,
} from "./types.ts";

/** AWS's limit of sessions per source ENI. */
export const MAX_SESSIONS_PER_ENI = 3;

/** Short stable hash of a string (at most 14 hex characters). */
function shortHash(s: string, hexChars = 12): string {
  return hashHex(s).slice(0, hexChars);
}

function policyId(p: PolicyInput): string {
  return `${p.namespace}/${p.name}`;
}

interface Member {
  policy: PolicyInput;
  located: Located;
}

/** Sources on one ENI that can share one session. */
interface Group {
  groupKey: string;
  sessionKey: string;
  eni: NetworkInterface;
  target: ResolvedTarget;
  priority: number;
  packetLength?: number;
  mirrorDns: boolean;
  userRules: PolicyFilterRule[];
  whole: boolean;
  members: Member[];
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

function addMember(
  groups: Map<string, Group>,
  m: Member,
  keys: { target: ResolvedTarget; groupKey: string; hash: string },
): void {
  const { target, groupKey } = keys;
  const whole = m.located.ip === "all";
  const id = `${m.located.eni.networkInterfaceId}|${groupKey}`;
  let g = groups.get(id);
  if (!g) {
    g = {
      groupKey,
      sessionKey: `session-${m.located.eni.networkInterfaceId}-${keys.hash}`,
      eni: m.located.eni,
      target,
      priority: m.policy.spec.priority,
      packetLength: m.policy.spec.packetLength,
      mirrorDns: m.policy.spec.filter?.mirrorDns ?? false,
      userRules: m.policy.spec.filter?.rules ?? [],
      whole,
      members: [],
    };
    groups.set(id, g);
  }
  g.priority = Math.max(g.priority, m.policy.spec.priority);
  g.members.push(m);
}

function unselectedRanges(held: Ranges, selected: ReadonlySet<number>): Ranges {
  const out: [number, number][] = [];
  for (const [s, e] of held) {
    let start = s;
    for (let a = s; a <= e; a++) {
      if (!selected.has(a)) continue;
      if (a > start) out.push([start, a - 1]);
      start = a + 1;
    }
    if (start <= e) out.push([start, e]);
  }
  return normalizeRanges(out);
}

/** Filter rules for a group, dropping its lowest-priority pods until the rules fit. */
function fitFilter(g: Group, idx: InventoryIndex, dropped: Member[]): DesiredRule[] | undefined {
  g.members.sort(
    (a, b) => byPriority(a.policy, b.policy) || byString(a.located.report.name, b.located.report.name),
  );
  while (g.members.length > 0) {
    const ips = g.members.flatMap((m) => (m.located.ip === "all" ? [] : [m.located.ip]));
    const rules = buildFilterRules({
      selected: g.whole ? "all" : ips,
      unselected: g.whole ? [] : unselectedRanges(idx.heldRanges(g.eni.networkInterfaceId), new Set(ips)),
      userRules: g.userRules,
      allowRejectForm: g.target.input.spec.allowNodeSources,
    });
    if (rules) return rules;
    dropped.push(g.members.pop()!);
  }
  return undefined;
}

function sessionNumberFor(g: Group, taken: Set<number>): number {
  // Priority decides the order AWS evaluates sessions in: higher priority, lower number.
  let n = (1000 - g.priority) * 32 + 1 + (hash53(g.groupKey) % 32);
  while (taken.has(n)) n = n >= 32766 ? 1 : n + 1;
  taken.add(n);
  return n;
}

interface Outcome {
  sessions: DesiredSession[];
  filters: Map<string, DesiredFilter>;
}

function unmirrored(reports: Map<string, PolicyReport>, m: Member, reason: string, message: string): void {
  reports.get(policyId(m.policy))!.sources.push({
    ...m.located.report,
    networkInterfaceId: m.located.eni.networkInterfaceId,
    reason,
    message,
  });
}

function programGroup(
  g: Group,
  ctx: { idx: InventoryIndex; reports: Map<string, PolicyReport>; taken: Set<number>; out: Outcome },
): void {
  const { idx, reports, out } = ctx;
  const dropped: Member[] = [];
  const rules = fitFilter(g, idx, dropped);
  for (const m of dropped) {
    unmirrored(
      reports,
      m,
      Reason.FilterTooLarge,
      `more sources on ${g.eni.networkInterfaceId} than one filter's 10 rules can select`,
    );
  }
  if (!rules) return;
  const existing = idx.ownedSessions.get(g.sessionKey);
  const current = existing ? currentTargetRef(idx, existing.trafficMirrorTargetId) : undefined;
  const slot = pickSlot(g.target.slots, g.eni.availabilityZone, current);
  if (!slot) {
    for (const m of g.members)
      unmirrored(
        reports,
        m,
        Reason.TargetFull,
        `every AWS target of ${g.target.input.name} has its maximum number of sources`,
      );
    return;
  }
  slot.used++;
  const networkServices: "amazon-dns"[] = g.mirrorDns ? ["amazon-dns"] : [];
  // A pod filter belongs to its session and is edited in place as pods come and go; a whole-node
  // filter depends only on the policy's rules, so identical ones are shared.
  const fKey = g.whole
    ? `filter-${hashHex(JSON.stringify([rules, networkServices]))}`
    : `filter-${g.sessionKey.slice("session-".length)}`;
  if (!out.filters.has(fKey))
    out.filters.set(fKey, {
      key: fKey,
      rules,
      networkServices,
      description: "traffic-mirror-operator filter",
    });
  const owners = [...new Set(g.members.map((m) => policyId(m.policy)))].sort();
  const first = g.members[0]!.located;
  out.sessions.push({
    key: g.sessionKey,
    networkInterfaceId: g.eni.networkInterfaceId,
    target: slot.ref,
    filterKey: fKey,
    sessionNumber: sessionNumberFor(g, ctx.taken),
    ...(g.packetLength ? { packetLength: g.packetLength } : {}),
    virtualNetworkId: 0,
    owners,
    nodeName: first.nodeName,
    instanceId: first.instanceId,
    pods: g.whole ? [] : g.members.map((m) => ({ name: m.located.report.name, ip: m.located.ipText! })),
    description: `traffic-mirror-operator: ${owners.join(", ")}`.slice(0, 255),
  });
  for (const m of g.members) {
    reports.get(policyId(m.policy))!.sources.push({
      ...m.located.report,
      sessionKey: g.sessionKey,
      networkInterfaceId: g.eni.networkInterfaceId,
    });
  }
}

function currentTargetRef(idx: InventoryIndex, targetId: string): { key: string } | { id: string } {
  for (const [key, t] of idx.ownedTargets) if (t.trafficMirrorTargetId === targetId) return { key };
  return { id: targetId };
}

/** Chooses which groups get an ENI's free slots, by priority. */
function arbitrate(
  groupsByEni: Map<string, Group[]>,
  ctx: { idx: InventoryIndex; reports: Map<string, PolicyReport>; out: Outcome },
): void {
  for (const eniId of [...groupsByEni.keys()].sort()) {
    const groups = groupsByEni
      .get(eniId)!
      .sort((a, b) => b.priority - a.priority || byString(a.groupKey, b.groupKey));
    const foreign = ctx.idx.foreignSessions(eniId);
    const free = Math.max(0, MAX_SESSIONS_PER_ENI - foreign.length);
    const taken = new Set(foreign.map((s) => s.sessionNumber));
    groups.forEach((g, i) => {
      if (i < free) {
        programGroup(g, { ...ctx, taken });
        return;
      }
      const msg = `${eniId} already has ${MAX_SESSIONS_PER_ENI} sessions (${foreign.length} not made by this operator); higher-priority policies hold the rest`;
      for (const m of g.members) unmirrored(ctx.reports, m, Reason.EniFull, msg);
    });
  }
}

/** Deterministic, stable VNIs: an existing session keeps its VNI; new ones hash their key. */
function assignVnis(sessions: DesiredSession[], idx: InventoryIndex): void {
  const used = new Set<number>();
  const sorted = [...sessions].sort((a, b) => byString(a.key, b.key));
  const pending: DesiredSession[] = [];
  for (const s of sorted) {
    const vni = idx.ownedSessions.get(s.key)?.virtualNetworkId;
    if (vni !== undefined && vni > 0 && !used.has(vni)) {
      s.virtualNetworkId = vni;
      used.add(vni);
    } else {
      pending.push(s);
    }
  }
  for (const s of pending) {
    let vni = (hash53(s.key) % 0xfffffe) + 1;
    while (used.has(vni)) vni = (vni % 0xfffffe) + 1;
    s.virtualNetworkId = vni;
    used.add(vni);
  }
}

/** Marks policies whose packets an earlier session on the same ENI, to another target, takes first. */
function reportShadowing(out: Outcome, reports: Map<string, PolicyReport>): void {
  const byEni = new Map<string, DesiredSession[]>();
  for (const s of out.sessions)
    byEni.set(s.networkInterfaceId, [...(byEni.get(s.networkInterfaceId) ?? []), s]);
  for (const [eni, sessions] of byEni) {
    sessions.sort((a, b) => a.sessionNumber - b.sessionNumber);
    sessions.forEach((later, i) => {
      const laterIps = new Set(later.pods.map((p) => p.ip));
      const shadowers = sessions.slice(0, i).filter((earlier) => {
        if (JSON.stringify(earlier.target) === JSON.stringify(later.target)) return false;
        return (
          earlier.pods.length === 0 || later.pods.length === 0 || earlier.pods.some((p) => laterIps.has(p.ip))
        );
      });
      if (shadowers.length === 0) return;
      const by = [...new Set(shadowers.flatMap((s) => s.owners))].sort();
      for (const owner of later.owners)
        reports.get(owner)?.shadowedBy.push({ networkInterfaceId: eni, policies: by });
    });
  }
}

function collectDemands(
  input: PlanInput,
  targets: Map<string, ResolvedTarget>,
  idx: InventoryIndex,
  targetEnis: Set<string>,
) {
  const reports = new Map<string, PolicyReport>();
  const groups = new Map<string, Group>();
  const nodesByName = new Map(input.nodes.map((n) => [n.name, n]));
  const podsByNamespace = new Map<string, LeanPod[]>();
  for (const pod of input.pods) {
    const list = podsByNamespace.get(pod.namespace);
    if (list) list.push(pod);
    else podsByNamespace.set(pod.namespace, [pod]);
  }
  const nodeCache = new Map();
  for (const p of [...input.policies].sort(byPriority)) {
    const report: PolicyReport = { policy: policyId(p), sources: [], sessionKeys: [], shadowedBy: [] };
    reports.set(report.policy, report);
    const blocked = policyBlock(p, targets, input);
    if (blocked) {
      report.blocked = blocked;
      continue;
    }
    const target = targets.get(p.spec.targetRef.name)!;
    const ctx: LocateCtx = {
      idx,
      nodesByName,
      targetEnis,
      allowNodeSources: target.input.spec.allowNodeSources,
      nodeCache,
    };
    const sel = selectSources(p, podsByNamespace.get(p.namespace) ?? [], input.nodes);
    const located = [
      ...sel.pods.map((pod) => locatePod(pod, ctx)),
      ...sel.nodes.flatMap((n) => locateNode(n, ctx)),
    ];
    const groupKey = groupKeyOf(p, sel.nodes.length > 0);
    const keys = { target, groupKey, hash: shortHash(groupKey) };
    for (const l of located) {
      if ("eni" in l) addMember(groups, { policy: p, located: l }, keys);
      else report.sources.push(l);
    }
  }
  return { reports, groups };
}

function targetReports(
  targets: Map<string, ResolvedTarget>,
  input: PlanInput,
  out: Outcome,
): Map<string, TargetReport> {
  const reports = new Map<string, TargetReport>();
  const perRef = new Map<string, number>();
  for (const x of out.sessions) {
    const k = JSON.stringify(x.target);
    perRef.set(k, (perRef.get(k) ?? 0) + 1);
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
  const targets = resolveTargets(input.targets, {
    idx,
    nodes: input.nodes,
    isOwned: (tags) => isOwnedBy(tags, input.clusterName),
  });
  const targetEnis = new Set(idx.targetEnis);
  for (const t of targets.values())
    for (const s of t.slots) if (s.networkInterfaceId) targetEnis.add(s.networkInterfaceId);
  const { reports, groups } = collectDemands(input, targets, idx, targetEnis);
  const groupsByEni = new Map<string, Group[]>();
  for (const g of groups.values())
    groupsByEni.set(g.eni.networkInterfaceId, [...(groupsByEni.get(g.eni.networkInterfaceId) ?? []), g]);
  const out: Outcome = { sessions: [], filters: new Map() };
  arbitrate(groupsByEni, { idx, reports, out });
  assignVnis(out.sessions, idx);
  reportShadowing(out, reports);
  for (const s of out.sessions) for (const owner of s.owners) reports.get(owner)?.sessionKeys.push(s.key);
  out.sessions.sort((a, b) => byString(a.key, b.key));
  const desiredTargets = [...targets.values()]
    .flatMap((t) => t.slots.flatMap((s) => (s.desired ? [s.desired] : [])))
    .sort((a, b) => byString(a.key, b.key));
  const filters = [...out.filters.values()].sort((a, b) => byString(a.key, b.key));
  const desired = { targets: desiredTargets, filters, sessions: out.sessions };
  return {
    desired,
    diff: diffAgainstInventory(desired, idx),
    policies: reports,
    targets: targetReports(targets, input, out),
    vniMap: { version: 1, sessions: out.sessions.map((s) => vniEntry(s, idx)) },
  };
}

function vniEntry(s: DesiredSession, idx: InventoryIndex): VniEntry {
  return {
    vni: s.virtualNetworkId,
    sessionId: idx.ownedSessions.get(s.key)?.trafficMirrorSessionId,
    policies: s.owners,
    networkInterfaceId: s.networkInterfaceId,
    sourceIp: idx.eni(s.networkInterfaceId)?.primaryIp ?? "",
    nodeName: s.nodeName,
    instanceId: s.instanceId,
    pods: s.pods,
  };
}

/** Every source report of a plan that has a reason, for tests and the `plan` command. */
export function unmirroredSources(plan: Plan): SourceReport[] {
  return [...plan.policies.values()].flatMap((r) => r.sources.filter((s) => s.reason));
}
