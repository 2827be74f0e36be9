/**
 * The per-ENI phase of a plan: each ENI's session slots go to its highest-priority groups, their
 * filters are fitted within 10 rules, AWS targets are handed out (by priority where they can fill
 * up), and the sessions, filters and source reports are made, ENI by ENI in id order.
 */
import type { MirrorFilter, MirrorSession } from "../api/inventory.ts";
import { Reason } from "../api/reasons.ts";
import { buildFilterRules, type DesiredRule, type FilterRequest } from "./filters.ts";
import { byString, hashHex } from "./hash.ts";
import { rulesOf, sameFilter } from "./diff.ts";
import { findOwned, type InventoryIndex, type OwnedOnEni } from "./inventory-index.ts";
import { isSortedDistinct, type Ranges } from "./ipv4.ts";
import type { Range6 } from "./ipv6.ts";
import {
  MAX_PRIORITY,
  MAX_SESSIONS_PER_ENI,
  type EniGroups,
  type Group,
  type Member,
  type ProgramCtx,
  type RankedPolicy,
} from "./model.ts";
import { sortSmall } from "./sort.ts";
import { pickSlot, sameRef, type AwsTargetSlot, type ResolvedTarget } from "./targets.ts";
import type { DesiredFilter, DesiredSession, PolicyReport } from "./types.ts";

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

/** A session's pods with their addresses: one entry per address (a dual-stack pod has two). */
function podsOf(members: readonly Member[]): { name: string; ip: string }[] {
  const out: { name: string; ip: string }[] = [];
  for (const m of members) {
    out.push({ name: m.name, ip: m.ipText! });
    if (m.ip6Text !== undefined && m.ip6Text !== m.ipText) out.push({ name: m.name, ip: m.ip6Text });
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

/** A group's members by policy priority, then name: the order filters drop them in. */
function sortMembers(g: Group): void {
  sortSmall(g.members, (a, b) => a.owner.rank - b.owner.rank || byString(a.name, b.name));
}

/** The held IPv6 addresses not in `selected` (sorted, distinct), as merged ranges. */
function unselectedRanges6(held: readonly Range6[], selected: readonly bigint[]): Range6[] {
  const out: Range6[] = [];
  let k = 0;
  for (const [s, e] of held) {
    let start = s;
    while (k < selected.length && selected[k]! < s) k++;
    for (; k < selected.length && selected[k]! <= e; k++) {
      const a = selected[k]!;
      if (a > start) out.push([start, a - 1n]);
      start = a + 1n;
    }
    if (start <= e) out.push([start, e]);
  }
  return out;
}

/** The IPv6 side of a group's filter request; undefined on an ENI that holds no IPv6 address. */
function ipv6Request(g: Group, idx: InventoryIndex): FilterRequest["ipv6"] {
  const held = idx.heldRanges6(g.eni.networkInterfaceId);
  if (!held) return undefined;
  if (g.eniWide) return { selected: [], unselected: [] };
  const ips = new Set<bigint>();
  for (const m of g.members) if (m.ip6 !== undefined) ips.add(m.ip6);
  const selected = [...ips].sort((a, b) => (a < b ? -1 : 1));
  return { selected, unselected: unselectedRanges6(held, selected) };
}

/** The local blocks of the rules of the group's filter in EC2 now (none when it has none). */
function currentLocals(g: Group, idx: InventoryIndex): Set<string> {
  const f = findOwned(idx.ownedOn(g.eni.networkInterfaceId).filters, g.hash);
  const out = new Set<string>();
  if (f) {
    for (const r of f.ingressRules) out.add(r.destinationCidrBlock);
    for (const r of f.egressRules) out.add(r.sourceCidrBlock);
  }
  return out;
}

/** Filter rules for a group, dropping its lowest-priority pods until the rules fit. */
function fitFilter(g: Group, idx: InventoryIndex, dropped: Member[]): DesiredRule[] | undefined {
  sortMembers(g);
  const held = g.eniWide ? [] : idx.heldRanges(g.eni.networkInterfaceId);
  // Read once, and only if a table is built.
  let locals: Set<string> | undefined;
  const current = (): Set<string> => (locals ??= currentLocals(g, idx));
  while (g.members.length > 0) {
    const ips: number[] = [];
    for (const m of g.members) if (typeof m.ip === "number") ips.push(m.ip);
    const selected = isSortedDistinct(ips) ? ips : sortedDistinct(ips);
    const req: FilterRequest = {
      selected: g.eniWide ? "all" : selected,
      unselected: g.eniWide ? [] : unselectedRanges(held, selected),
      userRules: g.userRules,
      allowRejectForm: g.target.input.spec.allowNodeSources,
    };
    const v6 = ipv6Request(g, idx);
    if (v6) req.ipv6 = v6;
    if (!g.eniWide) req.current = current;
    const rules = buildFilterRules(req);
    if (rules) return rules;
    dropped.push(g.members.pop()!);
  }
  return undefined;
}

function sessionNumberFor(g: Group, taken: number[]): number {
  // Priority decides the order AWS evaluates sessions in: higher priority, lower number.
  let n = (MAX_PRIORITY - g.priority) * 32 + 1 + (g.keyHash % 32);
  while (taken.includes(n)) n = n >= 32766 ? 1 : n + 1;
  taken.push(n);
  return n;
}

function unmirrored(m: Member, reason: string, message: string): void {
  m.owner.report.sources.push({
    kind: m.kind,
    name: m.name,
    networkInterfaceId: m.eni.networkInterfaceId,
    reason,
    message,
  });
}

/** A group that won a slot on its ENI: its fitted filter, and the AWS target it is given. */
export interface Candidate {
  g: Group;
  /** Undefined when no member fits one filter. */
  rules: DesiredRule[] | undefined;
  /** Members left out to make the filter fit. */
  dropped: Member[];
  existing: MirrorSession | undefined;
  /** Undefined when every AWS target of the group's target is full. */
  slot: AwsTargetSlot | undefined;
  /** Left out because the account's session quota went to higher priorities. */
  overQuota: boolean;
  /** Whether `rules` and `dropped` are known yet (filters are fitted only for groups in quota). */
  fitted: boolean;
}

/** Fits a candidate's filter (deciding first, in `Auto` mode, whether it selects pods). */
export function fit(c: Candidate, ctx: ProgramCtx): void {
  const g = c.g;
  if (g.auto) g.eniWide = !staysPrecise(c, ctx);
  c.rules = fitFilter(g, ctx.idx, c.dropped);
  c.fitted = true;
  if (g.auto) noteAuto(g, ctx);
}

/**
 * Whether an `Auto` group gets a pod-precise filter: only when one fits every member, and either
 * the controller asks to tighten this ENI or the session already uses exactly that filter (its
 * pods have not changed). A change loosens it, so a new pod is covered without waiting on rules.
 */
function staysPrecise(c: Candidate, ctx: ProgramCtx): boolean {
  const g = c.g;
  g.eniWide = false;
  const left: Member[] = [];
  const precise = fitFilter(g, ctx.idx, left);
  // fitFilter pops the members it leaves out: put them back, in order.
  for (let i = left.length - 1; i >= 0; i--) g.members.push(left[i]!);
  if (!precise || left.length > 0) return false;
  const eniId = g.eni.networkInterfaceId;
  if (ctx.tighten.has(eniId)) return true;
  const podFilter = findOwned(ctx.idx.ownedOn(eniId).filters, g.hash);
  return (
    podFilter !== undefined &&
    c.existing?.trafficMirrorFilterId === podFilter.trafficMirrorFilterId &&
    sameFilter(podFilter, {
      key: "",
      rules: precise,
      networkServices: g.mirrorDns ? ["amazon-dns"] : [],
      description: "",
    })
  );
}

function noteAuto(g: Group, ctx: ProgramCtx): void {
  const eniId = g.eni.networkInterfaceId;
  const members = `${g.hash}:${g.members.map((m) => (m.ip6Text && m.ip6Text !== m.ipText ? `${m.ipText}+${m.ip6Text}` : m.ipText)).join(",")}`;
  const prev = ctx.out.auto.get(eniId);
  ctx.out.auto.set(eniId, {
    loose: (prev?.loose ?? false) || g.eniWide,
    members: prev ? `${prev.members};${members}` : members,
  });
}

/** Gives a candidate an AWS target: the one it uses if that still has room, else the best free. */
export function assignSlot(c: Candidate, ctx: ProgramCtx): void {
  const current = c.existing ? currentTargetRef(ctx, c.existing.trafficMirrorTargetId) : undefined;
  c.slot = pickSlot(c.g.target.slots, c.g.eni.availabilityZone, current);
  if (c.slot) c.slot.used++;
}

/** Whether a target can run out of room for sources (ENI targets: 10, or 100 on the largest sizes). */
export function isLimited(t: ResolvedTarget): boolean {
  return t.slots.some((s) => s.capacity !== Infinity);
}

/** The filter of a rule set without addresses, shared by every session that needs it (made once). */
function sharedFilter(
  rules: DesiredRule[],
  networkServices: "amazon-dns"[],
  ctx: ProgramCtx,
  eni: string,
): { filter: DesiredFilter; existing: MirrorFilter | undefined } {
  const key = `filter-${hashHex(JSON.stringify([rules, networkServices]))}`;
  ctx.out.sharedUses.push({ eni, key });
  let entry = ctx.out.wholeFilters.get(key);
  if (!entry) {
    const filter = { key, rules, networkServices, description: "traffic-mirror-operator filter" };
    entry = { filter, existing: ctx.idx.ownedFilters.get(key) };
    ctx.out.wholeFilters.set(key, entry);
  }
  return entry;
}

/** The session, filter and reports of a group on its ENI, now that its target is decided. */
function programGroup(
  c: Candidate,
  ctx: ProgramCtx,
  onEni: { taken: number[]; podFilterHashes: string[]; owned: OwnedOnEni },
): void {
  const { g, rules, existing, slot } = c;
  const { taken, podFilterHashes } = onEni;
  const { out } = ctx;
  if (c.overQuota) {
    sortMembers(g);
    for (const m of g.members) unmirrored(m, Reason.QuotaFull, ctx.quota.message);
    return;
  }
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
  // A pod-precise Auto group keeps its ENI-wide filter in AWS, so that loosening it when a pod
  // arrives is one change to the session, not a filter and its rules first.
  if (g.auto && !g.eniWide) {
    const wide = buildFilterRules({
      selected: "all",
      unselected: [],
      userRules: g.userRules,
      allowRejectForm: false,
    });
    if (wide) sharedFilter(wide, networkServices, ctx, g.eni.networkInterfaceId);
  }
  // Likewise a loosened Auto group keeps its pod filter as it is (unused, unchanged while pods come
  // and go), so that tightening it again edits rules rather than making a filter.
  if (g.auto && g.eniWide) {
    const kept = findOwned(onEni.owned.filters, g.hash);
    if (kept && !podFilterHashes.includes(g.hash)) {
      podFilterHashes.push(g.hash);
      out.podFilters.push({
        key: `filter-${g.eni.networkInterfaceId}-${g.hash}`,
        rules: rulesOf(kept),
        networkServices: [...kept.networkServices],
        description: "traffic-mirror-operator filter",
      });
      out.podFilterGroups.push(g);
      out.podFilterExisting.push(kept);
    }
  }
  // A pod filter belongs to its session and is edited in place as pods come and go; a filter
  // without addresses (a node source, or selection at the collector) depends only on the policy's
  // rules, so identical ones are shared, and pods coming and going change nothing in AWS.
  let existingFilter: MirrorFilter | undefined;
  let fKey: string;
  if (g.eniWide) {
    const shared = sharedFilter(rules, networkServices, ctx, g.eni.networkInterfaceId);
    fKey = shared.filter.key;
    existingFilter = shared.existing;
  } else {
    fKey = `filter-${g.eni.networkInterfaceId}-${g.hash}`; // the session key's tail
    const filter = { key: fKey, rules, networkServices, description: "traffic-mirror-operator filter" };
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
    m.owner.report.sources.push({
      kind: m.kind,
      name: m.name,
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
  const first = g.members[0]!;
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
  s.pods = g.whole ? [] : podsOf(g.members);
  s.description = `traffic-mirror-operator: ${owners.join(", ")}`.slice(0, 255);
  return s;
}

/** Adds a session's key to the report of each policy it serves (once per report). */
function addToOwnerReports(members: readonly Member[], key: string): void {
  const done: PolicyReport[] = [];
  let last: RankedPolicy | undefined;
  for (const m of members) {
    if (m.owner === last) continue;
    last = m.owner;
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
    if (m.owner === last) continue;
    last = m.owner;
    if (!owners.includes(last.id)) owners.push(last.id);
  }
  return sortSmall(owners, byString);
}

function currentTargetRef(ctx: ProgramCtx, targetId: string): { key: string } | { id: string } {
  const key = ctx.keyOfTarget().get(targetId);
  return key === undefined ? { id: targetId } : { key };
}

export function keysOfOwnedTargets(idx: InventoryIndex): () => Map<string, string> {
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
export function arbitrate(
  groupsByEni: Map<string, EniGroups>,
  ctx: ProgramCtx,
  targets: ReadonlyMap<string, ResolvedTarget>,
): Arbitration {
  const sessionBudget = Math.max(0, ctx.quota.limit - ctx.quota.others);
  const eniIds = [...groupsByEni.keys()].sort();
  // The most sessions this plan could make: each ENI's free slots, or its groups if fewer.
  let most = 0;
  for (const eniId of eniIds) most += mostOn(eniId, groupsByEni.get(eniId)!.groups.length, ctx.idx);
  const overQuota = most > sessionBudget;
  const limited = [...targets.values()].some(isLimited);
  // Within the account's quota and without a target that can fill up, every group gets its
  // target whatever the order: one pass.
  if (!overQuota && !limited) {
    const decided = eniIds.map((eniId) => decideEni(eniId, groupsByEni, ctx));
    for (const e of decided) emitEni(e, ctx);
    return { enis: decided, most, overQuota, limited };
  }
  const waiting: Candidate[] = [];
  const enis = eniIds.map((eniId) => decideEni(eniId, groupsByEni, ctx, { waiting, all: overQuota }));
  let granted = 0;
  for (const e of enis) for (const c of e.candidates) if (c.slot) granted++;
  for (const c of byPriority(waiting)) {
    if (granted >= sessionBudget) {
      c.overQuota = true;
      continue;
    }
    if (!c.fitted) fit(c, ctx);
    if (!c.rules) continue;
    assignSlot(c, ctx);
    if (c.slot) granted++;
  }
  for (const e of enis) emitEni(e, ctx);
  return { enis, most, overQuota, limited };
}

/** How an arbitration went: every ENI's decision, in ENI order, and what made it global. */
export interface Arbitration {
  enis: EniDecision[];
  /** The most sessions the plan could make (each ENI's free slots, or its groups if fewer). */
  most: number;
  /** `most` exceeds the account's budget: every candidate waited its turn by priority. */
  overQuota: boolean;
  /** Some target can fill up: its candidates waited their turn by priority. */
  limited: boolean;
}

/** An ENI's share of `Arbitration.most`. */
export function mostOn(eniId: string, groups: number, idx: InventoryIndex): number {
  const free = MAX_SESSIONS_PER_ENI - idx.foreignSessions(eniId).length;
  return Math.max(0, Math.min(free, groups));
}

/**
 * Higher priority first; among equals, sessions that exist keep their place before new ones take
 * it; then ENI order. Priorities are whole numbers 0–1000 (the CRD says so), so this is a stable
 * bucket sort rather than a comparison sort of up to tens of thousands of candidates; a priority
 * outside that (a policy stored under an older CRD) gets the comparison sort, which orders the same.
 */
function byPriority(cs: readonly Candidate[]): Candidate[] {
  const first = (a: Candidate, b: Candidate): number =>
    b.g.priority - a.g.priority || (a.existing ? 0 : 1) - (b.existing ? 0 : 1);
  if (!cs.every((c) => Number.isInteger(c.g.priority) && c.g.priority >= 0 && c.g.priority <= MAX_PRIORITY))
    return [...cs].sort(first);
  const buckets: Candidate[][] = [];
  for (const c of cs) {
    const b = 2 * (MAX_PRIORITY - c.g.priority) + (c.existing ? 0 : 1);
    (buckets[b] ??= []).push(c);
  }
  const out: Candidate[] = [];
  for (const b of buckets) if (b) for (const c of b) out.push(c);
  return out;
}

/** One ENI's groups by priority and the candidates among them. */
export interface EniDecision {
  eniId: string;
  groups: Group[];
  foreign: MirrorSession[];
  owned: OwnedOnEni;
  candidates: Candidate[];
}

/**
 * Gives an ENI's free slots to its highest-priority groups and fits their filters. With `wait`,
 * groups whose target can fill up (or every group, with `all`) wait in `waiting` for their target;
 * the others get theirs now.
 */
export function decideEni(
  eniId: string,
  groupsByEni: Map<string, EniGroups>,
  ctx: ProgramCtx,
  wait?: { waiting: Candidate[]; all: boolean },
): EniDecision {
  const { groups, foreign, owned, candidates } = candidatesOf(eniId, groupsByEni, ctx);
  for (const c of candidates) {
    // Over the account's quota, every group waits its turn by priority, and only groups that get
    // one have their filters fitted.
    if (wait?.all) {
      wait.waiting.push(c);
      continue;
    }
    fit(c, ctx);
    if (c.rules) {
      if (wait && isLimited(c.g.target)) wait.waiting.push(c);
      else assignSlot(c, ctx);
    }
  }
  return { eniId, groups, foreign, owned, candidates };
}

/** An ENI's groups in order, and a candidate (not yet fitted) for each of its free slots. */
export function candidatesOf(
  eniId: string,
  groupsByEni: Map<string, EniGroups>,
  ctx: ProgramCtx,
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
    const existing = findOwned(owned.sessions, g.hash);
    const c: Candidate = {
      g,
      rules: undefined,
      dropped: [],
      existing,
      slot: undefined,
      overQuota: false,
      fitted: false,
    };
    candidates.push(c);
  }
  return { eniId, groups, foreign, owned, candidates };
}

/** An ENI's sessions, filters and reports (in group order), then its shadowing. */
export function emitEni(e: EniDecision, ctx: ProgramCtx): void {
  const { eniId, groups, foreign, owned, candidates } = e;
  // A handful of numbers per ENI: an array, not a set per ENI.
  const onEni = { taken: foreign.map((s) => s.sessionNumber), podFilterHashes: [], owned };
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
    reportShadowing(
      eniId,
      ctx.out.sessions.slice(firstSession).map((s, i) => ({ s, g: ctx.out.groups[firstSession + i]! })),
      ctx.reports,
    );
}

/** A policy's addresses in a group, or "all" for a whole-ENI source. */
function selectedBy(g: Group, owner: string): Set<number | bigint> | "all" {
  const ips = new Set<number | bigint>();
  for (const m of g.members) {
    if (m.owner.id !== owner) continue;
    if (m.ip === "all") return "all";
    if (m.ip !== undefined) ips.add(m.ip);
    if (m.ip6 !== undefined) ips.add(m.ip6);
  }
  return ips;
}

function overlaps(a: Set<number | bigint> | "all", b: Set<number | bigint> | "all"): boolean {
  if (a === "all" || b === "all") return true;
  for (const x of a) if (b.has(x)) return true;
  return false;
}

/**
 * Whether copies through `earlier` reach what `later`'s policies asked for: the same AWS target,
 * or the same collector target (collectors attribute each copy to every policy that selected it,
 * whichever of the ENI's sessions to that target carried it).
 */
function sameDestination(earlier: Group, e: DesiredSession, later: Group, l: DesiredSession): boolean {
  if (sameRef(e.target, l.target)) return true;
  return (
    earlier.target.input.name === later.target.input.name && earlier.target.input.spec.collector !== undefined
  );
}

/**
 * Marks each policy whose packets an earlier session on the same ENI, to another destination,
 * takes first: judged per policy (its own addresses against each earlier policy's), so a policy
 * that only shares a session with a shadowed one is not marked, and only the policies that select
 * the same addresses are named. `sessions` are one ENI's.
 */
function reportShadowing(
  eni: string,
  sessions: { s: DesiredSession; g: Group }[],
  reports: Map<string, PolicyReport>,
): void {
  sortSmall(sessions, (a, b) => a.s.sessionNumber - b.s.sessionNumber);
  sessions.forEach((later, i) => {
    const earlier = sessions.slice(0, i).filter((e) => !sameDestination(e.g, e.s, later.g, later.s));
    if (earlier.length === 0) return;
    for (const owner of later.s.owners) {
      const mine = selectedBy(later.g, owner);
      const by = new Set<string>();
      for (const e of earlier)
        for (const other of e.s.owners) if (overlaps(mine, selectedBy(e.g, other))) by.add(other);
      if (by.size > 0)
        reports.get(owner)?.shadowedBy.push({ networkInterfaceId: eni, policies: [...by].sort() });
    }
  });
}
