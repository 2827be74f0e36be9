/** IPv4 addresses and CIDR blocks as numbers, and the covering that keeps filters pod-precise. */
import { sortSmall } from "./sort.ts";

/** A CIDR block: `base` is the network address as an unsigned 32-bit number. */
export interface Block {
  base: number;
  len: number;
}

/** Parses a dotted IPv4 address; undefined if it is not one. (A hand loop: this runs per pod per plan.) */
export function parseIp(ip: string, start = 0, end = ip.length): number | undefined {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
      if (octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + octet;
}

/** Formats a number as a dotted IPv4 address. */
export function formatIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Parses `a.b.c.d/len` (one slash, a length of one or two digits up to 32); undefined if it is
 * not an IPv4 CIDR. Read in place: every ENI's prefixes are read in each plan.
 */
export function parseCidr(cidr: string): Block | undefined {
  const slash = cidr.length - (cidr.charCodeAt(cidr.length - 3) === 47 ? 3 : 2);
  if (slash < 0 || cidr.charCodeAt(slash) !== 47 || !isDigits(cidr, slash + 1)) return undefined;
  const base = parseIp(cidr, 0, slash);
  const len = Number(cidr.slice(slash + 1));
  if (base === undefined || len > 32) return undefined;
  return { base: base - (base % size(len)), len };
}

function isDigits(s: string, from: number): boolean {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return from < s.length;
}

/** Formats a block. */
export function formatBlock(b: Block): string {
  return `${formatIp(b.base)}/${b.len}`;
}

/** Number of addresses in a block of this prefix length. */
export function size(len: number): number {
  return SIZES[len]!;
}

const SIZES = Array.from({ length: 33 }, (_, len) => 2 ** (32 - len));

/** Whether `ip` lies in `b`. */
export function contains(b: Block, ip: number): boolean {
  return ip >= b.base && ip < b.base + size(b.len);
}

/** A sorted set of address ranges [start, end] that must not be covered. */
export type Ranges = readonly (readonly [number, number])[];

/** Sorts and merges ranges. */
export function normalizeRanges(ranges: Iterable<readonly [number, number]>): [number, number][] {
  const sorted = sortSmall([...ranges], (a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [s, e] of sorted) {
    const last = out.at(-1);
    if (last && s <= last[1] + 1) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

function overlaps(ranges: Ranges, start: number, end: number): boolean {
  // Binary search for the first range ending at or after start.
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]![1] < start) lo = mid + 1;
    else hi = mid;
  }
  const r = ranges[lo];
  return r !== undefined && r[0] <= end;
}

/**
 * The fewest CIDR blocks that cover every address in `wanted` and no address in `forbidden`.
 * Traffic on an ENI always has one end on an address the ENI holds, so covering addresses the ENI
 * does not hold admits nothing extra: `forbidden` need only list the ENI's unselected addresses.
 * Top-down split of the address space: a block is taken whole when it holds no forbidden address.
 */
export function cover(wanted: readonly number[], forbidden: Ranges): Block[] {
  const sorted = isSortedDistinct(wanted) ? wanted : [...new Set(wanted)].sort((a, b) => a - b);
  const out: Block[] = [];
  const clean = (first: number, len: number): boolean => {
    const base = first - (first % size(len));
    return !overlaps(forbidden, base, base + size(len) - 1);
  };
  const walk = (len: number, from: number, to: number): void => {
    if (from >= to) return;
    const first = sorted[from]!;
    // Blocks down to `common` hold every wanted address in [from, to), so the split would leave
    // one half empty at each of those levels; jump to the largest clean one by binary search
    // (a block inside a clean block is clean).
    const common = Math.min(32, Math.clz32(first ^ sorted[to - 1]!));
    if (clean(first, common)) {
      let lo = len;
      let hi = common;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (clean(first, mid)) hi = mid;
        else lo = mid + 1;
      }
      out.push({ base: first - (first % size(lo)), len: lo });
      return;
    }
    if (common === 32) return; // a wanted address that is also forbidden: never accepted
    const half = first - (first % size(common)) + size(common + 1);
    let split = from;
    while (split < to && sorted[split]! < half) split++;
    walk(common + 1, from, split);
    walk(common + 1, split, to);
  };
  walk(0, 0, sorted.length);
  return out;
}

/** Whether `xs` is strictly ascending (so already sorted, without repeats). */
export function isSortedDistinct(xs: readonly number[]): boolean {
  for (let i = 1; i < xs.length; i++) if (!(xs[i - 1]! < xs[i]!)) return false;
  return true;
}
