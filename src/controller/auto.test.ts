// Where selectionMode Auto tightens: ENIs whose pods have been quiet long enough, oldest first, a
// few per cycle; an ENI whose pods change starts its quiet time again.
import { describe, expect, it } from "vitest";
import type { AutoEni } from "../plan/model.ts";
import { AutoTightener } from "./auto.ts";

const loose = (members: string): AutoEni => ({ loose: true, members });

describe("AutoTightener", () => {
  it("asks for ENIs quiet for the whole period, oldest first, at most perCycle", () => {
    const t = new AutoTightener({ quietMs: 10_000, perCycle: 2 });
    expect(t.observe(new Map([["eni-a", loose("1")]]), 0)).toBe(10_000);
    expect(
      t.observe(
        new Map([
          ["eni-a", loose("1")],
          ["eni-b", loose("1")],
          ["eni-c", loose("1")],
        ]),
        3_000,
      ),
    ).toBe(7_000);
    expect([...t.tighten]).toEqual([]);
    // eni-c's pods change: its quiet time starts again.
    const at = (ms: number) =>
      t.observe(
        new Map([
          ["eni-a", loose("1")],
          ["eni-b", loose("1")],
          ["eni-c", loose(ms < 5_000 ? "1" : "2")],
        ]),
        ms,
      );
    expect(at(6_000)).toBe(4_000);
    expect(at(13_000)).toBe(1_000); // eni-a and eni-b are due: plan again soon
    expect([...t.tighten]).toEqual(["eni-a", "eni-b"]);
  });

  it("leaves alone ENIs already pod-precise, and forgets ENIs that are gone", () => {
    const t = new AutoTightener({ quietMs: 0, perCycle: 10 });
    t.observe(
      new Map([
        ["eni-a", { loose: false, members: "1" }],
        ["eni-b", loose("1")],
      ]),
      0,
    );
    expect([...t.tighten]).toEqual(["eni-b"]);
    expect(t.observe(new Map(), 1)).toBeUndefined();
    expect([...t.tighten]).toEqual([]);
  });
});
