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

/**
 * The widest address space the covering functions below work in: addresses are numbers, exact up
 * to 2^53. IPv4 is 32 bits wide; an IPv6 ENI's addresses are mapped into windows of at most this
 * many bits (`ipv6.ts`).
 */
export const MAX_WIDTH = 52;

/** `POW2[k]` = 2^k, for block sizes in spaces of any width up to `MAX_WIDTH`. */
const POW2 = Array.from({ length: MAX_WIDTH + 1 }, (_, k) => 2 ** k);

/**
 * Length of the common prefix of `a` and `b` in a space `width` bits wide (`width` when equal).
 * Within 32 bits one `clz32`; wider spaces compare the bits above 32 first.
 */
function commonLen(a: number, b: number, width: number): number {
  if (width <= 32) return Math.clz32(a ^ b) - (32 - width);
  const hi = Math.clz32(Math.floor(a / 2 ** 32) ^ Math.floor(b / 2 ** 32));
  return hi < 32 ? hi - (64 - width) : Math.clz32((a ^ b) >>> 0) + (width - 32);
}

/** Whether `ip` lies in `b` (in a space `width` bits wide). */
export function contains(b: Block, ip: number, width = 32): boolean {
  return ip >= b.base && ip < b.base + POW2[width - b.len]!;
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
export function cover(wanted: readonly number[], forbidden: Ranges, width = 32): Block[] {
  const sorted = isSortedDistinct(wanted) ? wanted : [...new Set(wanted)].sort((a, b) => a - b);
  const out: Block[] = [];
  const span = (len: number): number => POW2[width - len]!;
  const clean = (first: number, len: number): boolean => {
    const base = first - (first % span(len));
    return !overlaps(forbidden, base, base + span(len) - 1);
  };
  const walk = (len: number, from: number, to: number): void => {
    if (from >= to) return;
    const first = sorted[from]!;
    // Blocks down to `common` hold every wanted address in [from, to), so the split would leave
    // one half empty at each of those levels; jump to the largest clean one by binary search
    // (a block inside a clean block is clean).
    const common = Math.min(width, commonLen(first, sorted[to - 1]!, width));
    if (clean(first, common)) {
      let lo = len;
      let hi = common;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (clean(first, mid)) hi = mid;
        else lo = mid + 1;
      }
      out.push({ base: first - (first % span(lo)), len: lo });
      return;
    }
    if (common === width) return; // a wanted address that is also forbidden: never accepted
    const half = first - (first % span(common)) + span(common + 1);
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

/**
 * How often the decision changes along the held addresses in order (selected or not; addresses not
 * held skipped), the ends counting as unselected; an address in both counts as unselected. A
 * prefix table's decision changes only at its entries' ends, at most twice per entry, so it needs
 * at least half this many entries: a bound that spares the planner `minimalPrefixTable` where the
 * table cannot beat an accept list (nearly every filter).
 */
export function labelChanges(selected: readonly number[], unselected: Ranges): number {
  const wanted = isSortedDistinct(selected) ? selected : [...new Set(selected)].sort((a, b) => a - b);
  let changes = 0;
  let accepting = false;
  let j = 0;
  for (const a of wanted) {
    let passed = false;
    while (j < unselected.length && unselected[j]![1] < a) {
      passed = true;
      j++;
    }
    const rejected = passed || (j < unselected.length && unselected[j]![0] <= a);
    if (rejected && accepting) {
      changes++;
      accepting = false;
    }
    if (j < unselected.length && unselected[j]![0] <= a) continue;
    if (!accepting) {
      changes++;
      accepting = true;
    }
  }
  return accepting ? changes + 1 : changes;
}

/** One entry of an ordered prefix table: the addresses of `block` that no more specific entry holds. */
export interface PrefixEntry {
  block: Block;
  accept: boolean;
}

/** A prefix table and its cost (`acceptCost` per accept entry, 1 per reject entry). */
export interface PrefixTable {
  cost: number;
  /** Entries in no particular order: they are meant to be tried most specific first. */
  entries: PrefixEntry[];
}

/** Entries of a partial solution, joined without copying (flattened once, at the end). */
type EntryTree = PrefixEntry | readonly [EntryTree, EntryTree] | undefined;

/** Costs and entries of a subtree, indexed by the action it inherits (0 reject, 1 accept). */
interface Solved {
  cost: [number, number];
  entries: [EntryTree, EntryTree];
}

/** Held address ranges of one label each, sorted, with a running count of label changes. */
interface Runs {
  starts: number[];
  ends: number[];
  accept: boolean[];
  /** `changes[i]`: how many runs before run i have another label than the run after them. */
  changes: number[];
}

function pushRun(runs: Runs, start: number, end: number, accept: boolean): void {
  const last = runs.accept.length - 1;
  if (last >= 0 && runs.accept[last] === accept && runs.ends[last]! + 1 === start) {
    runs.ends[last] = end;
    return;
  }
  const changed = last >= 0 && runs.accept[last] !== accept ? 1 : 0;
  runs.changes.push(last >= 0 ? runs.changes[last]! + changed : 0);
  runs.starts.push(start);
  runs.ends.push(end);
  runs.accept.push(accept);
}

/** `selected` (sorted, distinct) and `unselected` as runs; an address in both counts as unselected. */
function labelledRuns(selected: readonly number[], unselected: Ranges): Runs {
  const runs: Runs = { starts: [], ends: [], accept: [], changes: [] };
  let j = 0;
  for (const a of selected) {
    while (j < unselected.length && unselected[j]![1] < a) {
      pushRun(runs, unselected[j]![0], unselected[j]![1], false);
      j++;
    }
    if (j < unselected.length && unselected[j]![0] <= a) continue;
    pushRun(runs, a, a, true);
  }
  for (; j < unselected.length; j++) pushRun(runs, unselected[j]![0], unselected[j]![1], false);
  return runs;
}

/**
 * The cheapest ordered table of accept and reject CIDR entries (first match, most specific first;
 * no match rejects) that accepts every address of `selected` and rejects every address of
 * `unselected`; addresses in neither are free, since an ENI's traffic always has one end on an
 * address it holds. An accept entry costs `acceptCost` (a filter repeats the policy's rules for
 * it), a reject entry 1. This is the minimal prefix table with "don't care" addresses (ORTC,
 * Draves, King, Venkatachary and Zill, 1999), solved as a dynamic program over the binary trie
 * of the addresses: for each block, the cheapest table below it given the action inherited from
 * the nearest enclosing entry, either without an entry at the block or with one that flips it.
 * Only blocks holding addresses of both labels are split, and a block whose held addresses sit in
 * one half is skipped to the smallest block around them, so the work grows with the number of
 * held ranges, not with the addresses. Each entry is placed on the smallest
 * block around the held addresses it decides, so free addresses outside them stay unmatched.
 */
export function minimalPrefixTable(
  selected: readonly number[],
  unselected: Ranges,
  acceptCost: number,
  width = 32,
): PrefixTable {
  const wanted = isSortedDistinct(selected) ? selected : [...new Set(selected)].sort((a, b) => a - b);
  const runs = labelledRuns(wanted, unselected);
  if (runs.accept.length === 0) return { cost: 0, entries: [] };
  const costOf = [1, acceptCost] as const;
  const solve = (from: number, to: number, lo: number, hi: number): Solved => {
    const first = Math.max(runs.starts[from]!, lo);
    const last = Math.min(runs.ends[to - 1]!, hi);
    const len = Math.min(width, commonLen(first, last, width));
    const block = { base: first - (first % POW2[width - len]!), len };
    if (runs.changes[to - 1] === runs.changes[from]) {
      const label = runs.accept[from]! ? 1 : 0;
      const entry = { block, accept: label === 1 };
      return label === 1
        ? { cost: [costOf[1], 0], entries: [entry, undefined] }
        : { cost: [0, costOf[0]], entries: [undefined, entry] };
    }
    const mid = block.base + POW2[width - len - 1]!;
    let k = from;
    while (k < to && runs.starts[k]! < mid) k++;
    const left = solve(from, k, block.base, mid - 1);
    const right = solve(runs.ends[k - 1]! >= mid ? k - 1 : k, to, mid, block.base + POW2[width - len]! - 1);
    const out: Solved = { cost: [0, 0], entries: [undefined, undefined] };
    for (const inherited of [0, 1] as const) {
      const flip = inherited === 0 ? 1 : 0;
      const keep = left.cost[inherited] + right.cost[inherited];
      const flipped = costOf[flip] + left.cost[flip] + right.cost[flip];
      if (keep <= flipped) {
        out.cost[inherited] = keep;
        out.entries[inherited] = [left.entries[inherited], right.entries[inherited]];
      } else {
        out.cost[inherited] = flipped;
        out.entries[inherited] = [{ block, accept: flip === 1 }, [left.entries[flip], right.entries[flip]]];
      }
    }
    return out;
  };
  const root = solve(0, runs.accept.length, 0, POW2[width]! - 1);
  const entries: PrefixEntry[] = [];
  const flatten = (t: EntryTree): void => {
    if (t === undefined) return;
    if ("block" in t) entries.push(t);
    else {
      flatten(t[0]);
      flatten(t[1]);
    }
  };
  flatten(root.entries[0]);
  return { cost: root.cost[0], entries };
}
