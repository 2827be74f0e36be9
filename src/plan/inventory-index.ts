/** Lookups over the EC2 inventory that the planner makes many times. */
import type {
  Ec2Inventory,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../api/inventory.ts";
import { isOwnedBy, TAG_KEY } from "../api/tags.ts";
import { normalizeRanges, parseCidr, parseIp, size, type Ranges } from "./ipv4.ts";
import { lastOf, normalizeRanges6, parseCidr6, parseIp6, type Range6 } from "./ipv6.ts";
import { sortSmall } from "./sort.ts";

/** Indexed inventory. */
export interface InventoryIndex {
  instance(id: string): Instance | undefined;
  enisOf(instanceId: string): NetworkInterface[];
  eni(id: string): NetworkInterface | undefined;
  /** The ENI holding an IPv4 address, as a secondary IP or inside a delegated prefix. */
  eniHolding(ip: number): NetworkInterface | undefined;
  /** Every address an ENI holds (private IPs and prefixes), as merged ranges. */
  heldRanges(eniId: string): Ranges;
  /** The ENI holding an IPv6 address, as one of its addresses or inside a delegated /80 prefix. */
  eniHolding6(ip: bigint): NetworkInterface | undefined;
  /**
   * Every IPv6 address an ENI holds (addresses and prefixes), as merged ranges; undefined when it
   * holds none (an IPv4-only ENI, whose filters then carry no IPv6 rules).
   */
  heldRanges6(eniId: string): readonly Range6[] | undefined;
  /** Sessions on an ENI that this cluster's operator does not own. */
  foreignSessions(eniId: string): MirrorSession[];
  /** Owned resources by their key tag. */
  ownedSessions: Map<string, MirrorSession>;
  /**
   * The owned sessions and filters of `ownedSessions` and `ownedFilters` whose keys name this ENI
   * (`session-<eni>-<hash>`, `filter-<eni>-<hash>`, the hash 12 characters), for `findOwned`. A
   * session is listed only under the ENI it is on: one whose key names another ENI (a tag edited by
   * hand) matches nothing the plan wants, so it is deleted rather than taken for that ENI's.
   */
  ownedOn(eniId: string): OwnedOnEni;
  ownedFilters: Map<string, Ec2Inventory["filters"][number]>;
  ownedTargets: Map<string, MirrorTarget>;
  /**
   * Owned resources whose key tag a later one of the same kind repeats (the later is the one in
   * the maps above): redundant copies, which the diff deletes so none is left behind.
   */
  ownedDuplicates: OwnedDuplicates;
  /** ENIs that are the ENI of some mirror target (never a source). */
  targetEnis: Set<string>;
  target(id: string): MirrorTarget | undefined;
  /** Sessions (any owner) per target id. */
  foreignSessionsOnTarget(targetId: string): MirrorSession[];
  /** How many sessions in the inventory this cluster's operator does not own. */
  foreignSessionCount: number;
}

/** Owned resources that repeat another's key. */
export interface OwnedDuplicates {
  sessions: MirrorSession[];
  filters: MirrorFilter[];
  targets: MirrorTarget[];
}

/** Owned resources whose keys name one ENI. */
export interface OwnedOnEni {
  sessions: MirrorSession[];
  filters: MirrorFilter[];
}

const NONE_ON_ENI: OwnedOnEni = Object.freeze({ sessions: [], filters: [] });

/** Length of `-<hash>` at the end of per-ENI keys. */
const HASH_TAIL = 13;

/**
 * The one of `items` whose key is `<prefix><eni>-<hash>`, the items being `ownedOn(eni)`'s: their
 * keys already name the ENI, so comparing the tail decides. The joined key is never built: a
 * freshly joined key must be flattened and hashed before a map can look it up, which at 45,000
 * lookups a plan was a tenth of its time.
 */
export function findOwned<T extends { tags: Record<string, string> }>(
  items: readonly T[],
  hash: string,
): T | undefined {
  for (const it of items) {
    const key = it.tags[TAG_KEY]!;
    if (
      key.length - hash.length - 1 > 0 &&
      key.endsWith(hash) &&
      key.charCodeAt(key.length - hash.length - 1) === 45
    )
      return it;
  }
  return undefined;
}

/** Whether an owned session's key names the ENI it is on (`session-<eni>-<hash>`). */
export function namesItsEni(key: string, eni: string): boolean {
  // Keyed by the session's own ENI (a flat string) rather than a slice of its key.
  return (
    key.length === 8 + eni.length + HASH_TAIL &&
    key.startsWith("session-") &&
    key.startsWith(eni, 8) &&
    key.charCodeAt(8 + eni.length) === 45
  );
}

/** The ENI a pod filter's key names (`filter-<eni>-<hash>`), or undefined for any other key. */
export function podFilterEni(key: string): string | undefined {
  // Pod filters only; whole-node filter keys (`filter-<14 hex>`) have no dash there.
  return key.length > 7 + HASH_TAIL &&
    key.startsWith("filter-") &&
    key.charCodeAt(key.length - HASH_TAIL) === 45
    ? key.slice(7, key.length - HASH_TAIL)
    : undefined;
}

/** Owned sessions and pod filters by the ENI their keys name (see `InventoryIndex.ownedOn`). */
export function ownedByEni(
  sessions: Map<string, MirrorSession>,
  filters: Map<string, MirrorFilter>,
): Map<string, OwnedOnEni> {
  const on = new Map<string, OwnedOnEni>();
  const at = (eni: string): OwnedOnEni => {
    let o = on.get(eni);
    if (!o) on.set(eni, (o = { sessions: [], filters: [] }));
    return o;
  };
  sessions.forEach((s, key) => {
    if (namesItsEni(key, s.networkInterfaceId)) at(s.networkInterfaceId).sessions.push(s);
  });
  filters.forEach((f, key) => {
    const eni = podFilterEni(key);
    if (eni !== undefined) at(eni).filters.push(f);
  });
  return on;
}

function group<T>(items: readonly T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    if (k === undefined) continue;
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return m;
}

/** Owned items by key; an item whose key a later one repeats goes to `duplicates`. */
function owned<T extends { tags: Record<string, string> }>(
  items: readonly T[],
  cluster: string,
  duplicates: T[],
): Map<string, T> {
  const m = new Map<string, T>();
  for (const it of items) {
    const key = it.tags[TAG_KEY];
    if (!key || !isOwnedBy(it.tags, cluster)) continue;
    const before = m.get(key);
    if (before) duplicates.push(before);
    m.set(key, it);
  }
  return m;
}

function prefixIndex(enis: readonly NetworkInterface[]): {
  ips: Map<number, NetworkInterface>;
  prefixes: Map<number, NetworkInterface>;
} {
  const ips = new Map<number, NetworkInterface>();
  const prefixes = new Map<number, NetworkInterface>();
  for (const e of enis) {
    for (const ip of e.privateIps) {
      const n = parseIp(ip);
      if (n !== undefined) ips.set(n, e);
    }
    for (const p of e.ipv4Prefixes) {
      const b = parseCidr(p);
      // Delegated IPv4 prefixes are /28; larger ones are indexed per /28 all the same.
      if (b) for (let base = b.base; base < b.base + size(b.len); base += 16) prefixes.set(base, e);
    }
  }
  return { ips, prefixes };
}

/** IPv6 prefixes are delegated as /80s: their index key is the address's top 80 bits. */
const PREFIX6_SHIFT = 48n;

/** The IPv6 side of the index, built only when some ENI holds IPv6 addresses. */
function ipv6Index(enis: readonly NetworkInterface[]): {
  holding: (ip: bigint) => NetworkInterface | undefined;
  held: (e: NetworkInterface | undefined) => readonly Range6[] | undefined;
} {
  const ips = new Map<bigint, NetworkInterface>();
  const prefixes = new Map<bigint, NetworkInterface>();
  const rangesOf = (e: NetworkInterface): [bigint, bigint][] => {
    const out: [bigint, bigint][] = [];
    for (const a of e.ipv6Addresses ?? []) {
      const n = parseIp6(a);
      if (n !== undefined) out.push([n, n]);
    }
    for (const p of e.ipv6Prefixes ?? []) {
      const b = parseCidr6(p);
      if (b) out.push([b.base, lastOf(b)]);
    }
    return out;
  };
  for (const e of enis) {
    if (!e.ipv6Addresses?.length && !e.ipv6Prefixes?.length) continue;
    for (const a of e.ipv6Addresses ?? []) {
      const n = parseIp6(a);
      if (n !== undefined) ips.set(n, e);
    }
    for (const p of e.ipv6Prefixes ?? []) {
      const b = parseCidr6(p);
      // AWS delegates /80s only (the emulator refuses other lengths); others are held, not indexed.
      if (b?.len === 80) prefixes.set(b.base >> PREFIX6_SHIFT, e);
    }
  }
  const held = new Map<string, readonly Range6[]>();
  return {
    holding: (ip) => ips.get(ip) ?? prefixes.get(ip >> PREFIX6_SHIFT),
    held: (e) => {
      if (!e || (!e.ipv6Addresses?.length && !e.ipv6Prefixes?.length)) return undefined;
      let r = held.get(e.networkInterfaceId);
      if (!r) held.set(e.networkInterfaceId, (r = normalizeRanges6(rangesOf(e))));
      return r;
    },
  };
}

/** Builds the index for one cluster's view. */
export function indexInventory(inv: Ec2Inventory, cluster: string): InventoryIndex {
  const instances = new Map(inv.instances.map((i) => [i.instanceId, i]));
  const enis = new Map(inv.networkInterfaces.map((e) => [e.networkInterfaceId, e]));
  const byInstance = group(inv.networkInterfaces, (e) => e.instanceId);
  const { ips, prefixes } = prefixIndex(inv.networkInterfaces);
  const duplicates: OwnedDuplicates = { sessions: [], filters: [], targets: [] };
  const ownedSessions = owned(inv.sessions, cluster, duplicates.sessions);
  const ownedFilters = owned(inv.filters, cluster, duplicates.filters);
  const onEni = ownedByEni(ownedSessions, ownedFilters);
  const notOwned = inv.sessions.filter((s) => !isOwnedBy(s.tags, cluster));
  const foreign = group(notOwned, (s) => s.networkInterfaceId);
  const targets = new Map(inv.targets.map((t) => [t.trafficMirrorTargetId, t]));
  const foreignOnTarget = group(notOwned, (s) => s.trafficMirrorTargetId);
  const held = new Map<string, Ranges>();
  let six: ReturnType<typeof ipv6Index> | undefined;
  const v6 = (): ReturnType<typeof ipv6Index> => (six ??= ipv6Index(inv.networkInterfaces));
  return {
    instance: (id) => instances.get(id),
    enisOf: (id) =>
      sortSmall((byInstance.get(id) ?? []).slice(), (a, b) => (a.deviceIndex ?? 0) - (b.deviceIndex ?? 0)),
    eni: (id) => enis.get(id),
    eniHolding: (ip) => ips.get(ip) ?? prefixes.get(ip - (ip % 16)),
    heldRanges(eniId) {
      let r = held.get(eniId);
      if (!r) {
        const e = enis.get(eniId);
        const ranges: [number, number][] = [];
        for (const ip of e?.privateIps ?? []) {
          const n = parseIp(ip);
          if (n !== undefined) ranges.push([n, n]);
        }
        for (const p of e?.ipv4Prefixes ?? []) {
          const b = parseCidr(p);
          if (b) ranges.push([b.base, b.base + size(b.len) - 1]);
        }
        r = normalizeRanges(ranges);
        held.set(eniId, r);
      }
      return r;
    },
    eniHolding6: (ip) => v6().holding(ip),
    heldRanges6: (id) => {
      const e = enis.get(id);
      return e?.ipv6Addresses?.length || e?.ipv6Prefixes?.length ? v6().held(e) : undefined;
    },
    foreignSessions: (id) => foreign.get(id) ?? [],
    ownedSessions,
    ownedOn: (id) => onEni.get(id) ?? NONE_ON_ENI,
    ownedFilters,
    ownedTargets: owned(inv.targets, cluster, duplicates.targets),
    ownedDuplicates: duplicates,
    targetEnis: new Set(inv.targets.flatMap((t) => (t.networkInterfaceId ? [t.networkInterfaceId] : []))),
    target: (id) => targets.get(id),
    foreignSessionsOnTarget: (id) => foreignOnTarget.get(id) ?? [],
    foreignSessionCount: notOwned.length,
  };
}

/** The instance id in an EKS providerID (`aws:///us-east-1a/i-0abc…`), if it is one. */
export function instanceIdFromProviderId(providerID: string | undefined): string | undefined {
  const m = providerID?.match(/^aws:\/\/\/[^/]*\/(i-[0-9a-f]+)$/);
  return m?.[1];
}
