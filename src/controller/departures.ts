/**
 * Holds filter edits that only stop mirroring addresses that left, for a grace period (ADR 23). A
 * rolling restart replaces a pod by another on the same node: applied at once, the departure
 * deletes the old pod's rules and the arrival a second later creates the new pod's, four calls
 * where rewriting the rules in place takes two. Held, the departure is made in the same edit as the
 * arrival. Nothing selected waits: an edit that mirrors any address not mirrored yet is never held,
 * and a held edit goes out once no pod has left its ENI for the grace (at most three graces after
 * the first one left), even if no arrival came.
 *
 * Only addresses no pod holds may stay mirrored while an edit waits: an edit is held only if every
 * pod on the ENI (selected or not, other than pods being deleted) is mirrored alike before and
 * after it. A pod that takes a departed pod's address before the edit goes out makes it go out at
 * once. (On EKS the VPC CNI gives a released address to no pod for 30 s, ipamd's
 * `IP_COOLDOWN_PERIOD`, so that is rare; the grace is capped below it.)
 */
import { eniOfKey } from "./apply.ts";
import { rulesOf } from "../plan/diff.ts";
import type { LeanPod } from "../k8s/lean.ts";
import { onlyFreeAddressesChange } from "../plan/departures.ts";
import type { InventoryIndex } from "../plan/inventory-index.ts";
import { parseIp } from "../plan/ipv4.ts";
import type { FilterEdit, Plan, PlanDiff } from "../plan/types.ts";

/** What `DepartureHold.split` decided this cycle. */
export interface HeldDiff {
  /** The diff to apply now: the plan's, less the held edits. */
  diff: PlanDiff;
  /** Keys of the filters whose edits wait. */
  held: string[];
  /** When the first held edit is due, from now; undefined when none is held. */
  dueInMs?: number;
}

export class DepartureHold {
  readonly #graceMs: number;
  /**
   * Filter key → when its edit was first seen only narrowing, when it last changed (another pod
   * left) and what it was then; kept while it stays only narrowing.
   */
  #since = new Map<string, { first: number; last: number; edit: string }>();

  constructor(graceMs: number) {
    this.#graceMs = graceMs;
  }

  split(plan: Plan, idx: InventoryIndex, pods: readonly LeanPod[], nowMs: number): HeldDiff {
    const diff = plan.diff;
    if (this.#graceMs <= 0 || diff.editFilters.length === 0) {
      this.#since.clear();
      return { diff, held: [] };
    }
    const candidates = this.#candidates(diff, idx);
    const narrowing = candidates.size > 0 ? narrowingEdits(plan, idx, pods, candidates) : new Set<string>();
    const since = new Map<string, { first: number; last: number; edit: string }>();
    const held: string[] = [];
    let due = Infinity;
    for (const key of narrowing) {
      const edit = JSON.stringify(candidates.get(key)!.rules);
      const was = this.#since.get(key);
      const at = was
        ? { first: was.first, last: was.edit === edit ? was.last : nowMs, edit }
        : { first: nowMs, last: nowMs, edit };
      since.set(key, at);
      // Out once no pod has left the ENI for the grace, or three graces after the first left.
      const left = Math.min(at.last + this.#graceMs, at.first + 3 * this.#graceMs) - nowMs;
      if (left > 0) {
        held.push(key);
        due = Math.min(due, left);
      }
    }
    this.#since = since;
    if (held.length === 0) return { diff, held };
    const wait = new Set(held);
    return {
      diff: { ...diff, editFilters: diff.editFilters.filter((e) => !wait.has(e.key)) },
      held,
      dueInMs: due,
    };
  }

  /** Edits of one ENI's own filter, on an ENI with no session change in this diff. */
  #candidates(diff: PlanDiff, idx: InventoryIndex): Map<string, FilterEdit> {
    const busy = new Set<string>();
    for (const c of diff.createSessions) busy.add(c.networkInterfaceId);
    for (const m of diff.modifySessions) {
      const eni = idx.ownedSessions.get(m.key)?.networkInterfaceId ?? eniOfKey(m.key, "session-");
      if (eni) busy.add(eni);
    }
    const out = new Map<string, FilterEdit>();
    for (const e of diff.editFilters) {
      const eni = eniOfKey(e.key, "filter-");
      if (eni && !busy.has(eni)) out.set(e.key, e);
    }
    return out;
  }
}

/** The candidates' keys whose edits change only what happens to addresses no pod holds. */
function narrowingEdits(
  plan: Plan,
  idx: InventoryIndex,
  pods: readonly LeanPod[],
  candidates: ReadonlyMap<string, FilterEdit>,
): Set<string> {
  // The filter's ENI and node, from its sessions; a whole-node session mirrors every address.
  const eniOf = new Map<string, string>();
  const nodes = new Set<string>();
  const wholeNode = new Set<string>();
  for (const s of plan.desired.sessions) {
    if (!candidates.has(s.filterKey)) continue;
    eniOf.set(s.filterKey, s.networkInterfaceId);
    if (s.nodeName) nodes.add(s.nodeName);
    if (s.pods.length === 0) wholeNode.add(s.filterKey);
  }
  // The addresses pods hold on those ENIs (pods of the sessions' nodes only).
  const inUse = new Map<string, string[]>();
  for (const p of pods) {
    if (p.deleting || p.nodeName === undefined || !nodes.has(p.nodeName)) continue;
    for (const ip of p.podIPs) {
      const n = parseIp(ip);
      const eni = n === undefined ? undefined : idx.eniHolding(n)?.networkInterfaceId;
      if (eni === undefined) continue;
      const list = inUse.get(eni) ?? [];
      list.push(ip);
      inUse.set(eni, list);
    }
  }
  const out = new Set<string>();
  for (const f of plan.desired.filters) {
    const eni = eniOf.get(f.key);
    if (eni === undefined || wholeNode.has(f.key)) continue;
    const current = idx.ownedFilters.get(f.key);
    if (!current) continue;
    const now = { rules: rulesOf(current), networkServices: current.networkServices };
    if (onlyFreeAddressesChange(now, f, inUse.get(eni) ?? [])) out.add(f.key);
  }
  return out;
}
