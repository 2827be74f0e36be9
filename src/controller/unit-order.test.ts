import { describe, expect, it } from "vitest";
import type { Plan, PolicyInput } from "../plan/types.ts";
import type { ApplyUnit } from "./apply.ts";
import { UnitOrder } from "./unit-order.ts";

/** A unit that makes one ENI's filter and session for a policy, with its pods' rules. */
function unit(eni: string, pods = 1): ApplyUnit {
  return {
    networkInterfaceId: eni,
    createFilters: [{ key: `filter-${eni}`, rules: Array.from({ length: pods }, (_, i) => i) }],
    editFilters: [],
    modifySessions: [],
    createSessions: [{ key: `session-${eni}`, filterKey: `filter-${eni}` }],
  } as unknown as ApplyUnit;
}

const policy = (name: string, priority?: number): PolicyInput =>
  ({ namespace: "ns", name, spec: { priority } }) as unknown as PolicyInput;

/** The plan's sessions, as far as the order reads them: their keys and owners. */
function planOf(units: ApplyUnit[], ownerOf: (eni: string) => string = () => "ns/p"): Plan {
  return {
    desired: {
      sessions: units.map((u) => ({
        key: `session-${u.networkInterfaceId}`,
        filterKey: `filter-${u.networkInterfaceId}`,
        owners: [ownerOf(u.networkInterfaceId)],
      })),
    },
  } as unknown as Plan;
}

/** One cycle: orders the units, applies the first `applied`, leaves the rest; the order it used. */
function cycle(o: UnitOrder, units: ApplyUnit[], applied: number, policies = [policy("p")]): string[] {
  const sorted = [...units].sort(o.order(planOf(units), policies));
  o.left(sorted.slice(applied));
  return sorted.map((u) => u.networkInterfaceId);
}

describe("UnitOrder", () => {
  it("keeps work that arrived during a converge ahead of the backlog until it is applied", () => {
    const o = new UnitOrder();
    const backlog = ["eni-b1", "eni-b2", "eni-b3", "eni-b4", "eni-b5"].map((e) => unit(e));
    expect(cycle(o, backlog, 2)).toEqual(["eni-b1", "eni-b2", "eni-b3", "eni-b4", "eni-b5"]);
    // Three pods start on ENIs that sort last; the cycle applies two units.
    const z = ["eni-z1", "eni-z2", "eni-z3"].map((e) => unit(e));
    expect(cycle(o, [...backlog.slice(2), ...z], 2)).toEqual([
      "eni-z1",
      "eni-z2",
      "eni-z3",
      "eni-b3",
      "eni-b4",
      "eni-b5",
    ]);
    // The third new unit still goes before the backlog a cycle later; one newer still goes first.
    expect(cycle(o, [...backlog.slice(2), z[2]!, unit("eni-y1")], 1)).toEqual([
      "eni-y1",
      "eni-z3",
      "eni-b3",
      "eni-b4",
      "eni-b5",
    ]);
  });

  it("moves a waiting unit ahead when its content changes, and puts priority before arrival", () => {
    const o = new UnitOrder();
    const backlog = ["eni-b1", "eni-b2", "eni-b3"].map((e) => unit(e));
    cycle(o, backlog, 1);
    // A pod arrives on eni-b3, whose unit waits: its rules change, so it arrives again.
    expect(cycle(o, [backlog[1]!, unit("eni-b3", 2)], 0)).toEqual(["eni-b3", "eni-b2"]);
    // A unit of a higher-priority policy goes first, however old.
    const policies = [policy("low", 10), policy("high", 500)];
    const sorted = [unit("eni-b2"), unit("eni-b3", 2), unit("eni-n1")].sort(
      o.order(
        planOf([unit("eni-b2"), unit("eni-b3", 2), unit("eni-n1")], (e) =>
          e === "eni-b2" ? "ns/high" : "ns/low",
        ),
        policies,
      ),
    );
    expect(sorted.map((u) => u.networkInterfaceId)).toEqual(["eni-b2", "eni-n1", "eni-b3"]);
  });

  it("forgets what waited once a cycle leaves nothing", () => {
    const o = new UnitOrder();
    cycle(o, [unit("eni-b1"), unit("eni-b2")], 1);
    cycle(o, [unit("eni-b2")], 1);
    // eni-b2 arrives again later than eni-a1 would have: both new now, so ENI order.
    expect(cycle(o, [unit("eni-b2"), unit("eni-a1")], 0)).toEqual(["eni-a1", "eni-b2"]);
  });
});
