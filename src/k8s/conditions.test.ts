import { describe, expect, it } from "vitest";
import { deriveReady, mergeConditions, sameStatus, type Condition } from "./conditions.ts";

const t0 = "2026-01-01T00:00:00Z";
const t1 = "2026-01-01T00:05:00Z";

describe("mergeConditions", () => {
  const stored: Condition[] = [
    {
      type: "WithinLimits",
      status: "True",
      reason: "WithinLimits",
      message: "ok",
      observedGeneration: 1,
      lastTransitionTime: t0,
    },
  ];

  it("keeps lastTransitionTime when only the message or reason changed", () => {
    const [c] = mergeConditions(
      stored,
      [{ type: "WithinLimits", status: "True", reason: "Other", message: "new", observedGeneration: 2 }],
      t1,
    );
    expect(c).toMatchObject({
      message: "new",
      reason: "Other",
      observedGeneration: 2,
      lastTransitionTime: t0,
    });
  });

  it("moves lastTransitionTime when the status changes, and stamps new conditions", () => {
    const merged = mergeConditions(
      stored,
      [
        {
          type: "WithinLimits",
          status: "False",
          reason: "EniFull",
          message: "3 sessions",
          observedGeneration: 2,
        },
        { type: "SourcesResolved", status: "True", reason: "Resolved", message: "", observedGeneration: 2 },
      ],
      t1,
    );
    expect(merged.map((c) => [c.type, c.lastTransitionTime])).toEqual([
      ["SourcesResolved", t1],
      ["WithinLimits", t1],
    ]);
  });
});

describe("deriveReady", () => {
  it("is True only when all are True, else carries the first False reason", () => {
    const ok = { status: "True" as const, message: "", observedGeneration: 3 };
    expect(deriveReady([{ ...ok, type: "A", reason: "A" }], 3).status).toBe("True");
    const r = deriveReady(
      [
        { ...ok, type: "A", reason: "A" },
        { type: "B", status: "Unknown", reason: "Pending", message: "waiting" },
        { type: "C", status: "False", reason: "EniFull", message: "no slot" },
      ],
      3,
    );
    expect(r).toMatchObject({
      status: "False",
      reason: "EniFull",
      message: "C: no slot",
      observedGeneration: 3,
    });
    expect(deriveReady([{ type: "B", status: "Unknown", reason: "Pending", message: "x" }], 1).status).toBe(
      "Unknown",
    );
  });
});

describe("sameStatus", () => {
  it("ignores key order but not values", () => {
    expect(sameStatus({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 })).toBe(true);
    expect(sameStatus({ a: 1 }, { a: 2 })).toBe(false);
    expect(sameStatus({ list: [1, 2] }, { list: [2, 1] })).toBe(false);
  });
});
