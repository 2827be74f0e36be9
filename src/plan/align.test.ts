import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { align, remark, type Alignment } from "./align.ts";

interface Rec {
  n: number;
}

/** Applies random edits (insert, remove, replace, move) to a list of records, keeping identity. */
const edited = fc
  .tuple(
    fc.integer({ min: 0, max: 60 }),
    fc.array(fc.tuple(fc.constantFrom("insert", "remove", "replace", "move"), fc.nat(), fc.nat()), {
      maxLength: 12,
    }),
  )
  .map(([size, edits]) => {
    let serial = 0;
    const prev: Rec[] = Array.from({ length: size }, () => ({ n: serial++ }));
    const next = prev.slice();
    for (const [op, at, to] of edits) {
      const i = next.length === 0 ? 0 : at % next.length;
      if (op === "insert") next.splice(at % (next.length + 1), 0, { n: serial++ });
      else if (next.length === 0) continue;
      else if (op === "remove") next.splice(i, 1);
      else if (op === "replace") next[i] = { n: serial++ };
      else next.splice(to % next.length, 0, ...next.splice(i, 1));
    }
    return { prev, next };
  });

/** The records `a` says stayed, from each side: the same records in the same order. */
function kept<T>(xs: readonly T[], gone: readonly number[]): T[] {
  const out = new Set(gone);
  return xs.filter((_, i) => !out.has(i));
}

function isSortedDistinct(xs: readonly number[], below: number): boolean {
  return xs.every((x, k) => x >= 0 && x < below && (k === 0 || x > xs[k - 1]!));
}

describe("align", () => {
  it("names removed and added records so that what is left of both lists is the same, in order", () => {
    fc.assert(
      fc.property(edited, ({ prev, next }) => {
        const a = align(prev, next, Infinity)!;
        expect(isSortedDistinct(a.removed, prev.length)).toBe(true);
        expect(isSortedDistinct(a.added, next.length)).toBe(true);
        expect(kept(next, a.added)).toEqual(kept(prev, a.removed));
        const stayed = new Set(kept(prev, a.removed));
        // A record named removed is gone from the list or moved; an added one is new or moved.
        for (const i of a.removed) expect(stayed.has(prev[i]!)).toBe(false);
        for (const j of a.added) expect(stayed.has(next[j]!)).toBe(false);
      }),
    );
  });

  it("costs the change: one record appended to or removed from a long list is one change", () => {
    const prev: Rec[] = Array.from({ length: 100_000 }, (_, n) => ({ n }));
    expect(align(prev, [...prev, { n: -1 }], 1)).toEqual({ removed: [], added: [100_000] });
    expect(
      align(
        prev,
        prev.filter((_, i) => i !== 4_321),
        1,
      ),
    ).toEqual({ removed: [4_321], added: [] });
    expect(align(prev, prev.slice(1), 0)).toBeUndefined();
  });
});

describe("remark", () => {
  it("keeps marks ordered as positions are, through many rounds of edits", () => {
    fc.assert(
      fc.property(fc.array(edited, { minLength: 1, maxLength: 6 }), (rounds) => {
        // Each round edits the list the previous round left (the records are re-used by index).
        let list: Rec[] = rounds[0]!.prev;
        const marks = new Map(list.map((r, i) => [r, i]));
        for (const { prev, next } of rounds) {
          const swap = new Map(prev.map((r, i) => [r, list[i] ?? r]));
          const now = next.map((r) => swap.get(r) ?? r);
          const a: Alignment = align(list, now, Infinity)!;
          if (!remark(marks, list, now, a)) return; // marks ran out of room: the caller renumbers
          const ms = now.map((r) => marks.get(r));
          expect(ms.every((m, k) => m !== undefined && (k === 0 || m > ms[k - 1]!))).toBe(true);
          expect(marks.size).toBe(new Set(now).size);
          list = now;
        }
      }),
    );
  });

  it("says when marks can no longer be told apart (over a thousand insertions at one place)", () => {
    const first = { n: 0 };
    const last = { n: 1 };
    let list: Rec[] = [first, last];
    const marks = new Map(list.map((r, i) => [r, i]));
    let ok = true;
    for (let k = 0; k < 2_000 && ok; k++) {
      const next = [first, { n: k + 2 }, ...list.slice(1)];
      ok = remark(marks, list, next, align(list, next, Infinity)!);
      list = next;
    }
    expect(ok).toBe(false);
  });
});
