/**
 * Applies a plan's diff through the EC2 port: deletes of unwanted sessions first (freeing ENI
 * slots and session numbers), then targets and filters, then session changes and creates, then
 * filter and target deletes, each step with bounded concurrency. A failed item does not stop the
 * others; the next cycle plans again from what exists.
 */
import type { Logger } from "pino";
import type { MirrorApi } from "../aws/port.ts";
import type { InventoryIndex } from "../plan/inventory-index.ts";
import type { PlanDiff, TargetRef } from "../plan/types.ts";

/** One item that failed. */
export interface ApplyFailure {
  what: string;
  error: Error;
}

/** What `applyDiff` did. */
export interface ApplyResult {
  done: number;
  failures: ApplyFailure[];
  /** Ids of what it created, by key (for status and the VNI map). */
  created: { targets: Map<string, string>; filters: Map<string, string>; sessions: Map<string, string> };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** What applying needs. */
export interface ApplyDeps {
  api: MirrorApi;
  idx: InventoryIndex;
  concurrency: number;
  log: Logger;
}

/** Applies `diff`; never throws for a single item's failure. */
export async function applyPlanDiff(diff: PlanDiff, d: ApplyDeps): Promise<ApplyResult> {
  const result: ApplyResult = {
    done: 0,
    failures: [],
    created: { targets: new Map(), filters: new Map(), sessions: new Map() },
  };
  const step = async <T>(
    items: readonly T[],
    what: (t: T) => string,
    fn: (t: T) => Promise<void>,
  ): Promise<void> =>
    pool(items, d.concurrency, async (t) => {
      try {
        await fn(t);
        result.done++;
      } catch (err) {
        result.failures.push({ what: what(t), error: err as Error });
        d.log.warn(
          {
            what: what(t),
            err: (err as Error).message,
            cause: ((err as Error).cause as Error | undefined)?.message,
          },
          "EC2 change failed",
        );
      }
    });
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
  await step(
    diff.deleteSessions,
    (s) => `deleting session ${s.key}`,
    (s) => d.api.deleteSession(s.sessionId),
  );
  await step(
    diff.createTargets,
    (t) => `creating target ${t.key}`,
    async (t) => {
      result.created.targets.set(t.key, (await d.api.createTarget(t)).trafficMirrorTargetId);
    },
  );
  await step(
    diff.createFilters,
    (f) => `creating filter ${f.key}`,
    async (f) => {
      result.created.filters.set(f.key, (await d.api.createFilter(f)).trafficMirrorFilterId);
    },
  );
  await step(
    diff.editFilters,
    (e) => `editing the rules of filter ${e.key}`,
    (e) => d.api.editFilter(e),
  );
  await step(
    diff.modifySessions,
    (m) => `modifying session ${m.key}`,
    (m) =>
      d.api.modifySession(m.sessionId, {
        trafficMirrorTargetId: m.target && targetId(m.target),
        trafficMirrorFilterId: m.filterKey && filterId(m.filterKey),
        sessionNumber: m.sessionNumber,
        packetLength: m.packetLength,
        virtualNetworkId: m.virtualNetworkId,
      }),
  );
  await step(
    diff.createSessions,
    (s) => `creating session ${s.key}`,
    async (s) => {
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
    },
  );
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
  return result;
}
