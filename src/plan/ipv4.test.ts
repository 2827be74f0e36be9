import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { contains, cover, formatBlock, normalizeRanges, parseCidr, parseIp } from "./ipv4.ts";

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
