/**
 * Desired versus actual, matched on the ownership key tag: what to create, modify and delete.
 * Only resources this cluster's operator owns are ever modified or deleted. `applyDiff` replays a
 * diff on an inventory the way AWS would, for tests (plan(apply(plan)) must be empty).
 */
import type { Ec2Inventory, FilterRule, MirrorFilter, MirrorSession } from "../api/inventory.ts";
import { ownershipTags, TAG_KEY } from "../api/tags.ts";
import { canonicalRule, type DesiredRule } from "./filters.ts";
import { byString, hashHex } from "./hash.ts";
import type { InventoryIndex } from "./inventory-index.ts";
import { applyRuleEdits, planRuleEdits } from "./rule-edits.ts";
import type {
  DesiredFilter,
  DesiredSession,
  DesiredTarget,
  FilterEdit,
  PlanDiff,
  SessionChange,
  TargetRef,
} from "./types.ts";

/** A filter's rules as desired rules (no ids, no descriptions). */
export function rulesOf(f: MirrorFilter): DesiredRule[] {
  return [...f.ingressRules, ...f.egressRules].map(
    ({ trafficMirrorFilterRuleId: _id, description: _d, ...r }) => r,
  );
}

/** Whether an owned filter's rules and services match the desired ones. */
export function sameFilter(actual: MirrorFilter, desired: DesiredFilter): boolean {
  // Nearly every owned filter matches; pairing rules field by field proves that without building
  // and sorting strings. Only a filter that fails the quick test is compared the careful way.
  if (
    quickSameRules(actual, desired.rules) &&
    quickSameServices(actual.networkServices, desired.networkServices)
  )
    return true;
  const a = rulesOf(actual).map(canonicalRule).sort();
  const d = desired.rules.map(canonicalRule).sort();
  return (
    JSON.stringify(a) === JSON.stringify(d) &&
    JSON.stringify([...actual.networkServices].sort()) === JSON.stringify([...desired.networkServices].sort())
  );
}

/** Equal as `canonicalRule` renders them (`x === y` implies equal text; the text decides otherwise). */
function sameText(x: unknown, y: unknown): boolean {
  return x === y || String(x) === String(y);
}

/** Whether two rules render to the same `canonicalRule` text, field by field. */
function sameRule(a: DesiredRule, d: DesiredRule): boolean {
  return (
    sameText(a.direction, d.direction) &&
    sameText(a.ruleNumber, d.ruleNumber) &&
    sameText(a.action, d.action) &&
    sameText(a.protocol ?? -1, d.protocol ?? -1) &&
    sameText(a.sourceCidrBlock, d.sourceCidrBlock) &&
    sameText(a.destinationCidrBlock, d.destinationCidrBlock) &&
    samePorts(a.sourcePortRange, d.sourcePortRange) &&
    samePorts(a.destinationPortRange, d.destinationPortRange)
  );
}

function samePorts(a: DesiredRule["sourcePortRange"], d: DesiredRule["sourcePortRange"]): boolean {
  return sameText(a?.fromPort ?? -1, d?.fromPort ?? -1) && sameText(a?.toPort ?? -1, d?.toPort ?? -1);
}

/**
 * True only if the rules pair up one to one with equal text (then their sorted texts are equal);
 * false means "not shown", not "different".
 */
function quickSameRules(actual: MirrorFilter, desired: readonly DesiredRule[]): boolean {
  const n = actual.ingressRules.length + actual.egressRules.length;
  if (n !== desired.length || n > 32) return false;
  let used = 0;
  const inCount = actual.ingressRules.length;
  for (const d of desired) {
    // Actual rules are numbered ingress first, then egress; each pairs with one desired rule.
    let k = -1;
    for (let i = 0; k < 0 && i < n; i++) {
      const a = i < inCount ? actual.ingressRules[i]! : actual.egressRules[i - inCount]!;
      if ((used & (1 << i)) === 0 && sameRule(a, d)) k = i;
    }
    if (k < 0) return false;
    used |= 1 << k;
  }
  return true;
}

function quickSameServices(actual: readonly string[], desired: readonly string[]): boolean {
  return actual.length === desired.length && actual.every((s, i) => s === desired[i]);
}

function resolveTargetId(ref: TargetRef, idx: InventoryIndex): string | undefined {
  return "id" in ref ? ref.id : idx.ownedTargets.get(ref.key)?.trafficMirrorTargetId;
}

/** Answers of the index, remembered within one diff: sessions share a few target refs. */
export interface Known {
  idx: InventoryIndex;
  targetIds: Map<TargetRef, string | undefined>;
}

/**
 * What the planner already looked up, for the diff to use rather than look up again by key:
 * `sessions[i]` and `filterOfSession[i]` are the owned session with desired session i's key and
 * the owned filter with its filter key; `filters[i]` is the owned filter with desired filter i's.
 */
export interface Matched {
  sessions: readonly (MirrorSession | undefined)[];
  filterOfSession: readonly (MirrorFilter | undefined)[];
  filters: readonly (MirrorFilter | undefined)[];
}

function targetIdOf(ref: TargetRef, k: Known): string | undefined {
  if (k.targetIds.has(ref)) return k.targetIds.get(ref);
  const id = resolveTargetId(ref, k.idx);
  k.targetIds.set(ref, id);
  return id;
}

/** The changes that take an owned session to the desired one, or undefined. */
export function sessionChange(
  actual: MirrorSession,
  d: DesiredSession,
  k: Known,
  filter: MirrorFilter | undefined,
): SessionChange | undefined {
  const change: SessionChange = { sessionId: actual.trafficMirrorSessionId, key: d.key };
  let changed = false;
  if (targetIdOf(d.target, k) !== actual.trafficMirrorTargetId) {
    change.target = d.target;
    changed = true;
  }
  if (filter?.trafficMirrorFilterId !== actual.trafficMirrorFilterId) {
    change.filterKey = d.filterKey;
    changed = true;
  }
  if (d.sessionNumber !== actual.sessionNumber) {
    change.sessionNumber = d.sessionNumber;
    changed = true;
  }
  if ((d.packetLength ?? null) !== (actual.packetLength ?? null)) {
    change.packetLength = d.packetLength ?? null;
    changed = true;
  }
  if (d.virtualNetworkId !== actual.virtualNetworkId) {
    change.virtualNetworkId = d.virtualNetworkId;
    changed = true;
  }
  return changed ? change : undefined;
}

/** The changes that take the owned resources in `idx` to `desired`. */
export function diffAgainstInventory(
  desired: { targets: DesiredTarget[]; filters: DesiredFilter[]; sessions: DesiredSession[] },
  idx: InventoryIndex,
  matched: Matched,
): PlanDiff {
  // Owned resources some desired key found; the rest are deleted. Marking the ones found saves
  // a set of every desired key (tens of thousands of strings to hash).
  const keptSessions = new Set<MirrorSession>();
  const keptFilters = new Set<MirrorFilter>();
  const wantTargets = new Set(desired.targets.map((t) => t.key));
  const diff: PlanDiff = {
    deleteSessions: [],
    createTargets: desired.targets.filter((t) => !idx.ownedTargets.has(t.key)),
    createFilters: [],
    editFilters: [],
    modifySessions: [],
    createSessions: [],
    deleteFilters: [],
    deleteTargets: [],
  };
  const known: Known = { idx, targetIds: new Map() };
  desired.filters.forEach((f, i) => {
    const actual = matched.filters[i];
    if (!actual) diff.createFilters.push(f);
    else {
      keptFilters.add(actual);
      if (!sameFilter(actual, f)) diff.editFilters.push(filterEdit(actual, f));
    }
  });
  desired.sessions.forEach((s, i) => {
    const actual = matched.sessions[i];
    if (!actual) diff.createSessions.push(s);
    else {
      keptSessions.add(actual);
      const change = sessionChange(actual, s, known, matched.filterOfSession[i]);
      if (change) diff.modifySessions.push(change);
    }
  });
  const sortKey = <T extends { key: string }>(xs: T[]): T[] => xs.sort((a, b) => byString(a.key, b.key));
  // forEach, not for-of over entries: no [key, value] pair per owned resource.
  idx.ownedSessions.forEach((s, key) => {
    if (!keptSessions.has(s)) diff.deleteSessions.push({ sessionId: s.trafficMirrorSessionId, key });
  });
  idx.ownedFilters.forEach((f, key) => {
    if (!keptFilters.has(f)) diff.deleteFilters.push({ filterId: f.trafficMirrorFilterId, key });
  });
  idx.ownedTargets.forEach((t, key) => {
    if (!wantTargets.has(key)) diff.deleteTargets.push({ targetId: t.trafficMirrorTargetId, key });
  });
  const dup = idx.ownedDuplicates;
  for (const s of dup.sessions)
    diff.deleteSessions.push({ sessionId: s.trafficMirrorSessionId, key: keyOf(s) });
  for (const f of dup.filters) diff.deleteFilters.push({ filterId: f.trafficMirrorFilterId, key: keyOf(f) });
  for (const t of dup.targets) diff.deleteTargets.push({ targetId: t.trafficMirrorTargetId, key: keyOf(t) });
  sortKey(diff.deleteSessions);
  sortKey(diff.deleteFilters);
  sortKey(diff.deleteTargets);
  return diff;
}

/** The calls that take an owned filter to the desired one, from the inventory's copy of it. */
export function filterEdit(actual: MirrorFilter, f: DesiredFilter): FilterEdit {
  const current = [...actual.ingressRules, ...actual.egressRules];
  return {
    filterId: actual.trafficMirrorFilterId,
    key: f.key,
    rules: planRuleEdits(current, f.rules),
    addNetworkServices: f.networkServices.filter((x) => !actual.networkServices.includes(x)),
    removeNetworkServices: actual.networkServices.filter((x) => !f.networkServices.includes(x)),
    state: hashHex(
      current
        .map((r) => r.trafficMirrorFilterRuleId ?? "")
        .sort()
        .join(),
    ),
  };
}

function keyOf(x: { tags: Record<string, string> }): string {
  return x.tags[TAG_KEY] ?? "";
}

/** Whether a diff asks for nothing. */
export function isEmptyDiff(d: PlanDiff): boolean {
  return Object.values(d).every((list: unknown[]) => list.length === 0);
}

/** Number of changes in a diff. */
export function diffSize(d: PlanDiff): number {
  return (Object.values(d) as unknown[][]).reduce((n, list) => n + list.length, 0);
}

function split(rules: readonly FilterRule[]): { ingressRules: FilterRule[]; egressRules: FilterRule[] } {
  return {
    ingressRules: rules.filter((r) => r.direction === "ingress"),
    egressRules: rules.filter((r) => r.direction === "egress"),
  };
}

/**
 * Applies a diff to an inventory as AWS would (pure; new ids from a counter), for tests and
 * dry-run previews. A key names the last resource with that key tag, as in the index.
 */
export function applyDiff(inv: Ec2Inventory, diff: PlanDiff, cluster: string): Ec2Inventory {
  let seq = 0;
  const id = (prefix: string): string => `${prefix}-${(++seq).toString(16).padStart(17, "0")}`;
  // Rules count apart, so that giving them ids leaves every other id as it was.
  let ruleSeq = 0;
  const ruleId = (): string => `tmfr-${(++ruleSeq).toString(16).padStart(17, "0")}`;
  const next = structuredClone(inv);
  const gone = new Set(diff.deleteSessions.map((s) => s.sessionId));
  next.sessions = next.sessions.filter((s) => !gone.has(s.trafficMirrorSessionId));
  const targetIds = new Map<string, string>();
  for (const t of diff.createTargets) {
    const tid = id("tmt");
    targetIds.set(t.key, tid);
    const { key, owners, ...rest } = t;
    next.targets.push({ trafficMirrorTargetId: tid, ...rest, tags: ownershipTags(cluster, key, owners) });
  }
  const filterIds = new Map<string, string>();
  for (const f of diff.createFilters) {
    const fid = id("tmf");
    filterIds.set(f.key, fid);
    next.filters.push({
      trafficMirrorFilterId: fid,
      ...split(f.rules.map((r) => ({ ...r, trafficMirrorFilterRuleId: ruleId() }))),
      networkServices: f.networkServices,
      description: f.description,
      tags: ownershipTags(cluster, f.key),
    });
  }
  for (const e of diff.editFilters) {
    const f = next.filters.find((x) => x.trafficMirrorFilterId === e.filterId)!;
    // As EC2 would: each call checked, so a plan whose edits EC2 would refuse fails here.
    const rules = applyRuleEdits([...f.ingressRules, ...f.egressRules], e.rules, ruleId);
    const services = f.networkServices.filter((x) => !e.removeNetworkServices.includes(x));
    Object.assign(f, split(rules), { networkServices: [...services, ...e.addNetworkServices] });
  }
  const tid = (ref: TargetRef): string =>
    "id" in ref
      ? ref.id
      : (targetIds.get(ref.key) ??
        next.targets.findLast((t) => t.tags[TAG_KEY] === ref.key)!.trafficMirrorTargetId);
  const fid = (key: string): string =>
    filterIds.get(key) ?? next.filters.findLast((f) => f.tags[TAG_KEY] === key)!.trafficMirrorFilterId;
  for (const m of diff.modifySessions) {
    const s = next.sessions.find((x) => x.trafficMirrorSessionId === m.sessionId)!;
    if (m.target) s.trafficMirrorTargetId = tid(m.target);
    if (m.filterKey) s.trafficMirrorFilterId = fid(m.filterKey);
    if (m.sessionNumber !== undefined) s.sessionNumber = m.sessionNumber;
    if (m.packetLength !== undefined) s.packetLength = m.packetLength ?? undefined;
    if (m.virtualNetworkId !== undefined) s.virtualNetworkId = m.virtualNetworkId;
  }
  for (const s of diff.createSessions) {
    next.sessions.push({
      trafficMirrorSessionId: id("tms"),
      networkInterfaceId: s.networkInterfaceId,
      trafficMirrorTargetId: tid(s.target),
      trafficMirrorFilterId: fid(s.filterKey),
      sessionNumber: s.sessionNumber,
      ...(s.packetLength ? { packetLength: s.packetLength } : {}),
      virtualNetworkId: s.virtualNetworkId,
      description: s.description,
      tags: ownershipTags(cluster, s.key, s.owners),
    });
  }
  const fGone = new Set(diff.deleteFilters.map((f) => f.filterId));
  next.filters = next.filters.filter((f) => !fGone.has(f.trafficMirrorFilterId));
  const tGone = new Set(diff.deleteTargets.map((t) => t.targetId));
  next.targets = next.targets.filter((t) => !tGone.has(t.trafficMirrorTargetId));
  return next;
}
