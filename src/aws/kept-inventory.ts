/**
 * The EC2 inventory kept between cycles rather than read again each one (ADR 14).
 *
 * - Writes through `api` update it from what EC2 answered (created ids and records, modified
 *   fields, deletes, the rules a filter edit made): no Describe after a write.
 * - The cluster's changes cost targeted Describes: a new node (or one whose providerID changed):
 *   its instance, its ENIs by `attachment.instance-id`, and sessions on ENIs not seen before; a pod
 *   whose IP is on none of its node's known ENIs: that node's ENIs again, one call for every such
 *   node of a cycle. A pod IP still on none after that is not asked about again until a resync.
 * - A full read (as `loadInventory`) on the first read, every `resyncMs`, and after an answer that
 *   proves the inventory wrong: any failed write but throttling (a NotFound for an id it holds, a
 *   limit reached where it saw room, an IncorrectState, a rule number taken, an unknown outcome).
 *   Sessions of others on the cluster's ENIs appear then.
 * - Records are immutable: a changed instance, ENI, session, filter or target is a new object, and
 *   an unchanged one keeps its identity across reads, full ones included; an inventory with no
 *   change is the same object as the last one. An incremental planner can diff by identity.
 * - A full read does not undo what this process wrote a moment ago and EC2 does not show yet
 *   (eventual consistency): for `graceMs` a record it made stays, and one it deleted stays gone;
 *   another full read follows once that grace has passed.
 *
 * It lives in memory: a restarted operator reads everything on its first cycle.
 */
import { isDeepStrictEqual } from "node:util";
import type {
  Ec2Inventory,
  FilterRule,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../api/inventory.ts";
import { isOwnedBy } from "../api/tags.ts";
import type { LeanNode, LeanPod } from "../k8s/lean.ts";
import { parseCidr, parseIp, size } from "../plan/ipv4.ts";
import { contains6, isIpv6Text, parseCidr6, parseIp6 } from "../plan/ipv6.ts";
import { instanceIdFromProviderId } from "../plan/inventory-index.ts";
import type { FilterEdit } from "../plan/types.ts";
import { ruleWithId } from "./ec2-adapter.ts";
import { errorCode, isThrottled } from "./errors.ts";
import { loadInventory } from "./inventory.ts";
import type {
  CreateFilterInput,
  CreateSessionInput,
  CreateTargetInput,
  MirrorApi,
  ModifySessionInput,
} from "./port.ts";

/** Why the inventory described: a full periodic read, a targeted one, or a full one after an error. */
export type DescribeReason = "resync" | "targeted" | "invalidated";

/** What a `KeptInventory` needs. */
export interface KeptInventoryOptions {
  api: MirrorApi;
  cluster: string;
  /** A full read at least this often (`TMO_RESYNC_SECONDS`). */
  resyncMs: number;
  /** How long this process's own writes win over a full read that does not show them (30 s). */
  graceMs?: number;
  /** Milliseconds, monotonic enough (tests replace it). */
  now?: () => number;
  /** Called for every Describe request the inventory makes (one or more EC2 calls: pages, batches). */
  observe?: (reason: DescribeReason) => void;
}

/** What a read needs from the cluster. */
export interface ReadInput {
  nodes: readonly LeanNode[];
  pods: readonly LeanPod[];
  /** Targets named by id in TrafficMirrorTarget specs. */
  extraTargetIds?: readonly string[];
  /** Read everything now (the periodic resync). */
  resync?: boolean;
}

type Write =
  { op: "put"; at: number; kind: Kind; record: Rec } | { op: "delete"; at: number; kind: Kind; id: string };
type Kind = "targets" | "filters" | "sessions";
type Rec = MirrorTarget | MirrorFilter | MirrorSession;

const idOf: Record<Kind, (r: Rec) => string> = {
  targets: (r) => (r as MirrorTarget).trafficMirrorTargetId,
  filters: (r) => (r as MirrorFilter).trafficMirrorFilterId,
  sessions: (r) => (r as MirrorSession).trafficMirrorSessionId,
};

/** `fresh` by id, reusing `old`'s object wherever it is equal, so unchanged records keep identity. */
function reuse<T>(old: ReadonlyMap<string, T>, fresh: readonly T[], id: (t: T) => string): Map<string, T> {
  const out = new Map<string, T>();
  for (const t of fresh) {
    const k = id(t);
    const before = old.get(k);
    out.set(k, before !== undefined && isDeepStrictEqual(before, t) ? before : t);
  }
  return out;
}

/** Whether an address (IPv4 or IPv6) is one of the ENI's, or in one of its delegated prefixes. */
function holds(eni: NetworkInterface, ip: string): boolean {
  if (isIpv6Text(ip)) return holds6(eni, ip);
  if (eni.privateIps.includes(ip)) return true;
  const n = parseIp(ip);
  if (n === undefined) return false;
  return eni.ipv4Prefixes.some((p) => {
    const b = parseCidr(p);
    return b !== undefined && n >= b.base && n < b.base + size(b.len);
  });
}

/** `holds` for an IPv6 address: compared as numbers, since one address has many spellings. */
function holds6(eni: NetworkInterface, ip: string): boolean {
  const n = parseIp6(ip);
  if (n === undefined) return false;
  if ((eni.ipv6Addresses ?? []).some((a) => parseIp6(a) === n)) return true;
  return (eni.ipv6Prefixes ?? []).some((p) => {
    const b = parseCidr6(p);
    return b !== undefined && contains6(b, n);
  });
}

/** The kept inventory; reads through `read`, writes through `api`. */
export class KeptInventory {
  /** The port to write through: what succeeds updates the inventory, what fails may invalidate it. */
  readonly api: MirrorApi;
  readonly #o: Required<Omit<KeptInventoryOptions, "observe">> & Pick<KeptInventoryOptions, "observe">;
  #instances = new Map<string, Instance>();
  #enis = new Map<string, NetworkInterface>();
  #targets = new Map<string, MirrorTarget>();
  #filters = new Map<string, MirrorFilter>();
  #sessions = new Map<string, MirrorSession>();
  /** Instance ids of the nodes the inventory covers. */
  #nodeInstances = new Set<string>();
  /** Target ids asked for and not found, not asked again until a full read. */
  #missingTargets = new Set<string>();
  /** Pod IPs per instance that a read of its ENIs did not find, not asked again until a full read. */
  #probed = new Map<string, Set<string>>();
  /** Pods whose IPs were found on their node's ENIs (a changed pod is a new object). */
  #checkedPods = new WeakSet<LeanPod>();
  #writes: Write[] = [];
  #nextFullAt = -Infinity;
  #invalid: string | undefined;
  #view: Ec2Inventory | undefined;
  /** Whether a full read has been made. */
  #loaded = false;
  #enisByInstance: Map<string, NetworkInterface[]> | undefined;

  constructor(o: KeptInventoryOptions) {
    this.#o = { graceMs: 30_000, now: () => performance.now(), ...o };
    this.api = this.#writer(o.api);
  }

  /** Why the next read is a full one, if it is for a reason other than time. */
  get invalidated(): string | undefined {
    return this.#invalid;
  }

  /** Makes the next read a full one. */
  invalidate(why: string): void {
    this.#invalid ??= why;
  }

  /** The inventory for this cycle: kept, updated by targeted Describes, or read whole. */
  async read(input: ReadInput): Promise<Ec2Inventory> {
    const now = this.#o.now();
    const instanceIds = [
      ...new Set(input.nodes.flatMap((n) => instanceIdFromProviderId(n.providerID) ?? [])),
    ].sort();
    if (!this.#loaded || this.#invalid !== undefined || input.resync || now >= this.#nextFullAt)
      await this.#full(instanceIds, input, !this.#loaded || !this.#invalid ? "resync" : "invalidated");
    else {
      try {
        await this.#targeted(instanceIds, input);
      } catch (err) {
        // What was half read is not known: the next read is a full one.
        this.invalidate(`a targeted read failed: ${(err as Error).message}`);
        throw err;
      }
    }
    return this.#snapshot();
  }

  #counting(reason: DescribeReason): MirrorApi {
    const api = this.#o.api;
    const seen = (): void => this.#o.observe?.(reason);
    return {
      ...this.api,
      describeInstances: (ids) => (seen(), api.describeInstances(ids)),
      describeNetworkInterfaces: (ids) => (seen(), api.describeNetworkInterfaces(ids)),
      describeSessionsOnInterfaces: (ids) => (seen(), api.describeSessionsOnInterfaces(ids)),
      describeOwned: () => (seen(), api.describeOwned()),
      describeTargets: (ids) => (seen(), api.describeTargets(ids)),
    };
  }

  async #full(instanceIds: string[], input: ReadInput, reason: DescribeReason): Promise<void> {
    const started = this.#o.now();
    const inv = await loadInventory(this.#counting(reason), {
      nodes: input.nodes,
      extraTargetIds: input.extraTargetIds,
    });
    this.#instances = reuse(this.#instances, inv.instances, (i) => i.instanceId);
    this.#enis = reuse(this.#enis, inv.networkInterfaces, (e) => e.networkInterfaceId);
    const targets = reuse(this.#targets, inv.targets, (t) => t.trafficMirrorTargetId);
    const filters = reuse(this.#filters, inv.filters, (f) => f.trafficMirrorFilterId);
    const sessions = reuse(this.#sessions, inv.sessions, (s) => s.trafficMirrorSessionId);
    // What this process wrote within the grace wins over a read that may not show it yet.
    const maps = { targets, filters, sessions } as Record<Kind, Map<string, Rec>>;
    const read = {
      targets: new Set(targets.keys()),
      filters: new Set(filters.keys()),
      sessions: new Set(sessions.keys()),
    };
    this.#writes = this.#writes.filter((w) => w.at > started - this.#o.graceMs);
    let overlaid = false;
    for (const w of this.#writes) {
      const id = w.op === "put" ? idOf[w.kind](w.record) : w.id;
      if (w.op === "put" && !read[w.kind].has(id)) {
        maps[w.kind].set(id, w.record);
        overlaid = true;
      } else if (w.op === "delete" && maps[w.kind].delete(id)) overlaid = true;
    }
    this.#targets = targets;
    this.#filters = filters;
    this.#sessions = sessions;
    this.#nodeInstances = new Set(instanceIds);
    this.#missingTargets = new Set((input.extraTargetIds ?? []).filter((id) => !this.#targets.has(id)));
    this.#probed.clear();
    this.#checkedPods = new WeakSet();
    this.#invalid = undefined;
    this.#loaded = true;
    // A record kept over the read is checked again once EC2 had the time to show it.
    this.#nextFullAt = started + (overlaid ? Math.min(this.#o.graceMs, this.#o.resyncMs) : this.#o.resyncMs);
    this.#changed();
  }

  async #targeted(instanceIds: string[], input: ReadInput): Promise<void> {
    const api = this.#counting("targeted");
    const added = this.#followNodes(instanceIds);
    const { reread, waiting } = this.#podsOffKnownEnis(input, new Set(added));
    if (added.length > 0 || reread.size > 0) {
      await this.#readNodes(api, added, reread);
      // A pod IP still on none of its node's ENIs is not asked about again until a full read.
      for (const w of waiting) {
        const enis = this.#enisOf(w.instance);
        const still = w.ips.filter((ip) => !enis.some((e) => holds(e, ip)));
        if (still.length === 0) continue;
        let p = this.#probed.get(w.instance);
        if (!p) this.#probed.set(w.instance, (p = new Set()));
        for (const ip of still) p.add(ip);
      }
    }
    await this.#readUnknownTargets(api, input.extraTargetIds ?? []);
  }

  /** Forgets the nodes that are gone; returns the instances of new nodes. */
  #followNodes(instanceIds: readonly string[]): string[] {
    const current = new Set(instanceIds);
    const gone = [...this.#nodeInstances].filter((id) => !current.has(id));
    if (gone.length > 0) {
      // Their instances, ENIs and others' sessions on those ENIs leave the inventory.
      const enis = new Set(gone.flatMap((id) => this.#enisOf(id).map((e) => e.networkInterfaceId)));
      for (const id of gone) {
        this.#instances.delete(id);
        this.#probed.delete(id);
      }
      for (const e of enis) this.#enis.delete(e);
      for (const [sid, s] of this.#sessions)
        if (enis.has(s.networkInterfaceId) && !isOwnedBy(s.tags, this.#o.cluster)) this.#sessions.delete(sid);
      this.#changed();
    }
    const added = instanceIds.filter((id) => !this.#nodeInstances.has(id));
    this.#nodeInstances = current;
    return added;
  }

  /** Nodes to read the ENIs of again: those with a pod whose IP is on none of their known ENIs. */
  #podsOffKnownEnis(
    input: ReadInput,
    added: ReadonlySet<string>,
  ): { reread: Set<string>; waiting: { instance: string; ips: string[] }[] } {
    const instanceOfNode = new Map(
      input.nodes.map((n) => [n.name, instanceIdFromProviderId(n.providerID)] as const),
    );
    const reread = new Set<string>();
    const waiting: { instance: string; ips: string[] }[] = [];
    for (const pod of input.pods) {
      if (this.#checkedPods.has(pod)) continue;
      const instance = pod.nodeName ? instanceOfNode.get(pod.nodeName) : undefined;
      // A new node's ENIs are read anyway, and a node not known yet may come: check them later.
      if (instance ? added.has(instance) : pod.nodeName !== undefined && !pod.hostNetwork) continue;
      const ips = pod.hostNetwork || !instance ? [] : pod.podIPs;
      const enis = instance ? this.#enisOf(instance) : [];
      const probed = instance ? this.#probed.get(instance) : undefined;
      const missing = ips.filter((ip) => !enis.some((e) => holds(e, ip)) && !probed?.has(ip));
      if (missing.length === 0) {
        this.#checkedPods.add(pod);
        continue;
      }
      reread.add(instance!);
      waiting.push({ instance: instance!, ips: missing });
    }
    return { reread, waiting };
  }

  /** New nodes' instances, their ENIs and the sessions on them; the ENIs of `reread` again. */
  async #readNodes(api: MirrorApi, added: readonly string[], reread: ReadonlySet<string>): Promise<void> {
    const [instances, enis] = await Promise.all([
      added.length > 0 ? api.describeInstances(added) : Promise.resolve([]),
      api.describeNetworkInterfaces([...added, ...reread].sort()),
    ]);
    for (const i of instances) this.#putIn(this.#instances, i.instanceId, i);
    // The ENIs read replace the instances' known ones (an ENI detached since is gone).
    const readFor = new Set([...added, ...reread]);
    const fresh = new Set(enis.map((e) => e.networkInterfaceId));
    for (const [id, e] of this.#enis)
      if (e.instanceId && readFor.has(e.instanceId) && !fresh.has(id)) this.#enis.delete(id);
    const newEnis = enis.filter((e) => !this.#enis.has(e.networkInterfaceId));
    for (const e of enis) this.#putIn(this.#enis, e.networkInterfaceId, e);
    this.#releaseElsewhere(enis);
    this.#changed();
    // Sessions already on ENIs not seen before: others' take slots.
    if (newEnis.length > 0) {
      const on = await api.describeSessionsOnInterfaces(newEnis.map((e) => e.networkInterfaceId));
      for (const x of on) this.#putIn(this.#sessions, x.trafficMirrorSessionId, x);
    }
  }

  /**
   * An address is on one ENI in a VPC: one that `fresh` holds was released by any other ENI that
   * the inventory says holds it (the CNI gave it back and another node's got it), so the planner
   * does not find the pod on the old one.
   */
  #releaseElsewhere(fresh: readonly NetworkInterface[]): void {
    const ids = new Set(fresh.map((e) => e.networkInterfaceId));
    const ips = new Set(fresh.flatMap((e) => [...e.privateIps, ...(e.ipv6Addresses ?? [])]));
    const prefixes = new Set(fresh.flatMap((e) => [...e.ipv4Prefixes, ...(e.ipv6Prefixes ?? [])]));
    const kept = (list: readonly string[] | undefined, gone: Set<string>): string[] | undefined =>
      list?.some((x) => gone.has(x)) ? list.filter((x) => !gone.has(x)) : undefined;
    for (const [id, e] of this.#enis) {
      if (ids.has(id)) continue;
      const privateIps = kept(e.privateIps, ips);
      const ipv4Prefixes = kept(e.ipv4Prefixes, prefixes);
      const ipv6Addresses = kept(e.ipv6Addresses, ips);
      const ipv6Prefixes = kept(e.ipv6Prefixes, prefixes);
      if (privateIps || ipv4Prefixes || ipv6Addresses || ipv6Prefixes)
        this.#enis.set(id, {
          ...e,
          privateIps: privateIps ?? e.privateIps,
          ipv4Prefixes: ipv4Prefixes ?? e.ipv4Prefixes,
          ...(ipv6Addresses ? { ipv6Addresses } : {}),
          ...(ipv6Prefixes ? { ipv6Prefixes } : {}),
        });
    }
  }

  /** Targets named by id, and targets of others' sessions, not known yet (as `loadInventory`). */
  async #readUnknownTargets(api: MirrorApi, extraTargetIds: readonly string[]): Promise<void> {
    const unknown = new Set<string>();
    for (const id of extraTargetIds) unknown.add(id);
    for (const x of this.#sessions.values())
      if (!isOwnedBy(x.tags, this.#o.cluster)) unknown.add(x.trafficMirrorTargetId);
    for (const id of unknown) if (this.#targets.has(id) || this.#missingTargets.has(id)) unknown.delete(id);
    if (unknown.size === 0) return;
    const found = await api.describeTargets([...unknown]);
    for (const t of found) this.#putIn(this.#targets, t.trafficMirrorTargetId, t);
    for (const id of unknown) if (!this.#targets.has(id)) this.#missingTargets.add(id);
    this.#changed();
  }

  #putIn<T>(m: Map<string, T>, id: string, t: T): void {
    const before = m.get(id);
    if (before === undefined || !isDeepStrictEqual(before, t)) m.set(id, t);
  }

  #enisOf(instanceId: string): NetworkInterface[] {
    if (!this.#enisByInstance) {
      this.#enisByInstance = new Map();
      for (const e of this.#enis.values()) {
        if (!e.instanceId) continue;
        const list = this.#enisByInstance.get(e.instanceId);
        if (list) list.push(e);
        else this.#enisByInstance.set(e.instanceId, [e]);
      }
    }
    return this.#enisByInstance.get(instanceId) ?? [];
  }

  #changed(): void {
    this.#view = undefined;
    this.#enisByInstance = undefined;
  }

  #snapshot(): Ec2Inventory {
    this.#view ??= {
      instances: [...this.#instances.values()],
      networkInterfaces: [...this.#enis.values()],
      targets: [...this.#targets.values()],
      filters: [...this.#filters.values()],
      sessions: [...this.#sessions.values()],
    };
    return this.#view;
  }

  #put(kind: Kind, record: Rec): void {
    const m = { targets: this.#targets, filters: this.#filters, sessions: this.#sessions }[kind] as Map<
      string,
      Rec
    >;
    m.set(idOf[kind](record), record);
    this.#writes.push({ op: "put", at: this.#o.now(), kind, record });
    this.#changed();
  }

  #delete(kind: Kind, id: string): void {
    const m = { targets: this.#targets, filters: this.#filters, sessions: this.#sessions }[kind];
    m.delete(id);
    this.#writes.push({ op: "delete", at: this.#o.now(), kind, id });
    this.#changed();
  }

  /** Runs a write; a failure other than throttling means the inventory may be wrong. */
  async #write<R>(what: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      const cause = (err as Error).cause ?? err;
      if (!isThrottled(cause)) this.invalidate(`${what}: ${errorCode(cause) ?? (err as Error).message}`);
      throw err;
    }
  }

  #writer(api: MirrorApi): MirrorApi {
    return {
      describeInstances: (ids) => api.describeInstances(ids),
      describeNetworkInterfaces: (ids) => api.describeNetworkInterfaces(ids),
      describeSessionsOnInterfaces: (ids) => api.describeSessionsOnInterfaces(ids),
      describeOwned: () => api.describeOwned(),
      describeTargets: (ids) => api.describeTargets(ids),
      createTarget: (t: CreateTargetInput) =>
        this.#write("create target", async () => {
          const made = await api.createTarget(t);
          this.#put("targets", made);
          return made;
        }),
      deleteTarget: (id) =>
        this.#write("delete target", async () => {
          await api.deleteTarget(id);
          this.#delete("targets", id);
        }),
      createFilter: (f: CreateFilterInput) =>
        this.#write("create filter", async () => {
          const made = await api.createFilter(f);
          this.#put("filters", made);
          return made;
        }),
      editFilter: (e: FilterEdit) =>
        this.#write("edit filter", async () => {
          const created = await api.editFilter(e);
          const before = this.#filters.get(e.filterId);
          if (before) this.#put("filters", edited(before, e, created));
          else this.invalidate(`edited filter ${e.filterId} is not in the inventory`);
          return created;
        }),
      deleteFilter: (id) =>
        this.#write("delete filter", async () => {
          await api.deleteFilter(id);
          this.#delete("filters", id);
        }),
      createSession: (s: CreateSessionInput) =>
        this.#write("create session", async () => {
          const made = await api.createSession(s);
          this.#put("sessions", made);
          return made;
        }),
      modifySession: (id: string, c: ModifySessionInput) =>
        this.#write("modify session", async () => {
          await api.modifySession(id, c);
          const before = this.#sessions.get(id);
          if (before) this.#put("sessions", modified(before, c));
          else this.invalidate(`modified session ${id} is not in the inventory`);
        }),
      deleteSession: (id) =>
        this.#write("delete session", async () => {
          await api.deleteSession(id);
          this.#delete("sessions", id);
        }),
    };
  }
}

/** A filter after an edit: rules deleted, modified (same id) and created, services changed. */
export function edited(f: MirrorFilter, e: FilterEdit, created: readonly FilterRule[]): MirrorFilter {
  let rules = [...f.ingressRules, ...f.egressRules];
  for (const x of e.rules) {
    if (x.op === "delete") rules = rules.filter((r) => r.trafficMirrorFilterRuleId !== x.ruleId);
    else if (x.op === "modify")
      rules = rules.map((r) => (r.trafficMirrorFilterRuleId === x.ruleId ? ruleWithId(x.rule, x.ruleId) : r));
  }
  rules.push(...created);
  const services = new Set(f.networkServices);
  for (const s of e.removeNetworkServices) services.delete(s);
  for (const s of e.addNetworkServices) services.add(s);
  return {
    ...f,
    ingressRules: rules.filter((r) => r.direction === "ingress"),
    egressRules: rules.filter((r) => r.direction === "egress"),
    networkServices: [...services],
  };
}

/** A session after a modify. */
export function modified(s: MirrorSession, c: ModifySessionInput): MirrorSession {
  const out: MirrorSession = {
    ...s,
    ...(c.trafficMirrorTargetId === undefined ? {} : { trafficMirrorTargetId: c.trafficMirrorTargetId }),
    ...(c.trafficMirrorFilterId === undefined ? {} : { trafficMirrorFilterId: c.trafficMirrorFilterId }),
    ...(c.sessionNumber === undefined ? {} : { sessionNumber: c.sessionNumber }),
    ...(c.virtualNetworkId === undefined ? {} : { virtualNetworkId: c.virtualNetworkId }),
  };
  if (c.packetLength === null) delete out.packetLength;
  else if (c.packetLength !== undefined) out.packetLength = c.packetLength;
  return out;
}
