/**
 * Applies a plan's diff through the EC2 port, in units a user can see finished (ADR 15): deletes of
 * unwanted sessions first (freeing ENI slots and session numbers), then new targets and the filters
 * several ENIs share, then one unit per ENI (its filter made or edited, then its session changed or
 * made), in the order given (highest priority first), then filter and target deletes. Each step
 * runs with bounded concurrency. After a deadline no new delete or unit starts: what is left is
 * returned as pending, and the next cycle plans it again (with whatever changed meanwhile). A failed
 * item does not stop the others; the next cycle plans again from what exists.
 */
import type { Logger } from "pino";
import type { MirrorApi } from "../aws/port.ts";
import type { InventoryIndex } from "../plan/inventory-index.ts";
import type {
  DesiredFilter,
  DesiredSession,
  FilterEdit,
  PlanDiff,
  SessionChange,
  TargetRef,
} from "../plan/types.ts";

/** One item that failed. */
export interface ApplyFailure {
  what: string;
  error: Error;
}

/** The changes of one ENI, applied together: its filter, then its session. */
export interface ApplyUnit {
  networkInterfaceId: string;
  createFilters: DesiredFilter[];
  editFilters: FilterEdit[];
  modifySessions: SessionChange[];
  createSessions: DesiredSession[];
}

/** What `applyDiff` did. */
export interface ApplyResult {
  done: number;
  failures: ApplyFailure[];
  /** Ids of what it created, by key (for status and the VNI map). */
  created: { targets: Map<string, string>; filters: Map<string, string>; sessions: Map<string, string> };
  /** Units not started before the deadline. */
  pendingUnits: ApplyUnit[];
  /** Session deletes not started before the deadline. */
  pendingDeletes: number;
  /** Whether every step ran (nothing left for lack of time). */
  complete: boolean;
}

/** Runs `fn` over `items` with at most `limit` in flight; stops taking items once `more()` says no. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  more: () => boolean = () => true,
): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && more()) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return next;
}

const HASH_TAIL = 13; // `-<12 hex>` at the end of per-ENI keys

/** The ENI a per-ENI key (`filter-<eni>-<hash>`, `session-<eni>-<hash>`) names, if it names one. */
export function eniOfKey(key: string, prefix: "filter-" | "session-"): string | undefined {
  if (!key.startsWith(prefix) || key.length <= prefix.length + HASH_TAIL) return undefined;
  if (key.charCodeAt(key.length - HASH_TAIL) !== 45) return undefined;
  const eni = key.slice(prefix.length, key.length - HASH_TAIL);
  return eni.startsWith("eni-") ? eni : undefined;
}

/**
 * The diff's filter and session changes by ENI. Filters that name no ENI (a whole node's filter,
 * shared by its ENIs' sessions) come back apart, to be made before any unit.
 */
export function unitsOf(
  diff: PlanDiff,
  idx: InventoryIndex,
): { shared: Pick<ApplyUnit, "createFilters" | "editFilters">; units: ApplyUnit[] } {
  const units = new Map<string, ApplyUnit>();
  const at = (eni: string): ApplyUnit => {
    let u = units.get(eni);
    if (!u)
      units.set(
        eni,
        (u = {
          networkInterfaceId: eni,
          createFilters: [],
          editFilters: [],
          modifySessions: [],
          createSessions: [],
        }),
      );
    return u;
  };
  const shared: Pick<ApplyUnit, "createFilters" | "editFilters"> = { createFilters: [], editFilters: [] };
  for (const f of diff.createFilters) {
    const eni = eniOfKey(f.key, "filter-");
    (eni ? at(eni) : shared).createFilters.push(f);
  }
  for (const e of diff.editFilters) {
    const eni = eniOfKey(e.key, "filter-");
    (eni ? at(eni) : shared).editFilters.push(e);
  }
  for (const m of diff.modifySessions) {
    const eni = idx.ownedSessions.get(m.key)?.networkInterfaceId ?? eniOfKey(m.key, "session-") ?? "";
    at(eni).modifySessions.push(m);
  }
  for (const s of diff.createSessions) at(s.networkInterfaceId).createSessions.push(s);
  return { shared, units: [...units.values()] };
}

/** What applying needs. */
export interface ApplyDeps {
  api: MirrorApi;
  idx: InventoryIndex;
  concurrency: number;
  log: Logger;
  /** No delete or unit starts after this (ms since the epoch); the first few units always do. */
  deadline?: number;
  /** Orders the units: the first are applied first (default: by ENI id). */
  order?: (a: ApplyUnit, b: ApplyUnit) => number;
  now?: () => number;
}

/** Applies `diff`, or as much of it as the deadline allows; never throws for a single item's failure. */
export async function applyPlanDiff(diff: PlanDiff, d: ApplyDeps): Promise<ApplyResult> {
  const now = d.now ?? Date.now;
  const result: ApplyResult = {
    done: 0,
    failures: [],
    created: { targets: new Map(), filters: new Map(), sessions: new Map() },
    pendingUnits: [],
    pendingDeletes: 0,
    complete: false,
  };
  const inTime = (): boolean => d.deadline === undefined || now() < d.deadline;
  const attempt = async <T>(
    item: T,
    what: (t: T) => string,
    fn: (t: T) => Promise<void>,
  ): Promise<boolean> => {
    try {
      await fn(item);
      result.done++;
      return true;
    } catch (err) {
      result.failures.push({ what: what(item), error: err as Error });
      d.log.warn(
        {
          what: what(item),
          err: (err as Error).message,
          cause: ((err as Error).cause as Error | undefined)?.message,
        },
        "EC2 change failed",
      );
      return false;
    }
  };
  const step = <T>(
    items: readonly T[],
    what: (t: T) => string,
    fn: (t: T) => Promise<void>,
    more?: () => boolean,
  ): Promise<number> => pool(items, d.concurrency, (t) => attempt(t, what, fn).then(() => undefined), more);
  const targetId = (ref: TargetRef): string => {
    if ("id" in ref) return ref.id;
    const id = result.created.targets.get(ref.key) ?? d.idx.ownedTargets.get(ref.key)?.trafficMirrorTargetId;
    if (!id) throw new Error(`target ${ref.key} does not exist yet`);
    return id;
  };
  const filterId = (key: string): string => {
    const id = result.created.filters.get(key) ?? d.idx.ownedFilters.get(key)?.trafficMirrorFilterId;
    if (!id) throw new Error(`filter ${key} does not exist yet`);
    return id;
  };
  const createFilter = async (f: DesiredFilter): Promise<void> => {
    result.created.filters.set(f.key, (await d.api.createFilter(f)).trafficMirrorFilterId);
  };
  const editFilter = async (e: FilterEdit): Promise<void> => {
    await d.api.editFilter(e);
  };
  const modifySession = (m: SessionChange): Promise<void> =>
    d.api.modifySession(m.sessionId, {
      trafficMirrorTargetId: m.target && targetId(m.target),
      trafficMirrorFilterId: m.filterKey && filterId(m.filterKey),
      sessionNumber: m.sessionNumber,
      packetLength: m.packetLength,
      virtualNetworkId: m.virtualNetworkId,
    });
  const createSession = async (s: DesiredSession): Promise<void> => {
    const created = await d.api.createSession({
      key: s.key,
      owners: s.owners,
      networkInterfaceId: s.networkInterfaceId,
      trafficMirrorTargetId: targetId(s.target),
      trafficMirrorFilterId: filterId(s.filterKey),
      sessionNumber: s.sessionNumber,
      ...(s.packetLength ? { packetLength: s.packetLength } : {}),
      virtualNetworkId: s.virtualNetworkId,
      description: s.description,
    });
    result.created.sessions.set(s.key, created.trafficMirrorSessionId);
  };

  // Deletes first: they free the slots and numbers the units' sessions take.
  const deleted = await step(
    diff.deleteSessions,
    (s) => `deleting session ${s.key}`,
    (s) => d.api.deleteSession(s.sessionId),
    inTime,
  );
  const { shared, units } = unitsOf(diff, d.idx);
  if (d.order) units.sort(d.order);
  else units.sort((a, b) => (a.networkInterfaceId < b.networkInterfaceId ? -1 : 1));
  if (deleted < diff.deleteSessions.length) {
    result.pendingDeletes = diff.deleteSessions.length - deleted;
    result.pendingUnits = units;
    return result;
  }
  await step(
    diff.createTargets,
    (t) => `creating target ${t.key}`,
    async (t) => {
      result.created.targets.set(t.key, (await d.api.createTarget(t)).trafficMirrorTargetId);
    },
  );
  await step(shared.createFilters, (f) => `creating filter ${f.key}`, createFilter);
  await step(shared.editFilters, (e) => `editing the rules of filter ${e.key}`, editFilter);
  // Units: a few always start (progress even past the deadline), the rest while there is time.
  let started = 0;
  const ran = await pool(
    units,
    d.concurrency,
    async (u) => {
      started++;
      for (const f of u.createFilters) await attempt(f, (x) => `creating filter ${x.key}`, createFilter);
      for (const e of u.editFilters)
        await attempt(e, (x) => `editing the rules of filter ${x.key}`, editFilter);
      for (const m of u.modifySessions) await attempt(m, (x) => `modifying session ${x.key}`, modifySession);
      for (const s of u.createSessions) await attempt(s, (x) => `creating session ${x.key}`, createSession);
    },
    () => started < d.concurrency || inTime(),
  );
  if (ran < units.length) {
    result.pendingUnits = units.slice(ran);
    return result;
  }
  await step(
    diff.deleteFilters,
    (f) => `deleting filter ${f.key}`,
    (f) => d.api.deleteFilter(f.filterId),
  );
  await step(
    diff.deleteTargets,
    (t) => `deleting target ${t.key}`,
    (t) => d.api.deleteTarget(t.targetId),
  );
  result.complete = true;
  return result;
}
