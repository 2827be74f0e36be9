/**
 * `selectionMode: Auto` over time: the planner loosens an ENI's filter (selection at the
 * collector) as soon as its pods change, and tightens it to pod-precise only where asked. This
 * decides where to ask: ENIs whose selected pods have not changed for a while, the longest-quiet
 * first, a few per cycle, so tightening spends the filter-rule API budget slowly and never
 * competes with coverage of new pods.
 */
import type { AutoEni } from "../plan/model.ts";

/** When to tighten. */
export interface AutoTightenOptions {
  /** How long an ENI's selected pods must stay unchanged. */
  quietMs: number;
  /** At most this many ENIs per plan. */
  perCycle: number;
}

/** Remembers each Auto ENI's pods and since when they are unchanged. */
export class AutoTightener {
  readonly #o: AutoTightenOptions;
  #seen = new Map<string, { members: string; since: number }>();
  #next: ReadonlySet<string> = new Set();

  constructor(o: AutoTightenOptions) {
    this.#o = o;
  }

  /** ENIs the next plan may tighten. */
  get tighten(): ReadonlySet<string> {
    return this.#next;
  }

  /**
   * Takes a plan's Auto ENIs; returns in how many milliseconds to plan again so that the next quiet
   * ENI is tightened (undefined when none is waiting).
   */
  observe(auto: ReadonlyMap<string, AutoEni> | undefined, nowMs: number): number | undefined {
    const seen = new Map<string, { members: string; since: number }>();
    const quiet: { eni: string; since: number }[] = [];
    let wait: number | undefined;
    for (const [eni, a] of auto ?? []) {
      const prev = this.#seen.get(eni);
      const since = prev?.members === a.members ? prev.since : nowMs;
      seen.set(eni, { members: a.members, since });
      if (!a.loose) continue;
      const left = this.#o.quietMs - (nowMs - since);
      if (left <= 0) quiet.push({ eni, since });
      else wait = Math.min(wait ?? left, left);
    }
    this.#seen = seen;
    quiet.sort((a, b) => a.since - b.since || (a.eni < b.eni ? -1 : a.eni > b.eni ? 1 : 0));
    this.#next = new Set(quiet.slice(0, this.#o.perCycle).map((q) => q.eni));
    // ENIs to tighten now: plan again at once (a second apart, so one cycle's changes land first).
    return this.#next.size > 0 ? 1_000 : wait;
  }
}
