/**
 * The incremental planner: the same plan `planMirroring` makes, deep-equal, at a cost that grows
 * with the change rather than the cluster. It keeps a full plan's working state per ENI (sources
 * placed there, the arbitration's decisions, the sessions, filters, reports and diff made there)
 * and, for the next input, replans only the ENIs whose pods, tightening or owned EC2 records
 * changed, then assembles the plan from the kept pieces. Anything it cannot prove local (a policy,
 * target, namespace, node or EC2 instance/ENI/target that changed, a foreign session, a change to
 * the order in which targets or the account's quota are handed out, a VNI that would move) makes
 * a full plan instead. Records are compared by identity: the watch caches and the kept inventory
 * keep an object while it is unchanged. ADR 0016 has the design.
 */
import type { Ec2Inventory, MirrorFilter, MirrorSession } from "../api/inventory.ts";
import { isOwnedBy, TAG_KEY } from "../api/tags.ts";
import type { VniEntry, VniPolicy } from "../api/vni-map.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { align, remark } from "./align.ts";
import {
  assignSlot,
  candidatesOf,
  decideEni,
  emitEni,
  fit,
  isLimited,
  mostOn,
  type Candidate,
  type EniDecision,
} from "./arbitrate.ts";
import { filterEdit, sameFilter, sessionChange, type Known } from "./diff.ts";
import { byString, Hash53 } from "./hash.ts";
import {
  indexInventory,
  namesItsEni,
  ownedByEni,
  podFilterEni,
  type InventoryIndex,
  type OwnedOnEni,
} from "./inventory-index.ts";
import type { AutoEni, EniGroups, Group, GroupKeys, Member, ProgramCtx, RankedPolicy } from "./model.ts";
import { addMember, emptyOutcome, planWithState, targetReports, vniEntry, vniPolicy } from "./plan.ts";
import { eniOfPod, locatePod, podSelector, type LocateCtx } from "./sources.ts";
import type { AwsTargetSlot, ResolvedTarget } from "./targets.ts";
import type {
  DesiredFilter,
  DesiredSession,
  FilterEdit,
  Plan,
  PlanDiff,
  PlanInput,
  PolicyReport,
  SessionChange,
  SourceReport,
} from "./types.ts";

/** How a plan was made. */
export interface PlanKind {
  kind: "full" | "incremental";
  /** Why a full plan was made (absent for an incremental one). */
  reason?: string;
}

/** Options of the incremental planner. */
export interface IncrementalOptions {
  /** Above this many changed pods (or EC2 records), a full plan is cheaper (default 5,000). */
  maxChanges?: number;
}

/** A located source kept on its ENI, with what orders it among the ENI's sources. */
interface Entry {
  m: Member;
  pod: LeanPod | undefined;
  /** The pod's order mark (its position in the input), or the node source's sequence number. */
  order: number;
  pol: PolicyState;
}

/** A source a policy selected but could not locate. */
interface Failure {
  order: number;
  pod: LeanPod | undefined;
  report: SourceReport;
}

/** What one ENI contributed to one policy's report. */
interface ReportPart {
  sources: SourceReport[];
  sessionKeys: string[];
  shadowedBy: PolicyReport["shadowedBy"];
}

interface PolicyState {
  rp: RankedPolicy;
  /** Position in priority order. */
  pos: number;
  keys: GroupKeys;
  ctx: LocateCtx<RankedPolicy>;
  selects: (pod: LeanPod) => boolean;
  failures: Failure[];
  /** How many failures its report lists first. */
  failCount: number;
  /** ENIs with a part of this policy's report, in order. */
  enis: string[];
  report: PolicyReport;
}

/** A candidate's place in the global arbitration: what decides it, and what it was given. */
interface Decided {
  gid: number;
  priority: number;
  existing: boolean;
  currentTarget: string | undefined;
  overQuota: boolean;
  /** Fitted, with rules (meaningful only when not over quota). */
  eligible: boolean;
  waited: boolean;
  slot: AwsTargetSlot | undefined;
}

/** The diff an ENI contributes. */
interface EniDiff {
  deleteSessions: PlanDiff["deleteSessions"];
  createFilters: DesiredFilter[];
  editFilters: FilterEdit[];
  modifySessions: SessionChange[];
  createSessions: DesiredSession[];
  deleteFilters: PlanDiff["deleteFilters"];
}

/** What an ENI contributes to the plan. */
interface EniState {
  entries: Entry[];
  most: number;
  decided: Decided[];
  /** Sessions in key order, with their owned session, owned filter and group. */
  sessions: DesiredSession[];
  existing: (MirrorSession | undefined)[];
  filterOfSession: (MirrorFilter | undefined)[];
  groups: Group[];
  podFilters: { filter: DesiredFilter; existing: MirrorFilter | undefined }[];
  wholeKeys: string[];
  parts: Map<PolicyState, ReportPart>;
  auto: AutoEni | undefined;
  diff: EniDiff;
}

interface WholeFilter {
  filter: DesiredFilter;
  existing: MirrorFilter | undefined;
  users: number;
  create: boolean;
  edit: FilterEdit | undefined;
}

/** The index the planner keeps: the inventory's index, with its owned sessions and filters kept current. */
interface KeptIndex extends InventoryIndex {
  on: Map<string, OwnedOnEni>;
}

/** A session's VNI: kept from the session that exists (claimed) or hashed from its key (pending). */
interface VniHold {
  s: DesiredSession;
  pending: boolean;
  /** Pending although the session exists (another took its VNI first), or moved off its hash. */
  unsettled: boolean;
}

interface State {
  input: PlanInput;
  /** No incremental plan can follow (repeated policy ids, pods or owned keys). */
  stuck?: string;
  idx: KeptIndex;
  targets: Map<string, ResolvedTarget>;
  quota: ProgramCtx["quota"];
  keyOfTarget: () => Map<string, string>;
  overQuota: boolean;
  limited: boolean;
  most: number;
  policies: PolicyState[];
  podPolicies: Map<string, PolicyState[]>;
  /** Each pod's order mark: marks compare as the pods' positions in the input do. */
  marks: Map<LeanPod, number>;
  enis: Map<string, EniState>;
  /** The plan's sessions in key order, with their owned session, group and VNI map entry. */
  flat: {
    sessions: DesiredSession[];
    existing: (MirrorSession | undefined)[];
    groups: Group[];
    vni: VniEntry[];
  };
  /** The plan's filters in key order. */
  filters: DesiredFilter[];
  /** Who holds each VNI, and how many sessions hold one that a change elsewhere could move. */
  vnis: Map<number, VniHold>;
  unsettled: number;
  /** Per policy in the VNI map: the first session (key, place among its policies) that names it. */
  vniFirst: Map<PolicyState, { key: string; at: number; policy: VniPolicy }>;
  diffEnis: Set<string>;
  autoEnis: Set<string>;
  whole: Map<string, WholeFilter>;
  /** Owned sessions whose keys do not name their ENI, and owned filters that are not pod filters. */
  strayS: Map<string, MirrorSession>;
  strayF: Map<string, MirrorFilter>;
  perRef: Map<object, number>;
  /** Every policy's current report. */
  reports: Map<string, PolicyReport>;
  /** The ENIs the last plan was asked to tighten (a copy: the caller's set may change in place). */
  tighten: ReadonlySet<string>;
  plan: Plan;
}

class Fallback extends Error {}

function fallback(reason: string): never {
  throw new Fallback(reason);
}

/**
 * Plans like `planMirroring`, incrementally. One instance per controller; `plan` is called with
 * each cycle's input. Plans share unchanged parts with earlier ones: treat them as read-only.
 */
export class IncrementalPlanner {
  #s: State | undefined;
  readonly #maxChanges: number;
  /** How the last plan was made. */
  last: PlanKind = { kind: "full", reason: "first plan" };

  constructor(o: IncrementalOptions = {}) {
    this.#maxChanges = o.maxChanges ?? 5_000;
  }

  /** The plan `planMirroring(input)` makes. */
  plan(input: PlanInput): Plan {
    let reason = "first plan";
    const s = this.#s;
    if (s) {
      try {
        if (s.stuck) fallback(s.stuck);
        const plan = replan(s, input, this.#maxChanges);
        this.last = { kind: "incremental" };
        return plan;
      } catch (err) {
        // A full plan is always right: after any failure, the kept state is rebuilt from one.
        reason = err instanceof Fallback ? err.message : `incremental plan failed: ${String(err)}`;
      }
    }
    this.#s = undefined;
    this.#s = fullState(input);
    this.last = { kind: "full", reason };
    return this.#s.plan;
  }

  /** The index of the inventory the last plan read, for applying its diff. */
  get index(): InventoryIndex | undefined {
    return this.#s?.idx;
  }

  /** Forgets everything: the next plan is a full one. */
  reset(): void {
    this.#s = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The full plan, and the state kept from it

const NONE: OwnedOnEni = Object.freeze({ sessions: [], filters: [] });

function keptIndex(base: InventoryIndex): KeptIndex {
  const ownedSessions = new Map(base.ownedSessions);
  const ownedFilters = new Map(base.ownedFilters);
  const on = ownedByEni(ownedSessions, ownedFilters);
  return { ...base, ownedSessions, ownedFilters, on, ownedOn: (id) => on.get(id) ?? NONE };
}

function newEni(): EniState {
  return {
    entries: [],
    most: 0,
    decided: [],
    sessions: [],
    existing: [],
    filterOfSession: [],
    groups: [],
    podFilters: [],
    wholeKeys: [],
    parts: new Map(),
    auto: undefined,
    diff: NO_DIFF,
  };
}

// Most ENIs have no diff and most report parts no session keys or shadowing: one shared, frozen
// empty value each (15,000 ENIs' worth of empty arrays was a tenth of the kept state).
const NO_DIFF: EniDiff = Object.freeze(emptyEniDiff());
const NO_KEYS = Object.freeze([]) as unknown as string[];
const NO_SHADOWING = Object.freeze([]) as unknown as PolicyReport["shadowedBy"];

function emptyEniDiff(): EniDiff {
  return {
    deleteSessions: [],
    createFilters: [],
    editFilters: [],
    modifySessions: [],
    createSessions: [],
    deleteFilters: [],
  };
}

function sessionEni(key: string): string {
  return key.slice(8, key.length - 13);
}

function fullState(input: PlanInput): State {
  const idx = keptIndex(indexInventory(input.inventory, input.clusterName));
  const podOrder = new Map<LeanPod, number>();
  input.pods.forEach((p, i) => podOrder.set(p, i));
  const byRp = new Map<RankedPolicy, PolicyState>();
  const enis = new Map<string, EniState>();
  const eniOf = (id: string): EniState => {
    let e = enis.get(id);
    if (!e) enis.set(id, (e = newEni()));
    return e;
  };
  let seq = 0;
  const ps = planWithState(input, idx, {
    policy(rp, keys, ctx) {
      const sel = rp.policy.spec.nodeSelector ? () => false : podSelector(rp.policy);
      const pol = {
        rp,
        pos: 0,
        keys,
        ctx,
        selects: sel,
        failures: [],
        failCount: 0,
        enis: [],
        report: rp.report,
      };
      byRp.set(rp, pol);
    },
    member(m, pod) {
      eniOf(m.eni.networkInterfaceId).entries.push({
        m,
        pod,
        order: pod ? podOrder.get(pod)! : seq++,
        pol: byRp.get(m.owner)!,
      });
    },
    failure(rp, report, pod) {
      byRp.get(rp)!.failures.push({ order: pod ? podOrder.get(pod)! : seq++, pod, report });
    },
  });
  const { plan, arbitration, out } = ps;
  const s: State = {
    input,
    idx,
    targets: ps.targets,
    quota: ps.quota,
    keyOfTarget: ps.keyOfTarget,
    overQuota: arbitration.overQuota,
    limited: arbitration.limited,
    most: arbitration.most,
    policies: [],
    podPolicies: new Map(),
    marks: new Map(input.pods.map((p, i) => [p, i])),
    enis,
    flat: { sessions: [], existing: [], groups: [], vni: [] },
    filters: plan.desired.filters.slice(),
    vnis: new Map(),
    unsettled: 0,
    vniFirst: new Map(),
    diffEnis: new Set(),
    autoEnis: new Set(),
    whole: new Map(),
    strayS: new Map(),
    strayF: new Map(),
    perRef: new Map(),
    reports: new Map(plan.policies),
    tighten: new Set(input.tightenEnis ?? []),
    plan,
  };
  const ids = new Set<string>();
  ps.ranked.forEach((rp, pos) => {
    if (ids.has(rp.id)) s.stuck = "two policies with one name";
    ids.add(rp.id);
    const pol = byRp.get(rp);
    if (!pol) return;
    pol.pos = pos;
    pol.report = plan.policies.get(rp.id)!;
    pol.failCount = pol.failures.length;
    s.policies.push(pol);
    if (rp.policy.spec.nodeSelector) return;
    const list = s.podPolicies.get(rp.policy.namespace);
    if (list) list.push(pol);
    else s.podPolicies.set(rp.policy.namespace, [pol]);
  });
  if (podOrder.size !== input.pods.length) s.stuck = "a pod listed twice";
  const dup = idx.ownedDuplicates;
  if (dup.sessions.length + dup.filters.length + dup.targets.length > 0)
    s.stuck = "owned resources share a key";
  // Each ENI's sessions, pod filters, decisions and Auto state, from the runs the plan made.
  arbitration.enis.forEach((d, k) => {
    const e = eniOf(d.eniId);
    e.most = mostOn(d.eniId, d.groups.length, idx);
    e.decided = d.candidates.map((c) => decidedOf(c, s));
    const sEnd = out.sessionRuns[k + 1] ?? out.sessions.length;
    const run: number[] = [];
    for (let i = out.sessionRuns[k]!; i < sEnd; i++) run.push(i);
    run.sort((a, b) => byString(out.sessions[a]!.key, out.sessions[b]!.key));
    e.sessions = run.map((i) => out.sessions[i]!);
    e.existing = run.map((i) => out.existing[i]);
    e.filterOfSession = run.map((i) => out.existingFilterOfSession[i]);
    e.groups = run.map((i) => out.groups[i]!);
    const fEnd = out.podFilterRuns[k + 1] ?? out.podFilters.length;
    for (let i = out.podFilterRuns[k]!; i < fEnd; i++)
      e.podFilters.push({ filter: out.podFilters[i]!, existing: out.podFilterExisting[i] });
    e.podFilters.sort((a, b) => byString(a.filter.key, b.filter.key));
    e.auto = out.auto.get(d.eniId);
    if (e.auto) s.autoEnis.add(d.eniId);
  });
  for (const u of out.sharedUses) eniOf(u.eni).wholeKeys.push(u.key);
  for (const [key, w] of out.wholeFilters)
    s.whole.set(key, { filter: w.filter, existing: w.existing, users: 0, create: false, edit: undefined });
  for (const u of out.sharedUses) s.whole.get(u.key)!.users++;
  keepSessions(s, out);
  for (const pol of s.policies) splitReport(pol, s);
  for (const pol of s.policies) noteVniFirst(pol, s);
  splitDiff(s);
  s.perRef = new Map();
  for (const x of plan.desired.sessions) s.perRef.set(x.target, (s.perRef.get(x.target) ?? 0) + 1);
  return s;
}

function decidedOf(c: Candidate, s: State): Decided {
  return {
    gid: c.g.gid,
    priority: c.g.priority,
    existing: c.existing !== undefined,
    currentTarget: c.existing?.trafficMirrorTargetId,
    overQuota: c.overQuota,
    eligible: c.fitted && c.rules !== undefined,
    waited: s.overQuota || (c.rules !== undefined && isLimited(c.g.target)),
    slot: c.slot,
  };
}

/** The full plan's sessions, flat in key order, and who holds each VNI. */
function keepSessions(s: State, out: ReturnType<typeof emptyOutcome>): void {
  const at = new Map<DesiredSession, number>();
  out.sessions.forEach((x, i) => at.set(x, i));
  const claimed = new Set<number>();
  const f = s.flat;
  s.plan.desired.sessions.forEach((x, k) => {
    const i = at.get(x)!;
    const g = out.groups[i]!;
    f.sessions.push(x);
    f.existing.push(out.existing[i]);
    f.groups.push(g);
    f.vni.push(s.plan.vniMap.sessions[k]!);
    const v = out.existing[i]?.virtualNetworkId;
    if (v !== undefined && v > 0 && !claimed.has(v)) {
      claimed.add(v);
      s.vnis.set(x.virtualNetworkId, { s: x, pending: false, unsettled: false });
      return;
    }
    const unsettled = (v !== undefined && v > 0) || x.virtualNetworkId !== hashedVni(g);
    if (unsettled) s.unsettled++;
    s.vnis.set(x.virtualNetworkId, { s: x, pending: true, unsettled });
  });
}

/** Where a new session's VNI search starts: a hash of its key. */
function hashedVni(g: Group): number {
  const h = new Hash53().add("session-").add(g.eni.networkInterfaceId).add("-").add(g.hash).value();
  return (h % 0xfffffe) + 1;
}

/** The first of a policy's sessions, in key order, and its place among that session's policies. */
function noteVniFirst(pol: PolicyState, s: State): void {
  s.vniFirst.delete(pol);
  for (const id of pol.enis) {
    const keys = s.enis.get(id)!.parts.get(pol)!.sessionKeys;
    if (keys.length === 0) continue;
    const e = s.enis.get(id)!;
    let key = keys[0]!;
    for (const k of keys) if (k < key) key = k;
    const g = e.groups[e.sessions.findIndex((x) => x.key === key)]!;
    const owners: string[] = [];
    for (const m of g.members) if (!owners.includes(m.owner.id)) owners.push(m.owner.id);
    s.vniFirst.set(pol, { key, at: owners.indexOf(pol.rp.id), policy: vniPolicy(pol.rp.policy) });
    return;
  }
}

function partOf(e: EniState, pol: PolicyState): ReportPart {
  let p = e.parts.get(pol);
  if (!p) e.parts.set(pol, (p = { sources: [], sessionKeys: NO_KEYS, shadowedBy: NO_SHADOWING }));
  return p;
}

/** Cuts a policy's report of a full plan into what each ENI contributed. */
function splitReport(pol: PolicyState, s: State): void {
  const r = pol.report;
  const seen = new Set<string>();
  const at = (eni: string): ReportPart => {
    const e = s.enis.get(eni)!;
    if (!seen.has(eni)) {
      seen.add(eni);
      pol.enis.push(eni);
    }
    return partOf(e, pol);
  };
  for (const x of r.sources) if (x.networkInterfaceId !== undefined) at(x.networkInterfaceId).sources.push(x);
  for (const k of r.sessionKeys) {
    const p = at(sessionEni(k));
    if (p.sessionKeys === NO_KEYS) p.sessionKeys = [];
    p.sessionKeys.push(k);
  }
  for (const x of r.shadowedBy) {
    const p = at(x.networkInterfaceId);
    if (p.shadowedBy === NO_SHADOWING) p.shadowedBy = [];
    p.shadowedBy.push(x);
  }
  pol.enis.sort(byString);
}

/** Cuts a full plan's diff into what each ENI contributed and the rest. */
function splitDiff(s: State): void {
  const d = s.plan.diff;
  const at = (eni: string): EniDiff => {
    let e = s.enis.get(eni);
    if (!e) s.enis.set(eni, (e = newEni()));
    if (e.diff === NO_DIFF) e.diff = emptyEniDiff();
    s.diffEnis.add(eni);
    return e.diff;
  };
  for (const x of d.createSessions) at(x.networkInterfaceId).createSessions.push(x);
  for (const x of d.modifySessions) at(sessionEni(x.key)).modifySessions.push(x);
  for (const x of d.createFilters) {
    const eni = podFilterEni(x.key);
    if (eni !== undefined) at(eni).createFilters.push(x);
    else s.whole.get(x.key)!.create = true;
  }
  for (const x of d.editFilters) {
    const eni = podFilterEni(x.key);
    if (eni !== undefined) at(eni).editFilters.push(x);
    else s.whole.get(x.key)!.edit = x;
  }
  s.idx.ownedSessions.forEach((rec, key) => {
    if (!namesItsEni(key, rec.networkInterfaceId)) s.strayS.set(key, rec);
  });
  s.idx.ownedFilters.forEach((rec, key) => {
    if (podFilterEni(key) === undefined) s.strayF.set(key, rec);
  });
  for (const x of d.deleteSessions) if (!s.strayS.has(x.key)) at(sessionEni(x.key)).deleteSessions.push(x);
  for (const x of d.deleteFilters) {
    const eni = podFilterEni(x.key);
    if (eni !== undefined) at(eni).deleteFilters.push(x);
  }
}

// ---------------------------------------------------------------------------------------------
// The incremental plan

function sameList<T>(a: readonly T[], b: readonly T[], same?: (x: T, y: T) => boolean): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !same?.(a[i]!, b[i]!)) return false;
  return true;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Equal lists of small plain records (policies, targets, namespaces): by identity, else by content. */
function sameContent<T>(a: readonly T[], b: readonly T[]): boolean {
  return sameList(a, b) || JSON.stringify(a) === JSON.stringify(b);
}

function checkGlobals(prev: PlanInput, next: PlanInput): void {
  if (prev.clusterName !== next.clusterName) fallback("the cluster name changed");
  if (prev.sessionBudget !== next.sessionBudget) fallback("the session budget changed");
  if (prev.collectorKernelMode !== next.collectorKernelMode) fallback("the collector mode changed");
  if (!sameContent(prev.policies, next.policies)) fallback("a policy changed");
  if (!sameContent(prev.targets, next.targets)) fallback("a target changed");
  if (!sameContent(prev.namespaces, next.namespaces)) fallback("a namespace changed");
  // A node's status is written every few minutes: a new object, most often with the same content.
  if (!sameList(prev.nodes, next.nodes, sameJson)) fallback("a node changed");
  const a = prev.inventory;
  const b = next.inventory;
  if (!sameList(a.instances, b.instances)) fallback("an EC2 instance changed");
  if (!sameList(a.networkInterfaces, b.networkInterfaces)) fallback("an ENI changed");
  if (!sameList(a.targets, b.targets)) fallback("a mirror target changed");
}

function replan(s: State, input: PlanInput, maxChanges: number): Plan {
  const prev = s.input;
  checkGlobals(prev, input);
  const dirty = new Set<string>();
  const touched = new Map<PolicyState, Set<string>>();
  keepInventory(s, { prev: prev.inventory, next: input.inventory }, dirty, maxChanges);
  const tighten = new Set(input.tightenEnis ?? []);
  for (const id of s.tighten) if (!tighten.has(id)) dirty.add(id);
  for (const id of tighten) if (!s.tighten.has(id)) dirty.add(id);
  placePods(s, input.pods, { dirty, touched, maxChanges });
  const fresh = replanEnis(s, tighten, dirty);
  for (const [id, e] of fresh) swapEni(s, id, e, touched);
  for (const [pol, enis] of touched) {
    spliceReport(pol, s, [...enis].sort(byString));
    noteVniFirst(pol, s);
  }
  const plan = assemble(s, fresh, input);
  s.input = input;
  s.tighten = tighten;
  s.plan = plan;
  return plan;
}

/** Takes in the owned sessions and filters that changed; marks the ENIs they name. */
function keepInventory(
  s: State,
  inv: { prev: Ec2Inventory; next: Ec2Inventory },
  dirty: Set<string>,
  maxChanges: number,
): void {
  const { prev, next } = inv;
  const cluster = s.input.clusterName;
  const idx = s.idx;
  const onEni = (eni: string): OwnedOnEni => {
    let o = idx.on.get(eni);
    if (!o) idx.on.set(eni, (o = { sessions: [], filters: [] }));
    return o;
  };
  if (prev.sessions !== next.sessions) {
    const a = align(prev.sessions, next.sessions, maxChanges) ?? fallback("many EC2 sessions changed");
    const change = (rec: MirrorSession, add: boolean): void => {
      if (!isOwnedBy(rec.tags, cluster)) fallback("a session of others changed");
      const key = rec.tags[TAG_KEY];
      if (!key) return;
      if (add ? idx.ownedSessions.has(key) : idx.ownedSessions.get(key) !== rec)
        fallback("owned sessions share a key");
      if (add) idx.ownedSessions.set(key, rec);
      else idx.ownedSessions.delete(key);
      const eni = rec.networkInterfaceId;
      if (!namesItsEni(key, eni)) {
        if (add) s.strayS.set(key, rec);
        else s.strayS.delete(key);
        return;
      }
      const list = onEni(eni).sessions;
      if (add) list.push(rec);
      else list.splice(list.indexOf(rec), 1);
      dirty.add(eni);
    };
    for (const i of a.removed) change(prev.sessions[i]!, false);
    for (const j of a.added) change(next.sessions[j]!, true);
  }
  if (prev.filters !== next.filters) {
    const a = align(prev.filters, next.filters, maxChanges) ?? fallback("many EC2 filters changed");
    const change = (rec: MirrorFilter, add: boolean): void => {
      const key = rec.tags[TAG_KEY];
      if (!key || !isOwnedBy(rec.tags, cluster)) return;
      if (add ? idx.ownedFilters.has(key) : idx.ownedFilters.get(key) !== rec)
        fallback("owned filters share a key");
      if (add) idx.ownedFilters.set(key, rec);
      else idx.ownedFilters.delete(key);
      const eni = podFilterEni(key);
      if (eni === undefined) {
        if (s.whole.has(key)) fallback("a shared filter changed");
        if (add) s.strayF.set(key, rec);
        else s.strayF.delete(key);
        return;
      }
      const list = onEni(eni).filters;
      if (add) list.push(rec);
      else list.splice(list.indexOf(rec), 1);
      dirty.add(eni);
    };
    for (const i of a.removed) change(prev.filters[i]!, false);
    for (const j of a.added) change(next.filters[j]!, true);
  }
}

function byPlace(a: { pol: PolicyState; order: number }, b: { pol: PolicyState; order: number }): number {
  return a.pol.pos - b.pol.pos || a.order - b.order;
}

/** Inserts `x` into `xs`, sorted by `cmp`, after any equal. */
function insertSorted<T>(xs: T[], x: T, cmp: (a: T, b: T) => number): void {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmp(xs[mid]!, x) <= 0) lo = mid + 1;
    else hi = mid;
  }
  xs.splice(lo, 0, x);
}

/** Policies whose reports change: the ENIs whose parts changed (failures are always redone). */
type Touched = Map<PolicyState, Set<string>>;

function touch(t: Touched, pol: PolicyState, eni?: string): void {
  let enis = t.get(pol);
  if (!enis) t.set(pol, (enis = new Set()));
  if (eni !== undefined) enis.add(eni);
}

/** Takes pods that went out and places pods that came in; marks their ENIs and policies. */
function placePods(
  s: State,
  pods: readonly LeanPod[],
  c: { dirty: Set<string>; touched: Touched; maxChanges: number },
): void {
  const prev = s.input.pods;
  if (prev === pods) return;
  const a = align(prev, pods, c.maxChanges) ?? fallback("many pods changed");
  if (a.removed.length + a.added.length === 0) return;
  if (!remark(s.marks, prev, pods, a)) fallback("pods renumbered");
  for (const i of a.removed) {
    const pod = prev[i]!;
    const eni = eniOfPod(s.idx, pod);
    const e = eni && s.enis.get(eni.networkInterfaceId);
    if (e && e.entries.some((x) => x.pod === pod)) {
      e.entries = e.entries.filter((x) => x.pod !== pod);
      c.dirty.add(eni.networkInterfaceId);
    }
    for (const pol of s.podPolicies.get(pod.namespace) ?? []) {
      if (!pol.failures.some((f) => f.pod === pod)) continue;
      pol.failures = pol.failures.filter((f) => f.pod !== pod);
      touch(c.touched, pol);
    }
  }
  for (const j of a.added) {
    const pod = pods[j]!;
    const order = s.marks.get(pod)!;
    for (const pol of s.podPolicies.get(pod.namespace) ?? []) {
      if (!pol.selects(pod)) continue;
      const l = locatePod(pod, pol.ctx);
      if ("eni" in l) {
        const id = l.eni.networkInterfaceId;
        let e = s.enis.get(id);
        if (!e) s.enis.set(id, (e = newEni()));
        insertSorted(e.entries, { m: l, pod, order, pol }, byPlace);
        c.dirty.add(id);
      } else {
        insertSorted(pol.failures, { order, pod, report: l }, (x, y) => x.order - y.order);
        touch(c.touched, pol);
      }
    }
  }
}

/** What replanning an ENI made: its state, and the groups behind it. */
interface Fresh {
  e: EniState;
  decision: EniDecision | undefined;
  out: ReturnType<typeof emptyOutcome>;
}

/** Replans the dirty ENIs: their groups, their turn in the global arbitration, their output. */
function replanEnis(s: State, tighten: ReadonlySet<string>, dirty: Set<string>): Map<string, Fresh> {
  const built = new Map<
    string,
    { e: EniState; groups: Map<string, EniGroups>; wrappers: Map<PolicyState, RankedPolicy> }
  >();
  let most = s.most;
  for (const id of dirty) {
    const old = s.enis.get(id);
    const e = newEni();
    e.entries = old?.entries ?? [];
    const groups = new Map<string, EniGroups>();
    const wrappers = new Map<PolicyState, RankedPolicy>();
    for (const x of e.entries) {
      let w = wrappers.get(x.pol);
      if (!w) {
        const rp = x.pol.rp;
        const report: PolicyReport = { policy: rp.id, sources: [], sessionKeys: [], shadowedBy: [] };
        wrappers.set(x.pol, (w = { policy: rp.policy, id: rp.id, rank: rp.rank, report }));
      }
      const m = x.m;
      const clone: Member = {
        kind: m.kind,
        name: m.name,
        eni: m.eni,
        ip: m.ip,
        ipText: m.ipText,
        ip6: m.ip6,
        ip6Text: m.ip6Text,
        nodeName: m.nodeName,
        instanceId: m.instanceId,
        owner: w,
      };
      addMember(groups, clone, x.pol.keys);
    }
    e.most = groups.has(id) ? mostOn(id, groups.get(id)!.groups.length, s.idx) : 0;
    most += e.most - (old?.most ?? 0);
    built.set(id, { e, groups, wrappers });
  }
  const budget = Math.max(0, s.quota.limit - s.quota.others);
  if (most > budget !== s.overQuota) fallback("the account quota began or ceased to bind");
  s.most = most;
  const fresh = new Map<string, Fresh>();
  for (const [id, b] of built) {
    const out = emptyOutcome();
    const reports = new Map<string, PolicyReport>();
    for (const w of b.wrappers.values()) reports.set(w.id, w.report);
    const ctx: ProgramCtx = {
      idx: s.idx,
      tighten,
      quota: s.quota,
      reports,
      keyOfTarget: s.keyOfTarget,
      out,
    };
    let decision: EniDecision | undefined;
    if (b.groups.has(id)) {
      decision = decide(s, id, b.groups, ctx);
      b.e.decided = decision.candidates.map((c) => decidedOf(c, s));
      emitEni(decision, ctx);
    }
    for (const [pol, w] of b.wrappers) {
      const r = w.report;
      if (r.sources.length + r.sessionKeys.length + r.shadowedBy.length > 0)
        b.e.parts.set(pol, { sources: r.sources, sessionKeys: r.sessionKeys, shadowedBy: r.shadowedBy });
    }
    fresh.set(id, { e: b.e, decision, out });
  }
  return fresh;
}

/**
 * An ENI's candidates and their targets. Where the arbitration is global (the quota binds, or a
 * target can fill up), the ENI must present the same candidates to it as before, which then get
 * the same answers; anything else is a full plan.
 */
function decide(s: State, id: string, groups: Map<string, EniGroups>, ctx: ProgramCtx): EniDecision {
  if (!s.overQuota && !s.limited) return decideEni(id, groups, ctx);
  const d = candidatesOf(id, groups, ctx);
  const before = s.enis.get(id)?.decided ?? [];
  const same = (c: Candidate, p: Decided | undefined): boolean =>
    p !== undefined &&
    p.gid === c.g.gid &&
    p.priority === c.g.priority &&
    p.existing === (c.existing !== undefined) &&
    p.currentTarget === c.existing?.trafficMirrorTargetId;
  if (s.overQuota) {
    if (before.length !== d.candidates.length) fallback("an ENI's turn for the quota changed");
    d.candidates.forEach((c, i) => {
      const p = before[i]!;
      if (!same(c, p)) fallback("an ENI's turn for the quota changed");
      if (p.overQuota) {
        c.overQuota = true;
        return;
      }
      fit(c, ctx);
      if ((c.rules !== undefined) !== p.eligible) fallback("an ENI's turn for the quota changed");
      if (c.rules) c.slot = p.slot;
    });
    return d;
  }
  const waited = before.filter((p) => p.waited);
  let k = 0;
  for (const c of d.candidates) {
    fit(c, ctx);
    if (!c.rules) continue;
    if (!isLimited(c.g.target)) {
      assignSlot(c, ctx);
      continue;
    }
    const p = waited[k++];
    if (!same(c, p)) fallback("an ENI's turn for a target's room changed");
    c.slot = p!.slot;
  }
  if (k !== waited.length) fallback("an ENI's turn for a target's room changed");
  return d;
}

/** Replaces an ENI's contribution with a fresh one (its sessions go back in once they have VNIs). */
function swapEni(s: State, id: string, f: Fresh, touched: Touched): void {
  const old = s.enis.get(id) ?? newEni();
  const e = f.e;
  const out = f.out;
  const run = out.sessions
    .map((_, i) => i)
    .sort((a, b) => byString(out.sessions[a]!.key, out.sessions[b]!.key));
  e.sessions = run.map((i) => out.sessions[i]!);
  e.existing = run.map((i) => out.existing[i]);
  e.filterOfSession = run.map((i) => out.existingFilterOfSession[i]);
  e.groups = run.map((i) => out.groups[i]!);
  e.podFilters = out.podFilters
    .map((filter, i) => ({ filter, existing: out.podFilterExisting[i] }))
    .sort((a, b) => byString(a.filter.key, b.filter.key));
  e.auto = out.auto.get(id);
  // Shared filters: count users; a filter first used now gets its diff.
  for (const key of old.wholeKeys) {
    const w = s.whole.get(key)!;
    if (--w.users > 0) continue;
    s.whole.delete(key);
    s.filters.splice(lowerBound(s.filters, key), 1);
  }
  for (const u of out.sharedUses) {
    e.wholeKeys.push(u.key);
    let w = s.whole.get(u.key);
    if (!w) {
      const made = out.wholeFilters.get(u.key)!;
      const existing = s.idx.ownedFilters.get(u.key);
      w = { filter: made.filter, existing, users: 0, create: !existing, edit: undefined };
      if (existing && !sameFilter(existing, made.filter)) w.edit = filterEdit(existing, made.filter);
      s.whole.set(u.key, w);
      s.filters.splice(lowerBound(s.filters, u.key), 0, w.filter);
    }
    w.users++;
  }
  const fFrom = lowerBound(s.filters, `filter-${id}-`);
  const fTo = lowerBound(s.filters, `filter-${id}.`);
  s.filters.splice(fFrom, fTo - fFrom, ...e.podFilters.map((x) => x.filter));
  // The old sessions give up their VNIs (they leave the flat lists once the new ones have theirs).
  for (const x of old.sessions) {
    const hold = s.vnis.get(x.virtualNetworkId)!;
    s.vnis.delete(x.virtualNetworkId);
    if (hold.unsettled) s.unsettled--;
    if (s.unsettled > 0) fallback("a VNI freed may move another session's");
  }
  for (const x of old.sessions) s.perRef.set(x.target, s.perRef.get(x.target)! - 1);
  for (const x of e.sessions) s.perRef.set(x.target, (s.perRef.get(x.target) ?? 0) + 1);
  for (const pol of old.parts.keys()) {
    touch(touched, pol, id);
    if (!e.parts.has(pol)) pol.enis.splice(pol.enis.indexOf(id), 1);
  }
  for (const pol of e.parts.keys()) {
    touch(touched, pol, id);
    if (!old.parts.has(pol)) insertSorted(pol.enis, id, byString);
  }
  if (e.auto) s.autoEnis.add(id);
  else s.autoEnis.delete(id);
  s.enis.set(id, e);
}

/** Where `key` is, or would go, in a list sorted by key. */
function lowerBound(xs: readonly { key: string }[], key: string): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]!.key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The plan from the kept pieces, once the replanned ENIs' sessions have VNIs, diffs and entries. */
function assemble(s: State, fresh: Map<string, Fresh>, input: PlanInput): Plan {
  const ids = [...fresh.keys()].sort(byString);
  assignVnis(s, ids);
  const known: Known = { idx: s.idx, targetIds: new Map() };
  for (const id of ids) eniOutput(s, id, s.enis.get(id)!, known);
  const vniPolicies: Record<string, VniPolicy> = {};
  const first = [...s.vniFirst].sort((a, b) => byString(a[1].key, b[1].key) || a[1].at - b[1].at);
  for (const [pol, f] of first) vniPolicies[pol.rp.id] = f.policy;
  const plan: Plan = {
    desired: {
      targets: s.plan.desired.targets,
      filters: s.filters.slice(),
      sessions: s.flat.sessions.slice(),
    },
    diff: assembleDiff(s, [...s.whole.keys()].sort(byString)),
    policies: new Map(s.reports),
    targets: targetReports(s.targets, input, s.perRef),
    vniMap: { version: 1, sessions: s.flat.vni.slice(), policies: vniPolicies },
  };
  if (s.autoEnis.size > 0) {
    const auto = new Map<string, AutoEni>();
    for (const id of s.autoEnis) auto.set(id, s.enis.get(id)!.auto!);
    plan.auto = auto;
  }
  return plan;
}

/**
 * VNIs for the replanned ENIs' sessions, as a full plan gives them: in key order, sessions that
 * exist keep theirs, then new ones take the first free VNI from a hash of their key. Where the
 * answer could depend on sessions not replanned (a VNI two sessions claim, a search that passes a
 * later session's VNI), a full plan decides.
 */
function assignVnis(s: State, ids: readonly string[]): void {
  const pending: { x: DesiredSession; g: Group; lost: boolean }[] = [];
  for (const id of ids) {
    const e = s.enis.get(id)!;
    e.sessions.forEach((x, i) => {
      const v = e.existing[i]?.virtualNetworkId;
      if (v === undefined || v <= 0) {
        pending.push({ x, g: e.groups[i]!, lost: false });
        return;
      }
      const hold = s.vnis.get(v);
      if (!hold) {
        x.virtualNetworkId = v;
        s.vnis.set(v, { s: x, pending: false, unsettled: false });
        return;
      }
      if (hold.pending || hold.s.key > x.key) fallback("two sessions claim one VNI");
      pending.push({ x, g: e.groups[i]!, lost: true });
    });
  }
  for (const p of pending) {
    const start = hashedVni(p.g);
    let vni = start;
    for (let hold = s.vnis.get(vni); hold; hold = s.vnis.get(vni)) {
      if (hold.pending && hold.s.key > p.x.key) fallback("a new session's VNI search meets a later one's");
      vni = (vni % 0xfffffe) + 1;
    }
    p.x.virtualNetworkId = vni;
    const unsettled = p.lost || vni !== start;
    if (unsettled) s.unsettled++;
    s.vnis.set(vni, { s: p.x, pending: true, unsettled });
  }
}

/** A replanned ENI's diff and VNI map entries; its sessions go back into the flat lists. */
function eniOutput(s: State, id: string, e: EniState, known: Known): void {
  const d = emptyEniDiff();
  const kept = new Set<object>();
  const vni: VniEntry[] = [];
  e.sessions.forEach((x, i) => {
    const actual = e.existing[i];
    vni.push(vniEntry(x, actual, e.groups[i]!, s.idx));
    if (!actual) {
      d.createSessions.push(x);
      return;
    }
    kept.add(actual);
    const change = sessionChange(actual, x, known, e.filterOfSession[i]);
    if (change) d.modifySessions.push(change);
  });
  const at = lowerBound(s.flat.sessions, `session-${id}-`);
  const n = lowerBound(s.flat.sessions, `session-${id}.`) - at;
  s.flat.sessions.splice(at, n, ...e.sessions);
  s.flat.existing.splice(at, n, ...e.existing);
  s.flat.groups.splice(at, n, ...e.groups);
  s.flat.vni.splice(at, n, ...vni);
  for (const f of e.podFilters) {
    if (!f.existing) {
      d.createFilters.push(f.filter);
      continue;
    }
    kept.add(f.existing);
    if (!sameFilter(f.existing, f.filter)) d.editFilters.push(filterEdit(f.existing, f.filter));
  }
  const owned = s.idx.ownedOn(id);
  for (const x of owned.sessions)
    if (!kept.has(x)) d.deleteSessions.push({ sessionId: x.trafficMirrorSessionId, key: x.tags[TAG_KEY]! });
  for (const x of owned.filters)
    if (!kept.has(x)) d.deleteFilters.push({ filterId: x.trafficMirrorFilterId, key: x.tags[TAG_KEY]! });
  const any = Object.values(d).some((l: unknown[]) => l.length > 0);
  e.diff = any ? d : NO_DIFF;
  if (any) s.diffEnis.add(id);
  else s.diffEnis.delete(id);
}

function assembleDiff(s: State, wholeKeys: readonly string[]): PlanDiff {
  const prev = s.plan.diff;
  const diff: PlanDiff = {
    deleteSessions: [],
    createTargets: prev.createTargets,
    createFilters: [],
    editFilters: [],
    modifySessions: [],
    createSessions: [],
    deleteFilters: [],
    deleteTargets: prev.deleteTargets,
  };
  for (const id of s.diffEnis) {
    const d = s.enis.get(id)!.diff;
    diff.deleteSessions.push(...d.deleteSessions);
    diff.createFilters.push(...d.createFilters);
    diff.editFilters.push(...d.editFilters);
    diff.modifySessions.push(...d.modifySessions);
    diff.createSessions.push(...d.createSessions);
    diff.deleteFilters.push(...d.deleteFilters);
  }
  for (const key of wholeKeys) {
    const w = s.whole.get(key)!;
    if (w.create) diff.createFilters.push(w.filter);
    if (w.edit) diff.editFilters.push(w.edit);
  }
  s.strayS.forEach((x, key) => diff.deleteSessions.push({ sessionId: x.trafficMirrorSessionId, key }));
  s.strayF.forEach((x, key) => {
    if (!s.whole.has(key)) diff.deleteFilters.push({ filterId: x.trafficMirrorFilterId, key });
  });
  const byKey = (a: { key: string }, b: { key: string }): number => byString(a.key, b.key);
  for (const l of [
    diff.deleteSessions,
    diff.createFilters,
    diff.editFilters,
    diff.modifySessions,
    diff.createSessions,
    diff.deleteFilters,
  ])
    l.sort(byKey);
  return diff;
}

/**
 * A policy's report with the changed ENIs' parts put in place of their old ones (a report lists
 * its failures first, then each ENI's part in ENI order) and its failures redone.
 */
function spliceReport(pol: PolicyState, s: State, enis: readonly string[]): void {
  const old = pol.report;
  const head = pol.failures.map((f) => f.report);
  let sources = head.concat(old.sources.slice(pol.failCount));
  let sessionKeys = old.sessionKeys;
  let shadowedBy = old.shadowedBy;
  for (const id of enis) {
    const part = s.enis.get(id)?.parts.get(pol);
    const eniOfSource = (x: SourceReport): string => x.networkInterfaceId!;
    const [a, b] = rangeOf(sources, head.length, eniOfSource, id);
    sources = sources.slice(0, a).concat(part?.sources ?? [], sources.slice(b));
    const [c, d] = rangeOf(sessionKeys, 0, sessionEni, id);
    sessionKeys = sessionKeys.slice(0, c).concat(part?.sessionKeys ?? [], sessionKeys.slice(d));
    const [e, f] = rangeOf(shadowedBy, 0, (x) => x.networkInterfaceId, id);
    shadowedBy = shadowedBy.slice(0, e).concat(part?.shadowedBy ?? [], shadowedBy.slice(f));
  }
  pol.failCount = head.length;
  pol.report = { policy: pol.rp.id, sources, sessionKeys, shadowedBy };
  s.reports.set(pol.rp.id, pol.report);
}

/** Where the entries of ENI `id` are in `xs` from `start` on (entries in ENI order). */
function rangeOf<T>(xs: readonly T[], start: number, eni: (x: T) => string, id: string): [number, number] {
  const bound = (after: boolean): number => {
    let lo = start;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = eni(xs[mid]!);
      if (e < id || (after && e === id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return [bound(false), bound(true)];
}
