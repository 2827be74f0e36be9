/**
 * The order a cycle applies its units in (ADR 15): sessions of higher-priority policies first;
 * among equals, work that arrived later first, so that a pod started during a long converge does
 * not queue behind the backlog; then by ENI.
 *
 * "Arrived" is the cycle in which a unit's content (its keys and what it makes them) was first
 * seen, and it is kept while the unit waits: units that arrive together and outnumber what one
 * cycle applies stay ahead of the older backlog in the cycles after, instead of falling back into
 * ENI order once they have waited one cycle. A unit whose content changes (another pod on its ENI)
 * arrives again. Proportional to the work pending, not to the cluster.
 */
import type { Plan, PolicyInput } from "../plan/types.ts";
import type { ApplyUnit } from "./apply.ts";

export class UnitOrder {
  /** Signatures of the units left at the end of the last cycle → the cycle each arrived in. */
  #arrived = new Map<string, number>();
  #cycle = 0;
  /** This cycle's units' signatures, made once for ordering and for `left`. */
  #signatures = new Map<ApplyUnit, string>();

  /** A unit's content, to tell across cycles whether it is the same work. */
  #signature(u: ApplyUnit): string {
    let s = this.#signatures.get(u);
    if (s === undefined) {
      s = JSON.stringify(u);
      this.#signatures.set(u, s);
    }
    return s;
  }

  /** The order of this cycle's units; call once per cycle that applies, before `left`. */
  order(plan: Plan, policies: readonly PolicyInput[]): (a: ApplyUnit, b: ApplyUnit) => number {
    const cycle = ++this.#cycle;
    this.#signatures = new Map();
    const priorityOf = new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p.spec.priority ?? 100]));
    const byKey = new Map<string, number>();
    for (const s of plan.desired.sessions) {
      const p = Math.max(0, ...s.owners.map((o) => priorityOf.get(o) ?? 0));
      byKey.set(s.key, Math.max(byKey.get(s.key) ?? 0, p));
      byKey.set(s.filterKey, Math.max(byKey.get(s.filterKey) ?? 0, p));
    }
    const rank = new Map<ApplyUnit, [number, number]>();
    const rankOf = (u: ApplyUnit): [number, number] => {
      let r = rank.get(u);
      if (!r) {
        const keys = [
          ...u.createFilters.map((f) => f.key),
          ...u.editFilters.map((e) => e.key),
          ...u.modifySessions.map((m) => m.key),
          ...u.createSessions.map((c) => c.key),
        ];
        r = [
          Math.max(0, ...keys.map((k) => byKey.get(k) ?? 0)),
          this.#arrived.get(this.#signature(u)) ?? cycle,
        ];
        rank.set(u, r);
      }
      return r;
    };
    return (a, b) => {
      const [pa, ca] = rankOf(a);
      const [pb, cb] = rankOf(b);
      if (pa !== pb) return pb - pa;
      if (ca !== cb) return cb - ca;
      return a.networkInterfaceId < b.networkInterfaceId
        ? -1
        : a.networkInterfaceId > b.networkInterfaceId
          ? 1
          : 0;
    };
  }

  /** The units this cycle left for the next (none when it applied everything or nothing). */
  left(pending: readonly ApplyUnit[]): void {
    const arrived = new Map<string, number>();
    for (const u of pending) {
      const s = this.#signature(u);
      arrived.set(s, this.#arrived.get(s) ?? this.#cycle);
    }
    this.#arrived = arrived;
    this.#signatures = new Map();
  }
}
