import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sortSmall } from "./sort.ts";

describe("sortSmall", () => {
  it("orders like the built-in stable sort, short and long lists alike", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.nat()), { maxLength: 40 }), (xs) => {
        const cmp = (a: [number, number], b: [number, number]): number => a[0] - b[0];
        // Equal keys keep their input order: the second field tells them apart.
        expect(sortSmall([...xs], cmp)).toEqual([...xs].sort(cmp));
      }),
    );
  });
});
