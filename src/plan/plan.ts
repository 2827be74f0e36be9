/**
 * The planner: a pure function from the cluster and the EC2 inventory to the AWS state that should
 * exist, the changes that reach it, and for every selected pod or node its session or the reason it
 * has none. No I/O, no clock, no randomness: the same input always gives the same plan.
 */
import type { MirrorFilter, MirrorSession, NetworkInterface } from "../api/inventory.ts";
import { Reason } from "../api/reasons.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { isOwnedBy } from "../api/tags.ts";
import type { VniEntry } from "../api/vni-map.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { diffAgainstInventory } from "./diff.ts";
import { buildFilterRules, type DesiredRule } from "./filters.ts";
import { byString, Hash53, hash53, hashHex } from "./hash.ts";
import { findOwned, indexInventory, type InventoryIndex, type OwnedOnEni } from "./inventory-index.ts";
import { isSortedDistinct, type Ranges } from "./ipv4.ts";
import { matches } from "./selectors.ts";
import { locateNode, locatePod, selectSources, type Located, type LocateCtx } from "./sources.ts";
import { sortSmall } from "./sort.ts";
import { pickSlot, resolveTargets, type AwsTargetSlot, type ResolvedTarget } from "./targets.ts";
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

/** A policy with what the hot loops would otherwise recompute per pod. */
interface RankedPolicy {
  policy: PolicyInput;
  id: string;
  /** Position in priority order; equal for policies `byPriority` cannot tell apart. */
  rank: number;
  /** The report its sources go to (the last one registered under its id, as a map lookup gave). */
  report: PolicyReport;
}

interface Member {
  policy: RankedPolicy;
  located: Located;
}

/** Sources on one ENI that can share one session. */
interface Group {
  groupKey: string;
  sessionKey: string;
  /** `shortHash(groupKey)`, the tail of the session and pod filter keys. */
  hash: string;
  eni: NetworkInterface;
  target: ResolvedTarget;
  priority: number;
  packetLength?: number;
  mirrorDns: boolean;
  userRules: PolicyFilterRule[];
  whole: boolean;
  /** `hash53(groupKey)`, computed once per policy rather than once per group. */
  keyHash: number;
  /** A number per distinct group key in this plan: comparing long keys per pod was a hot spot. */
  gid: number;
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

/** Per-policy constants of its groups. */
interface GroupKeys {
  target: ResolvedTarget;
  groupKey: string;
  hash: string;
  keyHash: number;
  gid: number;
}

/** An ENI's groups, and their `gid`s in a list beside them (read per pod, without the groups). */
interface EniGroups {
  gids: number[];
  groups: Group[];
}

function addMember(groupsByEni: Map<string, EniGroups>, m: Member, keys: GroupKeys): void {
  const { target, groupKey } = keys;
  const eniId = m.located.eni.networkInterfaceId;
  const spec = m.policy.policy.spec;
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
      eni: m.located.eni,
      target,
      priority: spec.priority,
      packetLength: spec.packetLength,
      mirrorDns: spec.filter?.mirrorDns ?? false,
      userRules: spec.filter?.rules ?? [],
      whole: m.located.ip === "all",
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

/** The held addresses not in `selected` (sorted, distinct), as merged ranges. */
function unselectedRanges(held: Ranges, selected: readonly number[]): Ranges {
  // `held` is merged, so the gaps between selected addresses come out sorted and merged too.
  const out: [number, number][] = [];
  let k = 0;
  for (let r = 0; r < held.length; r++) {
    const s = held[r]![0];
    const e = held[r]![1];
    let start = s;
    while (k < selected.length && selected[k]! < s) k++;
    for (; k < selected.length && selected[k]! <= e; k++) {
      const a = selected[k]!;
      if (a > start) out.push([start, a - 1]);
      start = a + 1;
    }
    if (start <= e) out.push([start, e]);
  }
  return out;
}

/** Sorts `xs` in place and drops repeats. */
function sortedDistinct(xs: number[]): number[] {
  const out = sortSmall(xs, (a, b) => a - b);
  let n = 0;
  for (let i = 0; i < out.length; i++) if (i === 0 || out[i] !== out[n - 1]) out[n++] = out[i]!;
  out.length = n;
  return out;
}

/** Filter rules for a group, dropping its lowest-priority pods until the rules fit. */
function fitFilter(g: Group, idx: InventoryIndex, dropped: Member[]): DesiredRule[] | undefined {
  sortSmall(g.members, (a, b) => a.policy.rank - b.policy.rank || byString(a.located.name, b.located.name));
  const held = g.whole ? [] : idx.heldRanges(g.eni.networkInterfaceId);
  while (g.members.length > 0) {
    const ips: number[] = [];
    for (const m of g.members) if (m.located.ip !== "all") ips.push(m.located.ip);
    const selected = isSortedDistinct(ips) ? ips : sortedDistinct(ips);
    const rules = buildFilterRules({
      selected: g.whole ? "all" : selected,
      unselected: g.whole ? [] : unselectedRanges(held, selected),
      userRules: g.userRules,
      allowRejectForm: g.target.input.spec.allowNodeSources,
    });
    if (rules) return rules;
    dropped.push(g.members.pop()!);
  }
  return undefined;
}

function sessionNumberFor(g: Group, taken: number[]): number {
  // Priority decides the order AWS evaluates sessions in: higher priority, lower number.
  let n = (1000 - g.priority) * 32 + 1 + (g.keyHash % 32);
  while (taken.includes(n)) n = n >= 32766 ? 1 : n + 1;
  taken.push(n);
  return n;
}

interface Outcome {
  sessions: DesiredSession[];
  /** The owned session each of `sessions` matches, if any (looked up once, used thrice). */
  existing: (MirrorSession | undefined)[];
  /** The owned filter with each session's filter key, if any. */
  existingFilterOfSession: (MirrorFilter | undefined)[];
  /** The owned filter with each of `podFilters`' keys, if any. */
  podFilterExisting: (MirrorFilter | undefined)[];
  /** The group each of `sessions` serves. */
  groups: Group[];
  /** Pod filters: their keys embed the ENI, so only groups on one ENI could share one. */
  podFilters: DesiredFilter[];
  /** The group each of `podFilters` belongs to. */
  podFilterGroups: Group[];
  /** Where each ENI's sessions and pod filters begin in `sessions` and `podFilters`. */
  sessionRuns: number[];
  podFilterRuns: number[];
  /** Whole-node filters, keyed by content and shared, with the owned filter of that key. */
  wholeFilters: Map<string, { filter: DesiredFilter; existing: MirrorFilter | undefined }>;
}

function unmirrored(m: Member, reason: string, message: string): void {
  const r = m.located;
  m.policy.report.sources.push({
    kind: r.kind,
    name: r.name,
    networkInterfaceId: m.located.eni.networkInterfaceId,
    reason,
    message,
  });
}

interface ProgramCtx {
  idx: InventoryIndex;
  reports: Map<string, PolicyReport>;
  /** Owned target id to its key (the first in the index's order), built on first use. */
  keyOfTarget: () => Map<string, string>;
  out: Outcome;
}

/** A group that won a slot on its ENI: its fitted filter, and the AWS target it is given. */
interface Candidate {
  g: Group;
  /** Undefined when no member fits one filter. */
  rules: DesiredRule[] | undefined;
  /** Members left out to make the filter fit. */
  dropped: Member[];
  existing: MirrorSession | undefined;
  /** Undefined when every AWS target of the group's target is full. */
  slot: AwsTargetSlot | undefined;
}

/** Gives a candidate an AWS target: the one it uses if that still has room, else the best free. */
function assignSlot(c: Candidate, ctx: ProgramCtx): void {
  const current = c.existing ? currentTargetRef(ctx, c.existing.trafficMirrorTargetId) : undefined;
  c.slot = pickSlot(c.g.target.slots, c.g.eni.availabilityZone, current);
  if (c.slot) c.slot.used++;
}

/** Whether a target can run out of room for sources (ENI targets: 10, or 100 on the largest sizes). */
function isLimited(t: ResolvedTarget): boolean {
  return t.slots.some((s) => s.capacity !== Infinity);
}

/** The session, filter and reports of a group on its ENI, now that its target is decided. */
function programGroup(
  c: Candidate,
  ctx: ProgramCtx,
  onEni: { taken: number[]; podFilterHashes: string[]; owned: OwnedOnEni },
): void {
  const { g, rules, existing, slot } = c;
  const { taken, podFilterHashes } = onEni;
  const { idx, out } = ctx;
  for (const m of c.dropped) {
    unmirrored(
      m,
      Reason.FilterTooLarge,
      `more sources on ${g.eni.networkInterfaceId} than one filter's 10 rules can select`,
    );
  }
  if (!rules) return;
  if (!slot) {
    const message = `every AWS target of ${g.target.input.name} has its maximum number of sources`;
    for (const m of g.members) unmirrored(m, Reason.TargetFull, message);
    return;
  }
  const networkServices: "amazon-dns"[] = g.mirrorDns ? ["amazon-dns"] : [];
  // A pod filter belongs to its session and is edited in place as pods come and go; a whole-node
  // filter depends only on the policy's rules, so identical ones are shared.
  const fKey = g.whole
    ? `filter-${hashHex(JSON.stringify([rules, networkServices]))}`
    : `filter-${g.eni.networkInterfaceId}-${g.hash}`; // the session key's tail
  const filter = { key: fKey, rules, networkServices, description: "traffic-mirror-operator filter" };
  let existingFilter: MirrorFilter | undefined;
  if (g.whole) {
    existingFilter = idx.ownedFilters.get(fKey);
    if (!out.wholeFilters.has(fKey)) out.wholeFilters.set(fKey, { filter, existing: existingFilter });
  } else {
    existingFilter = findOwned(onEni.owned.filters, g.hash);
    if (!podFilterHashes.includes(g.hash)) {
      podFilterHashes.push(g.hash);
      out.podFilters.push(filter);
      out.podFilterGroups.push(g);
      out.podFilterExisting.push(existingFilter);
    }
  }
  out.existing.push(existing);
  out.existingFilterOfSession.push(existingFilter);
  out.groups.push(g);
  const session = desiredSession(g, { target: slot.ref, fKey, sessionNumber: sessionNumberFor(g, taken) });
  out.sessions.push(session);
  addToOwnerReports(g.members, session.key);
  const eniId = g.eni.networkInterfaceId;
  for (const m of g.members) {
    const r = m.located;
    m.policy.report.sources.push({
      kind: r.kind,
      name: r.name,
      sessionKey: g.sessionKey,
      networkInterfaceId: eniId,
    });
  }
}

/** The session of a group that got a slot; keys in the order the plan has always had them. */
function desiredSession(
  g: Group,
  at: { target: DesiredSession["target"]; fKey: string; sessionNumber: number },
): DesiredSession {
  const owners = distinctOwners(g.members);
  const first = g.members[0]!.located;
  const s = {
    key: g.sessionKey,
    networkInterfaceId: g.eni.networkInterfaceId,
    target: at.target,
    filterKey: at.fKey,
    sessionNumber: at.sessionNumber,
  } as DesiredSession;
  if (g.packetLength) s.packetLength = g.packetLength;
  s.virtualNetworkId = 0;
  s.owners = owners;
  s.nodeName = first.nodeName;
  s.instanceId = first.instanceId;
  s.pods = g.whole ? [] : g.members.map((m) => ({ name: m.located.name, ip: m.located.ipText! }));
  s.description = `traffic-mirror-operator: ${owners.join(", ")}`.slice(0, 255);
  return s;
}

/** Adds a session's key to the report of each policy it serves (once per report). */
function addToOwnerReports(members: readonly Member[], key: string): void {
  const done: PolicyReport[] = [];
  let last: RankedPolicy | undefined;
  for (const m of members) {
    if (m.policy === last) continue;
    last = m.policy;
    if (done.includes(last.report)) continue;
    done.push(last.report);
    last.report.sessionKeys.push(key);
  }
}

function distinctOwners(members: readonly Member[]): string[] {
  // Members come sorted by policy, so one policy's members are adjacent.
  const owners: string[] = [];
  let last: RankedPolicy | undefined;
  for (const m of members) {
    if (m.policy === last) continue;
    last = m.policy;
    if (!owners.includes(last.id)) owners.push(last.id);
  }
  return sortSmall(owners, byString);
}

function currentTargetRef(ctx: ProgramCtx, targetId: string): { key: string } | { id: string } {
  const key = ctx.keyOfTarget().get(targetId);
  return key === undefined ? { id: targetId } : { key };
}

function keysOfOwnedTargets(idx: InventoryIndex): () => Map<string, string> {
  let m: Map<string, string> | undefined;
  return () => {
    if (!m) {
      m = new Map();
      for (const [key, t] of idx.ownedTargets)
        if (!m.has(t.trafficMirrorTargetId)) m.set(t.trafficMirrorTargetId, key);
    }
    return m;
  };
}

/**
 * Chooses which groups get each ENI's free slots, by priority; gives the winners AWS targets,
 * where targets can fill up in order of priority across the cluster (so a lower-priority policy is
 * the one left `TargetFull`, whatever its ENI's id); then makes their sessions and reports
 * shadowing, ENI by ENI.
 */
function arbitrate(
  groupsByEni: Map<string, EniGroups>,
  ctx: ProgramCtx,
  targets: ReadonlyMap<string, ResolvedTarget>,
): void {
  const eniIds = [...groupsByEni.keys()].sort();
  // Without a target that can fill up, every group gets its target whatever the order: one pass.
  if (![...targets.values()].some(isLimited)) {
    for (const eniId of eniIds) emitEni(decideEni(eniId, groupsByEni, ctx, undefined), ctx);
    return;
  }
  const limited: Candidate[] = [];
  const enis = eniIds.map((eniId) => decideEni(eniId, groupsByEni, ctx, limited));
  // Higher priority first; among equals, sessions that exist keep their place before new ones
  // take it; then ENI order (the sort is stable).
  limited.sort((a, b) => b.g.priority - a.g.priority || (a.existing ? 0 : 1) - (b.existing ? 0 : 1));
  for (const c of limited) assignSlot(c, ctx);
  for (const e of enis) emitEni(e, ctx);
}

/** One ENI's groups by priority and the candidates among them. */
interface EniDecision {
  eniId: string;
  groups: Group[];
  foreign: MirrorSession[];
  candidates: Candidate[];
}

/**
 * Gives an ENI's free slots to its highest-priority groups and fits their filters. Groups whose
 * target can fill up wait in `limited` for their target, when given; the others get theirs now.
 */
function decideEni(
  eniId: string,
  groupsByEni: Map<string, EniGroups>,
  ctx: ProgramCtx,
  limited: Candidate[] | undefined,
): EniDecision {
  const groups = sortSmall(
    groupsByEni.get(eniId)!.groups,
    (a, b) => b.priority - a.priority || byString(a.groupKey, b.groupKey),
  );
  const foreign = ctx.idx.foreignSessions(eniId);
  const free = Math.max(0, MAX_SESSIONS_PER_ENI - foreign.length);
  const owned = ctx.idx.ownedOn(eniId);
  const candidates: Candidate[] = [];
  for (let i = 0; i < Math.min(free, groups.length); i++) {
    const g = groups[i]!;
    const dropped: Member[] = [];
    const rules = fitFilter(g, ctx.idx, dropped);
    const existing = rules ? findOwned(owned.sessions, g.hash) : undefined;
    const c: Candidate = { g, rules, dropped, existing, slot: undefined };
    candidates.push(c);
    if (rules) {
      if (limited && isLimited(g.target)) limited.push(c);
      else assignSlot(c, ctx);
    }
  }
  return { eniId, groups, foreign, candidates };
}

/** An ENI's sessions, filters and reports (in group order), then its shadowing. */
function emitEni(e: EniDecision, ctx: ProgramCtx): void {
  const { eniId, groups, foreign, candidates } = e;
  // A handful of numbers per ENI: an array, not a set per ENI.
  const onEni = {
    taken: foreign.map((s) => s.sessionNumber),
    podFilterHashes: [],
    owned: ctx.idx.ownedOn(eniId),
  };
  const firstSession = ctx.out.sessions.length;
  ctx.out.sessionRuns.push(firstSession);
  ctx.out.podFilterRuns.push(ctx.out.podFilters.length);
  groups.forEach((g, i) => {
    const c = candidates[i];
    if (c) {
      programGroup(c, ctx, onEni);
      return;
    }
    const msg = `${eniId} already has ${MAX_SESSIONS_PER_ENI} sessions (${foreign.length} not made by this operator); higher-priority policies hold the rest`;
    for (const m of g.members) unmirrored(m, Reason.EniFull, msg);
  });
  if (ctx.out.sessions.length - firstSession > 1)
    reportShadowing(eniId, ctx.out.sessions.slice(firstSession), ctx.reports);
}

/**
 * Keys the plan makes per group on an ENI: a fixed prefix, the ENI id, "-", the group's hash (all
 * of one length). `eni[i]`, `hash[i]` are the pieces of `key(i)`.
 */
interface PieceKeys {
  eni: readonly string[];
  hash: readonly string[];
  key: (i: number) => string;
}

/**
 * `byString` of two such keys from their pieces, without joining (and flattening) them: the same
 * ENI leaves the hashes to decide; different ENIs decide at their first differing character, unless
 * one id is a prefix of the other, when the whole keys are compared.
 */
function comparePieces(k: PieceKeys, a: number, b: number): number {
  const ea = k.eni[a]!;
  const eb = k.eni[b]!;
  if (ea === eb) return byString(k.hash[a]!, k.hash[b]!);
  if (ea.startsWith(eb) || eb.startsWith(ea)) return byString(k.key(a), k.key(b));
  return byString(ea, eb);
}

/**
 * Positions of the keys in ascending order, as a stable sort gives them. Keys come in runs (one
 * per ENI, ENIs in order) that mostly join up once each short run is sorted: then a check of the
 * joins replaces sorting tens of thousands of keys. If the joined runs are not strictly
 * ascending, a full stable sort decides.
 */
function keyOrder(k: PieceKeys, runStarts: readonly number[]): number[] {
  const n = k.eni.length;
  const order: number[] = [];
  runStarts.forEach((start, r) => {
    const end = runStarts[r + 1] ?? n;
    if (end - start === 1) order.push(start);
    else if (end > start) {
      const run: number[] = [];
      for (let i = start; i < end; i++) run.push(i);
      sortSmall(run, (a, b) => comparePieces(k, a, b));
      for (const i of run) order.push(i);
    }
  });
  let ascending = order.length === n;
  for (let i = 1; ascending && i < n; i++) ascending = comparePieces(k, order[i - 1]!, order[i]!) < 0;
  if (ascending) return order;
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => byString(k.key(a), k.key(b)));
}

/**
 * Merges two lists of filters, each sorted by distinct keys (no key in both), carrying along the
 * owned filter found for each.
 */
function mergeFilters(
  a: readonly { filter: DesiredFilter; existing: MirrorFilter | undefined }[],
  b: readonly { filter: DesiredFilter; existing: MirrorFilter | undefined }[],
): { filters: DesiredFilter[]; existing: (MirrorFilter | undefined)[] } {
  const filters: DesiredFilter[] = [];
  const existing: (MirrorFilter | undefined)[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x =
      j >= b.length || (i < a.length && byString(a[i]!.filter.key, b[j]!.filter.key) < 0) ? a[i++]! : b[j++]!;
    filters.push(x.filter);
    existing.push(x.existing);
  }
  return { filters, existing };
}

/**
 * Deterministic, stable VNIs: an existing session keeps its VNI; new ones hash their key. Returns
 * the positions of `out.sessions` in key order.
 */
function assignVnis(out: Outcome): number[] {
  const { sessions, existing } = out;
  const used = new Set<number>();
  const order = keyOrder(
    {
      eni: out.groups.map((g) => g.eni.networkInterfaceId),
      hash: out.groups.map((g) => g.hash),
      key: (i) => sessions[i]!.key,
    },
    out.sessionRuns,
  );
  const pending: number[] = [];
  for (const i of order) {
    const s = sessions[i]!;
    const vni = existing[i]?.virtualNetworkId;
    if (vni !== undefined && vni > 0 && !used.has(vni)) {
      s.virtualNetworkId = vni;
      used.add(vni);
    } else {
      pending.push(i);
    }
  }
  for (const i of pending) {
    const s = sessions[i]!;
    const g = out.groups[i]!;
    // hash53(s.key), fed the pieces the key was made of.
    const h = new Hash53().add("session-").add(g.eni.networkInterfaceId).add("-").add(g.hash).value();
    let vni = (h % 0xfffffe) + 1;
    while (used.has(vni)) vni = (vni % 0xfffffe) + 1;
    s.virtualNetworkId = vni;
    used.add(vni);
  }
  return order;
}

function sameRef(a: DesiredSession["target"], b: DesiredSession["target"]): boolean {
  if ("key" in a) return "key" in b && a.key === b.key;
  return !("key" in b) && a.id === b.id;
}

/**
 * Marks policies whose packets an earlier session on the same ENI, to another target, takes
 * first. `sessions` are one ENI's.
 */
function reportShadowing(eni: string, sessions: DesiredSession[], reports: Map<string, PolicyReport>): void {
  sortSmall(sessions, (a, b) => a.sessionNumber - b.sessionNumber);
  sessions.forEach((later, i) => {
    const shadowers = sessions.slice(0, i).filter((earlier) => {
      if (sameRef(earlier.target, later.target)) return false;
      return (
        earlier.pods.length === 0 ||
        later.pods.length === 0 ||
        earlier.pods.some((p) => later.pods.some((q) => q.ip === p.ip))
      );
    });
    if (shadowers.length === 0) return;
    const by = [...new Set(shadowers.flatMap((s) => s.owners))].sort();
    for (const owner of later.owners)
      reports.get(owner)?.shadowedBy.push({ networkInterfaceId: eni, policies: by });
  });
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

function collectDemands(
  input: PlanInput,
  targets: Map<string, ResolvedTarget>,
  idx: InventoryIndex,
  targetEnis: Set<string>,
) {
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
    const ctx: LocateCtx = {
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
    const place = (l: Located | SourceReport): void => {
      if ("eni" in l) addMember(groupsByEni, { policy: rp, located: l }, keys);
      else report.sources.push(l);
    };
    for (const pod of sel.pods) place(locatePod(pod, ctx));
    for (const n of sel.nodes) for (const l of locateNode(n, ctx)) place(l);
  }
  // Sources go to the report a lookup by id finds, which for a repeated id is the last one.
  for (const rp of ranked) rp.report = reports.get(rp.id)!;
  return { reports, groupsByEni };
}

function targetReports(
  targets: Map<string, ResolvedTarget>,
  input: PlanInput,
  out: Outcome,
): Map<string, TargetReport> {
  const reports = new Map<string, TargetReport>();
  // Sessions hold their slot's ref object: count per object, then per ref as JSON (rare repeats).
  const perObject = new Map<object, number>();
  for (const x of out.sessions) perObject.set(x.target, (perObject.get(x.target) ?? 0) + 1);
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
  const targets = resolveTargets(input.targets, {
    idx,
    nodes: input.nodes,
    isOwned: (tags) => isOwnedBy(tags, input.clusterName),
  });
  const targetEnis = new Set(idx.targetEnis);
  for (const t of targets.values())
    for (const s of t.slots) if (s.networkInterfaceId) targetEnis.add(s.networkInterfaceId);
  const { reports, groupsByEni } = collectDemands(input, targets, idx, targetEnis);
  const out: Outcome = {
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
  };
  arbitrate(groupsByEni, { idx, reports, keyOfTarget: keysOfOwnedTargets(idx), out }, targets);
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
  return {
    desired,
    diff: diffAgainstInventory(desired, idx, {
      sessions: order.map((i) => out.existing[i]),
      filterOfSession: order.map((i) => out.existingFilterOfSession[i]),
      filters: filterExisting,
    }),
    policies: reports,
    targets: targetReports(targets, input, out),
    vniMap: { version: 1, sessions: order.map((i) => vniEntry(out.sessions[i]!, out.existing[i], idx)) },
  };
}

function vniEntry(s: DesiredSession, existing: MirrorSession | undefined, idx: InventoryIndex): VniEntry {
  return {
    vni: s.virtualNetworkId,
    sessionId: existing?.trafficMirrorSessionId,
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
