/**
 * IPv6 addresses and CIDR blocks as 128-bit integers, and the windows that let the IPv4 covering
 * functions (`cover`, `minimalPrefixTable`, `labelChanges` in `ipv4.ts`) work on them unchanged:
 * an ENI's selected IPv6 addresses are mapped into the smallest CIDR block around them, which on
 * EKS is inside the node's /80 prefix (48 bits), and the blocks found there are mapped back.
 */
import { MAX_WIDTH, normalizeRanges, type Block, type Ranges } from "./ipv4.ts";

/** An IPv6 CIDR block: `base` is the network address as a 128-bit integer. */
export interface Block6 {
  base: bigint;
  len: number;
}

/** An IPv6 address range [start, end], inclusive. */
export type Range6 = readonly [bigint, bigint];

const ALL = (1n << 128n) - 1n;

/** Whether a text names an IPv6 address (the family test a pod's `podIPs` entry needs). */
export function isIpv6Text(text: string): boolean {
  return text.includes(":");
}

/** Scratch groups of the parser (it runs to completion, so one set serves every call). */
const HEAD = [0, 0, 0, 0, 0, 0, 0, 0];
const TAIL = [0, 0, 0, 0, 0, 0, 0, 0];

/** The value of a hex digit's char code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 32; // lower case
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** Reads `text[from, to)` as colon-separated groups into `out`; their count, or -1. */
function groupsInto(text: string, from: number, to: number, out: number[]): number {
  if (from === to) return 0;
  let n = 0;
  let value = 0;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    if (i === to || text.charCodeAt(i) === 58) {
      if (digits === 0 || n === 8) return -1;
      out[n++] = value;
      value = 0;
      digits = 0;
      continue;
    }
    const d = hexDigit(text.charCodeAt(i));
    if (d < 0 || digits === 4) return -1;
    value = value * 16 + d;
    digits++;
  }
  return n;
}

/**
 * Parses an IPv6 address (RFC 4291 text: groups, one `::`, no zone, no embedded IPv4); undefined
 * if it is not one. By hand, without splitting: this runs for every IPv6 pod in each plan, and
 * Node has no parser that yields the number.
 */
export function parseIp6(text: string): bigint | undefined {
  const gap = text.indexOf("::");
  const g = HEAD;
  if (gap < 0) {
    if (groupsInto(text, 0, text.length, g) !== 8) return undefined;
  } else {
    if (text.indexOf("::", gap + 1) >= 0) return undefined;
    const head = groupsInto(text, 0, gap, g);
    const tail = groupsInto(text, gap + 2, text.length, TAIL);
    if (head < 0 || tail < 0 || head + tail > 7) return undefined;
    for (let k = head; k < 8 - tail; k++) g[k] = 0;
    for (let k = 0; k < tail; k++) g[8 - tail + k] = TAIL[k]!;
  }
  // Three conversions of at most 48 bits each, rather than one per group.
  const high = (g[0]! * 65536 + g[1]!) * 65536 + g[2]!;
  const middle = (g[3]! * 65536 + g[4]!) * 65536 + g[5]!;
  return (BigInt(high) << 80n) | (BigInt(middle) << 32n) | BigInt(g[6]! * 65536 + g[7]!);
}

/** Formats a 128-bit integer as RFC 5952 text (lower case, the longest run of zero groups as `::`). */
export function formatIp6(n: bigint): string {
  const high = Number(n >> 80n);
  const middle = Number((n >> 32n) & 0xffffffffffffn);
  const low = Number(n & 0xffffffffn);
  const groups = HEAD;
  groups[0] = Math.floor(high / 2 ** 32);
  groups[1] = Math.floor(high / 65536) % 65536;
  groups[2] = high % 65536;
  groups[3] = Math.floor(middle / 2 ** 32);
  groups[4] = Math.floor(middle / 65536) % 65536;
  groups[5] = middle % 65536;
  groups[6] = Math.floor(low / 65536);
  groups[7] = low % 65536;
  // The first longest run of two or more zero groups.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += "::";
      i += bestLen - 1;
      continue;
    }
    if (out !== "" && !out.endsWith(":")) out += ":";
    out += groups[i]!.toString(16);
  }
  return out;
}

/** Parses `addr/len` (len 0–128); undefined if it is not an IPv6 CIDR. The base is aligned. */
export function parseCidr6(cidr: string): Block6 | undefined {
  const slash = cidr.indexOf("/");
  if (slash < 0 || !/^[0-9]{1,3}$/.test(cidr.slice(slash + 1))) return undefined;
  const base = parseIp6(cidr.slice(0, slash));
  const len = Number(cidr.slice(slash + 1));
  if (base === undefined || len > 128) return undefined;
  return { base: base & ~hostMask(len) & ALL, len };
}

function hostMask(len: number): bigint {
  return (1n << BigInt(128 - len)) - 1n;
}

/** Formats a block. */
export function formatBlock6(b: Block6): string {
  return `${formatIp6(b.base)}/${b.len}`;
}

/** The last address of a block. */
export function lastOf(b: Block6): bigint {
  return b.base | hostMask(b.len);
}

/** Whether `ip` lies in `b`. */
export function contains6(b: Block6, ip: bigint): boolean {
  return ip >= b.base && ip <= lastOf(b);
}

/** Sorts and merges IPv6 ranges. */
export function normalizeRanges6(ranges: Iterable<Range6>): [bigint, bigint][] {
  const sorted = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [s, e] of sorted) {
    const last = out.at(-1);
    if (last && s <= last[1] + 1n) last[1] = last[1] > e ? last[1] : e;
    else out.push([s, e]);
  }
  return out;
}

/**
 * A block of the IPv6 space small enough (at most `MAX_WIDTH` bits of host part) for the number
 * arithmetic of `ipv4.ts`, with an ENI's selected and unselected addresses inside it as offsets.
 */
export interface Window {
  /** The block: offsets are counted from its base, block lengths from its length. */
  block: Block6;
  /** Host bits of the block: the `width` the covering functions take. */
  width: number;
  /** Selected addresses, as sorted distinct offsets. */
  selected: number[];
  /** Unselected held addresses inside the block, as merged offset ranges. */
  unselected: Ranges;
}

function commonLen6(a: bigint, b: bigint): number {
  const x = a ^ b;
  return x === 0n ? 128 : 128 - x.toString(2).length;
}

/**
 * The windows that hold `selected` (sorted, distinct): one block around them all when it is at
 * most `MAX_WIDTH` bits wide (always so on EKS, where pods' addresses come from the node's /80
 * prefix), otherwise its two halves, each split again the same way. Unselected addresses outside
 * every window matter to no rule: the rules made in a window match only addresses inside it.
 * A block taken whole by `cover` never spans two windows unless the block around both halves
 * held no unselected address, which `split` checks first, so the accept list stays the fewest.
 */
export function windowsOf(selected: readonly bigint[], unselected: readonly Range6[]): Window[] {
  const out: Window[] = [];
  const walk = (from: number, to: number): void => {
    const first = selected[from]!;
    const len = commonLen6(first, selected[to - 1]!);
    const block = { base: first & ~hostMask(len) & ALL, len };
    if (128 - len <= MAX_WIDTH || !holdsAny(unselected, block)) {
      out.push(windowOf(block, selected.slice(from, to), unselected));
      return;
    }
    const half = block.base | (1n << BigInt(127 - len));
    let split = from;
    while (split < to && selected[split]! < half) split++;
    walk(from, split);
    walk(split, to);
  };
  if (selected.length > 0) walk(0, selected.length);
  return out;
}

function holdsAny(ranges: readonly Range6[], b: Block6): boolean {
  const last = lastOf(b);
  return ranges.some(([s, e]) => s <= last && e >= b.base);
}

function windowOf(block: Block6, selected: readonly bigint[], unselected: readonly Range6[]): Window {
  if (128 - block.len > MAX_WIDTH) {
    // Wider than numbers can count, and holding no unselected address (see `windowsOf`): the
    // block is taken whole, which one offset stands for (`blockInWindow` maps it back).
    return { block, width: MAX_WIDTH, selected: [0], unselected: [] };
  }
  const last = lastOf(block);
  const inside: [number, number][] = [];
  for (const [s, e] of unselected) {
    if (e < block.base || s > last) continue;
    const from = s < block.base ? block.base : s;
    const to = e > last ? last : e;
    inside.push([Number(from - block.base), Number(to - block.base)]);
  }
  return {
    block,
    width: 128 - block.len,
    selected: selected.map((a) => Number(a - block.base)),
    unselected: normalizeRanges(inside),
  };
}

/** A block found in a window, as an IPv6 CIDR. */
export function blockInWindow(w: Window, b: Block): string {
  if (128 - w.block.len > MAX_WIDTH) return formatBlock6(w.block);
  return formatBlock6({ base: w.block.base + BigInt(b.base), len: w.block.len + b.len });
}
