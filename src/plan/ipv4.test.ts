import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addressesOf,
  layoutArb,
  requestOf,
  scaleRunLayout,
  type Layout,
} from "../../test/fixtures/eni-layouts.ts";
import {
  contains,
  cover,
  formatBlock,
  labelChanges,
  minimalPrefixTable,
  normalizeRanges,
  parseCidr,
  parseIp,
  type PrefixEntry,
} from "./ipv4.ts";

describe("IPv4 parsing", () => {
  it("round-trips and rejects junk", () => {
    expect(parseIp("10.0.64.5")).toBe(10 * 2 ** 24 + 64 * 256 + 5);
    expect(parseIp("256.0.0.1")).toBeUndefined();
    expect(parseIp("10.0.0")).toBeUndefined();
    expect(formatBlock(parseCidr("10.0.64.17/28")!)).toBe("10.0.64.16/28");
    expect(parseCidr("10.0.0.0/33")).toBeUndefined();
    expect(parseCidr("10.0.0.0/8")).toEqual({ base: 10 * 2 ** 24, len: 8 });
    for (const junk of [
      "10.0.0.0",
      "10.0.0.0/",
      "10.0.0/24",
      "10.0.0.0/2a",
      "x/24",
      "10.0.0.0//4",
      "10.0.0.0/1/24",
    ])
      expect(parseCidr(junk), junk).toBeUndefined();
  });

  it("reads exactly the CIDRs a strict pattern accepts", () => {
    const strict = (cidr: string) => {
      const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr);
      const base = m ? parseIp(m[1]!) : undefined;
      const len = Number(m?.[2]);
      if (base === undefined || len > 32) return undefined;
      return { base: base - (base % 2 ** (32 - len)), len };
    };
    const piece = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom(".", "/", "", "0", "a", "-1"),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 9 }), (pieces) => {
        const text = pieces.join("");
        expect(parseCidr(text)).toEqual(strict(text));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 40 }),
        (o, len) => {
          const text = `${o.join(".")}/${len}`;
          expect(parseCidr(text)).toEqual(strict(text));
        },
      ),
    );
  });
});

describe("cover", () => {
  const ip = (s: string) => parseIp(s)!;
  it("uses one block for everything when nothing is forbidden", () => {
    expect(cover([ip("10.0.0.1"), ip("10.0.0.2")], []).map(formatBlock)).toEqual(["0.0.0.0/0"]);
  });

  it("keeps an unselected neighbour out", () => {
    const blocks = cover([ip("10.0.0.1"), ip("10.0.0.2")], [[ip("10.0.0.3"), ip("10.0.0.3")]]);
    expect(blocks.some((b) => contains(b, ip("10.0.0.3")))).toBe(false);
    expect(blocks.length).toBeLessThanOrEqual(4);
  });

  it("never covers a forbidden address and always covers a wanted one (property)", () => {
    const addr = fc.integer({ min: 0, max: 255 }).map((n) => ip("10.0.64.0") + n);
    fc.assert(
      fc.property(
        fc.uniqueArray(addr, { maxLength: 40 }),
        fc.uniqueArray(addr, { maxLength: 40 }),
        (wanted, bad) => {
          const forbidden = normalizeRanges(
            bad.filter((b) => !wanted.includes(b)).map((b) => [b, b] as const),
          );
          const blocks = cover(wanted, forbidden);
          for (const w of wanted) expect(blocks.some((b) => contains(b, w))).toBe(true);
          for (const [f] of forbidden) expect(blocks.some((b) => contains(b, f))).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("parseIp edge cases", () => {
  it.each([
    "",
    "1.2.3",
    "1.2.3.4.5",
    "1..2.3",
    "1.2.3.",
    ".1.2.3",
    "1.2.3.256",
    "1.2.3.1000",
    "a.b.c.d",
    "1.2.3.4 ",
  ])("rejects %j", (s) => expect(parseIp(s)).toBeUndefined());
  it("accepts the extremes", () => {
    expect(parseIp("0.0.0.0")).toBe(0);
    expect(parseIp("255.255.255.255")).toBe(2 ** 32 - 1);
  });
});

/** Every CIDR block inside the /27 holding some held address, as masks, most specific first. */
function candidateMasks(held: number): { mask: number; len: number; first: number }[] {
  const out: { mask: number; len: number; first: number }[] = [];
  for (let len = 32; len >= 27; len--) {
    const n = 2 ** (32 - len);
    for (let first = 0; first < 32; first += n) {
      const mask = (n === 32 ? 0xffffffff : ((1 << n) - 1) << first) >>> 0;
      if (mask & held) out.push({ mask, len, first });
    }
  }
  return out;
}

/**
 * The cheapest ordered table, by exhaustive search: every set of blocks (a first-match list of
 * prefixes is a set tried most specific first, since a block listed after one inside it shadows
 * nothing and one listed before it shadows it whole). Each block decides the held addresses no
 * more specific chosen block holds; they must be all selected (accept, `acceptCost`) or all
 * unselected (reject, 1); held addresses no block holds must be unselected. Searched
 * depth-first, most specific blocks first, pruned once a set costs `bound` or more; returns the
 * cheapest cost below `bound`, or `bound` if there is none.
 */
function bruteForceMinimum(l: Layout, acceptCost: number, bound: number): number {
  const cands = candidateMasks(l.held);
  let best = bound;
  const unsel = (l.held & ~l.selected) >>> 0;
  const walk = (i: number, covered: number, cost: number): void => {
    if (cost >= best) return;
    // A selected address still undecided needs an accept entry.
    if ((l.held & ~covered & l.selected) >>> 0 !== 0 && cost + acceptCost >= best) return;
    if (i === cands.length) {
      if ((l.held & ~covered & l.selected) >>> 0 === 0) best = cost;
      return;
    }
    walk(i + 1, covered, cost);
    const c = cands[i]!;
    const decided = (c.mask & ~covered & l.held) >>> 0;
    if (decided === 0) return; // a block deciding nothing only adds cost
    const accept = (decided & ~l.selected) >>> 0 === 0;
    if (!accept && (decided & ~unsel) >>> 0 !== 0) return;
    walk(i + 1, (covered | c.mask) >>> 0, cost + (accept ? acceptCost : 1));
  };
  walk(0, 0, 0);
  return best;
}

describe("minimalPrefixTable", () => {
  const base = parseIp("10.0.64.0")!;

  /** The action of the most specific entry holding `ip`; no entry rejects. */
  function decides(entries: readonly PrefixEntry[], ip: number): boolean {
    let best: PrefixEntry | undefined;
    for (const e of entries) if (contains(e.block, ip) && (!best || e.block.len > best.block.len)) best = e;
    return best?.accept ?? false;
  }

  it("is exact on every held address and costs no more than the exhaustive minimum (property)", () => {
    fc.assert(
      fc.property(layoutArb, fc.integer({ min: 1, max: 3 }), (l, acceptCost) => {
        const { selected, unselected } = requestOf(l, base);
        const table = minimalPrefixTable(selected, unselected, acceptCost);
        for (const a of addressesOf(l.held, base))
          expect(decides(table.entries, a)).toBe(selected.includes(a));
        // The planner's bound: a table's decision changes at most twice per entry.
        expect(Math.ceil(labelChanges(selected, unselected) / 2)).toBeLessThanOrEqual(table.entries.length);
        const counted = table.entries.reduce((n, e) => n + (e.accept ? acceptCost : 1), 0);
        expect(counted).toBe(table.cost);
        // Entries nest or are disjoint, one per block: the table is a set tried most specific first.
        expect(new Set(table.entries.map((e) => formatBlock(e.block))).size).toBe(table.entries.length);
        // Nothing cheaper exists. The search is exponential, so it looks below 6 at most: that
        // covers every table a filter of 10 rules can hold in both directions (5 entries each).
        const bound = Math.min(table.cost, 6);
        expect(bruteForceMinimum(l, acceptCost, bound)).toBe(bound);
        // The search is not blind: it finds a table as cheap as this one where it may look.
        if (table.cost < 6) expect(bruteForceMinimum(l, acceptCost, table.cost + 1)).toBe(table.cost);
      }),
      { numRuns: 400 },
    );
    // An exhaustive search per case: seconds on an idle machine, more on a busy one.
  }, 60_000);

  it("fits the scale baseline's layout (.1–.20 selected on two /28 prefixes) in four entries", () => {
    const { selected, unselected } = scaleRunLayout(base);
    const table = minimalPrefixTable(selected, unselected, 1);
    expect(table.cost).toBe(4);
    expect(cover(selected, unselected)).toHaveLength(6);
    expect(
      table.entries
        .map((e) => `${e.accept ? "accept" : "reject"} ${formatBlock(e.block)}`)
        .sort((a, b) => a.localeCompare(b)),
    ).toEqual(["accept 10.0.64.0/28", "accept 10.0.64.16/30", "accept 10.0.64.20/32", "reject 10.0.64.0/32"]);
  });

  it("puts an entry only around held addresses, so free addresses outside stay unmatched", () => {
    // Selected .1 and .3, unselected .2: the table spans .1–.3, not the /27 around them.
    const table = minimalPrefixTable([base + 1, base + 3], [[base + 2, base + 2]], 1);
    expect(table.cost).toBe(2);
    for (const e of table.entries) expect(e.block.len).toBeGreaterThanOrEqual(30);
    expect(decides(table.entries, base + 8)).toBe(false);
  });
});
