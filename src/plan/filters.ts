/**
 * Filter rules for one session, within AWS's 10 rules per filter. Two encodings select the same
 * pods on a shared ENI: an accept list of the selected addresses (covered by the fewest CIDR
 * blocks that hold no unselected address of the ENI), or reject rules for the unselected ones
 * followed by accept-all. The reject form lets a newly arrived pod through until the filter
 * catches up, so it is used only where the target allows node-level sources.
 */
import type { FilterRule, PortRange, TrafficDirection } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { Hash53 } from "./hash.ts";
import {
  contains,
  cover,
  formatBlock,
  labelChanges,
  minimalPrefixTable,
  type Block,
  type PrefixEntry,
  type PrefixTable,
  type Ranges,
} from "./ipv4.ts";
import { blockInWindow, isIpv6Text, windowsOf, type Range6, type Window } from "./ipv6.ts";

/** AWS's quota of rules per filter (both directions together). */
export const MAX_RULES_PER_FILTER = 10;

const PROTOCOLS: Record<string, number | undefined> = {
  All: undefined,
  TCP: 6,
  UDP: 17,
  ICMP: 1,
  ICMPv6: 58,
};
const ANY = "0.0.0.0/0";
const ANY6 = "::/0";

/** A rule of a desired filter (no id, number assigned). */
export type DesiredRule = Omit<FilterRule, "trafficMirrorFilterRuleId">;

/** What the filter must select. */
export interface FilterRequest {
  /** Selected addresses on the ENI, or "all" for a whole-ENI (node) source. */
  selected: readonly number[] | "all";
  /** The ENI's addresses that are not selected (sorted, merged ranges). */
  unselected: Ranges;
  /** The policy's rules; none means all traffic in both directions. */
  userRules: readonly PolicyFilterRule[];
  /** Whether the reject-list encoding may be used. */
  allowRejectForm: boolean;
  /**
   * The ENI's IPv6 side, present when it holds IPv6 addresses: the selected ones (sorted,
   * distinct; ignored for a whole-ENI source, which then gets `::/0` rules too) and its unselected
   * held ranges. `selected` and `unselected` above are then the IPv4 side, possibly empty.
   */
  ipv6?: { selected: readonly bigint[]; unselected: readonly Range6[] };
  /**
   * The local blocks (CIDR text) of the filter's rules in EC2 now, when it exists: an ordered
   * table's entry is widened to one of them where that decides the same held addresses (ADR 26).
   */
  current?: () => ReadonlySet<string>;
}

function port(r: { from: number; to: number } | undefined): PortRange | undefined {
  return r ? { fromPort: r.from, toPort: r.to } : undefined;
}

/**
 * Rules waiting for their numbers: `rules[i]` has every key but `ruleNumber` (added last, where a
 * spread used to put it) and belongs to `tiers[i]`.
 */
interface Unnumbered {
  /** The family of every rule's addresses. */
  fam: Family;
  rules: DesiredRule[];
  /** A tier (≥ 1: `tier × 1000 + 1` on) or, below zero, a nested slot (`nestedTier`). */
  tiers: number[];
  /** `hash53` of each rule's canonical text with rule number 0. */
  hashes: number[];
  /** Tiers by nesting height, where a nested slot is too narrow for the rules it has to hold. */
  fallback?: number[];
}

/**
 * A rule's canonical text (number 0) around its local block: every rule made from one user rule
 * and direction shares it, so the part before the block is hashed once.
 */
interface RuleText {
  head: Hash53;
  tail: string;
}

function ruleText(r: PolicyFilterRule, direction: TrafficDirection, any = ANY): RuleText {
  const protocol = PROTOCOLS[r.protocol] ?? -1;
  const remote = r.remoteCidr ?? any;
  const inbound = direction === "ingress";
  const sp = inbound ? r.remotePorts : r.localPorts;
  const dp = inbound ? r.localPorts : r.remotePorts;
  const ports = `${sp?.from ?? -1}-${sp?.to ?? -1} ${dp?.from ?? -1}-${dp?.to ?? -1}`;
  return inbound
    ? { head: new Hash53().add(`${direction} 0 ${r.action} ${protocol} ${remote} `), tail: ` ${ports}` }
    : { head: new Hash53().add(`${direction} 0 ${r.action} ${protocol} `), tail: ` ${remote} ${ports}` };
}

const ALL_TRAFFIC: PolicyFilterRule = { direction: "both", action: "accept", protocol: "All" };
const REJECT_ALL: PolicyFilterRule = { direction: "both", action: "reject", protocol: "All" };

/** The texts of the accept-all rule, which nearly every filter uses (it is private and never changes). */
const ALL_TRAFFIC_TEXT: Record<TrafficDirection, RuleText> = {
  ingress: ruleText({ direction: "both", action: "accept", protocol: "All" }, "ingress"),
  egress: ruleText({ direction: "both", action: "accept", protocol: "All" }, "egress"),
};

const REJECT_ALL_TEXT: Record<TrafficDirection, RuleText> = {
  ingress: ruleText(REJECT_ALL, "ingress"),
  egress: ruleText(REJECT_ALL, "egress"),
};

/**
 * An address family of a filter's rules. AWS matches a rule's CIDRs against packets of their own
 * family only (`0.0.0.0/0` admits no IPv6 packet, `::/0` no IPv4 one), so each family has its own
 * "any", and a policy rule whose remote CIDR is of one family makes rules for that family alone.
 */
interface Family {
  any: string;
  v6: boolean;
  allText: Record<TrafficDirection, RuleText>;
  rejectText: Record<TrafficDirection, RuleText>;
}

const V4: Family = { any: ANY, v6: false, allText: ALL_TRAFFIC_TEXT, rejectText: REJECT_ALL_TEXT };
const V6: Family = {
  any: ANY6,
  v6: true,
  allText: { ingress: ruleText(ALL_TRAFFIC, "ingress", ANY6), egress: ruleText(ALL_TRAFFIC, "egress", ANY6) },
  rejectText: {
    ingress: ruleText(REJECT_ALL, "ingress", ANY6),
    egress: ruleText(REJECT_ALL, "egress", ANY6),
  },
};

/** Whether a policy rule makes rules in a family (its remote CIDR, if any, is of that family). */
function inFamily(r: PolicyFilterRule, fam: Family): boolean {
  return r.remoteCidr === undefined || isIpv6Text(r.remoteCidr) === fam.v6;
}

/** Rules of one user rule applied to one local block. */
function expand(r: PolicyFilterRule, local: string, tier: number, out: Unnumbered): void {
  for (const direction of DIRECTIONS)
    if (appliesTo(r, direction)) expandOne(r, { direction, local, tier }, out);
}

/** Whether a user rule has a rule in this direction. */
function appliesTo(r: PolicyFilterRule, direction: TrafficDirection): boolean {
  return r.direction !== (direction === "ingress" ? "egress" : "ingress");
}

/** The rule of one user rule applied to one local block, in one direction. */
function expandOne(
  r: PolicyFilterRule,
  at: { direction: TrafficDirection; local: string; tier: number },
  out: Unnumbered,
): void {
  const { direction, local, tier } = at;
  const fam = out.fam;
  const protocol = PROTOCOLS[r.protocol];
  const remote = r.remoteCidr ?? fam.any;
  const inbound = direction === "ingress";
  out.rules.push(oneRule(r, { direction, protocol }, inbound ? remote : local, inbound ? local : remote));
  out.tiers.push(tier);
  const text =
    r === ALL_TRAFFIC
      ? fam.allText[direction]
      : r === REJECT_ALL
        ? fam.rejectText[direction]
        : ruleText(r, direction, fam.any);
  out.hashes.push(text.head.valueAfter(local, text.tail));
}

const DIRECTIONS: readonly TrafficDirection[] = ["ingress", "egress"];

/**
 * One rule as a literal (this runs for every rule of every filter of a plan); keys are added in
 * the order they always had, since the plan is compared byte for byte.
 */
function oneRule(
  r: PolicyFilterRule,
  how: { direction: TrafficDirection; protocol: number | undefined },
  sourceCidrBlock: string,
  destinationCidrBlock: string,
): DesiredRule {
  const inbound = how.direction === "ingress";
  const rule = { direction: how.direction, action: r.action } as DesiredRule;
  if (how.protocol !== undefined) rule.protocol = how.protocol;
  rule.sourceCidrBlock = sourceCidrBlock;
  rule.destinationCidrBlock = destinationCidrBlock;
  const sp = port(inbound ? r.remotePorts : r.localPorts);
  if (sp) rule.sourcePortRange = sp;
  const dp = port(inbound ? r.localPorts : r.remotePorts);
  if (dp) rule.destinationPortRange = dp;
  return rule;
}

/**
 * Rule numbers that keep order where order matters and stay put otherwise. Rules of one tier
 * select disjoint blocks (order among them is irrelevant), so each gets a number from a hash of its
 * content inside its tier's range: a pod that arrives adds a rule without renumbering the others,
 * and the filter is updated with one or two calls instead of being rebuilt.
 */
function number(u: Unnumbered): DesiredRule[] {
  return numberAfter(u, []);
}

function acceptForm(locals: readonly string[], userRules: readonly PolicyFilterRule[], fam = V4): Unnumbered {
  const rules = userRules.length > 0 ? userRules : [ALL_TRAFFIC];
  const out: Unnumbered = { fam, rules: [], tiers: [], hashes: [] };
  rules.forEach((r, i) => {
    if (inFamily(r, fam)) for (const l of locals) expand(r, l, i + 1, out);
  });
  return out;
}

function rejectForm(rejectBlocks: readonly Block[]): Unnumbered {
  const out: Unnumbered = { fam: V4, rules: [], tiers: [], hashes: [] };
  for (const b of rejectBlocks) expand(REJECT_ALL, formatBlock(b), 1, out);
  expand(ALL_TRAFFIC, ANY, 2, out);
  return out;
}

/**
 * The smallest rule list that mirrors exactly the request, or undefined when none fits in
 * `MAX_RULES_PER_FILTER`. The accept and reject forms are tried first and win ties, so a filter
 * they made keeps its rules; the ordered table (`tableForm`) is used where it has fewer rules.
 */
export function buildFilterRules(req: FilterRequest): DesiredRule[] | undefined {
  return req.ipv6 ? buildDualRules(req, req.ipv6) : buildIpv4Rules(req);
}

/**
 * `buildFilterRules` on an ENI that holds IPv6 addresses: each family's fewest rules (rules of
 * one family never match the other's packets, so the fewest in total are the fewest of each),
 * numbered apart so that no number repeats in a direction.
 */
function buildDualRules(
  req: FilterRequest,
  v6: NonNullable<FilterRequest["ipv6"]>,
): DesiredRule[] | undefined {
  if (req.selected === "all") {
    const both = acceptForm([ANY], req.userRules);
    const six = acceptForm([ANY6], req.userRules, V6);
    if (both.rules.length + six.rules.length > MAX_RULES_PER_FILTER) return undefined;
    return numberAfter(six, number(both));
  }
  if (req.selected.length === 0 && v6.selected.length === 0) return undefined;
  const four = req.selected.length > 0 ? buildIpv4Rules(req) : [];
  if (four === undefined || v6.selected.length === 0) return four;
  const six = ipv6Rules(v6, req.userRules, MAX_RULES_PER_FILTER - four.length, req.current);
  return six && numberAfter(six, four);
}

/**
 * The fewest IPv6 rules (at most `max`) that select `v6.selected` on the ENI: the accept list of
 * the fewest blocks, or the ordered table where it has fewer rules. The reject list of the IPv4
 * side is not tried: an IPv6 ENI holds a /80 prefix, whose unselected addresses no list can name.
 */
function ipv6Rules(
  v6: NonNullable<FilterRequest["ipv6"]>,
  userRules: readonly PolicyFilterRule[],
  max: number,
  current: FilterRequest["current"],
): Unnumbered | undefined {
  const windows = windowsOf(v6.selected, v6.unselected);
  const locals: string[] = [];
  for (const w of windows)
    for (const b of cover(w.selected, w.unselected, w.width)) locals.push(blockInWindow(w, b));
  const accept = acceptForm(locals, userRules, V6);
  const best = accept.rules.length <= max ? accept : undefined;
  const only = windows.length === 1 ? windows[0]! : undefined;
  const fewer =
    only &&
    locals.length > 1 &&
    tableRules(spaceOf(only), userRules, { below: best?.rules.length ?? max + 1, max, fam: V6, current });
  return fewer || best;
}

/** A window as the space of a prefix table. */
function spaceOf(w: Window): Space {
  return {
    selected: w.selected,
    unselected: w.unselected,
    width: w.width,
    format: (b) => blockInWindow(w, b),
  };
}

/** Numbers `u`'s rules past those of `before` (of the other family), and joins them. */
function numberAfter(u: Unnumbered, before: readonly DesiredRule[]): DesiredRule[] {
  const all = before.length > 0 ? [...before, ...u.rules] : u.rules;
  for (const tiers of u.fallback ? [u.tiers, u.fallback] : [u.tiers]) {
    for (const r of u.rules) r.ruleNumber = 0;
    if (u.rules.every((r, i) => (r.ruleNumber = freeNumber(all, r.direction, tiers[i]!, u.hashes[i]!)) > 0))
      return all;
  }
  throw new Error("no free rule number"); // unreachable: the height tiers always have room
}

/** `buildFilterRules` on an ENI that holds only IPv4 addresses. */
function buildIpv4Rules(req: FilterRequest): DesiredRule[] | undefined {
  if (req.selected === "all") {
    const rules = acceptForm([ANY], req.userRules);
    return rules.rules.length <= MAX_RULES_PER_FILTER ? number(rules) : undefined;
  }
  const selected = req.selected;
  if (selected.length === 0) return undefined;
  const blocks = cover(selected, req.unselected);
  // One block is one rule per user rule and direction, which no table beats.
  if (req.userRules.length === 0 && !req.allowRejectForm)
    return (blocks.length > 1 && tableForm(selected, req, blocks.length * 2)) || acceptAll(blocks);
  // `inFamily` leaves out rules with an IPv6 remote: not the fast path's concern, which has none.
  const candidates = [acceptForm(blocks.map(formatBlock), req.userRules)];
  // The reject form lists unselected addresses one by one; only for ENIs holding few of them.
  if (req.allowRejectForm && req.userRules.length === 0 && req.unselected.every(([s, e]) => e - s < 256)) {
    const unselectedAddrs = req.unselected.flatMap(([s, e]) => range(s, e));
    // `cover` needs its forbidden ranges sorted; the selected addresses come in pod order.
    const selectedRanges = [...new Set(selected)].sort((a, b) => a - b).map((a) => [a, a] as const);
    candidates.push(rejectForm(cover(unselectedAddrs, selectedRanges)));
  }
  let best: Unnumbered | undefined;
  for (const c of candidates)
    if (c.rules.length <= MAX_RULES_PER_FILTER && (!best || c.rules.length < best.rules.length)) best = c;
  const fewer = blocks.length > 1 && tableForm(selected, req, best?.rules.length ?? MAX_RULES_PER_FILTER + 1);
  return fewer || (best ? number(best) : undefined);
}

/**
 * The ordered form, when it has fewer than `below` rules (and fits): per direction, the minimal
 * prefix table over the ENI's addresses (`minimalPrefixTable`: selected accepted, held unselected
 * rejected, addresses not held free), tried most specific first. An accept entry carries the
 * policy's rules in their order, a reject entry one reject-all rule, so an address is mirrored
 * exactly when its most specific entry accepts and the policy's rules accept the packet: a packet
 * none of the rules match falls through to enclosing entries, which reject it or repeat the same
 * rules. A direction with more rules makes accept entries dearer, so it may get its own table.
 *
 * Numbers keep that order and stay put otherwise (ADR 26): an outermost entry's rules take the
 * accept list's tiers (their place among the policy's rules), and an entry held by d others takes
 * the numbers below 1001 kept for depth d (`nestedTier`), so an entry added inside a block or taken
 * out of it renumbers no other entry. Where a depth's slot is too narrow (seven deep, or a slot
 * full), the table falls back to tiers by height, `height × rules + place` (0 for an entry holding
 * no other, else one more than the highest it holds; entries of one height are disjoint; within
 * ten rules a tier is at most 30, so numbers stay below AWS's 32766).
 */
function tableForm(
  selected: readonly number[],
  req: FilterRequest,
  below: number,
): DesiredRule[] | undefined {
  const space: Space = { selected, unselected: req.unselected, width: 32, format: formatBlock };
  const u = tableRules(space, req.userRules, {
    below,
    max: MAX_RULES_PER_FILTER,
    fam: V4,
    current: req.current,
  });
  return u && number(u);
}

/** Addresses a prefix table is made over: a space `width` bits wide, and how its blocks are written. */
interface Space {
  selected: readonly number[];
  unselected: Ranges;
  width: number;
  format: (b: Block) => string;
}

/** `tableForm`'s rules before numbering, for any family: fewer than `below` and at most `max`. */
function tableRules(
  space: Space,
  userRules: readonly PolicyFilterRule[],
  o: { below: number; max: number; fam: Family; current: FilterRequest["current"] },
): Unnumbered | undefined {
  const { selected, unselected, width } = space;
  const fam = o.fam;
  const rules = userRules.length > 0 ? userRules : [ALL_TRAFFIC];
  const limit = Math.min(o.below - 1, o.max);
  // Rules per direction (ingress, egress), counted by hand: this runs for nearly every filter.
  let inbound = 0;
  let outbound = 0;
  for (const r of rules) {
    if (!inFamily(r, fam)) continue;
    if (r.direction !== "egress") inbound++;
    if (r.direction !== "ingress") outbound++;
  }
  const weights = [inbound, outbound];
  // A table of n entries costs at least one accept entry and n − 1 rules more per direction.
  const entries = Math.ceil(labelChanges(selected, unselected) / 2);
  let least = 0;
  for (const w of weights) if (w > 0) least += w + entries - 1;
  if (least > limit) return undefined;
  const byWeight = new Map<number, PrefixTable>();
  const tables: { direction: TrafficDirection; table: PrefixTable }[] = [];
  let cost = 0;
  for (const [d, direction] of DIRECTIONS.entries()) {
    const weight = weights[d]!;
    if (weight === 0) continue;
    let table = byWeight.get(weight);
    if (!table) {
      table = minimalPrefixTable(selected, unselected, weight, width);
      if (o.current) table = { cost: table.cost, entries: widenToCurrent(table.entries, space, o.current()) };
      byWeight.set(weight, table);
    }
    cost += table.cost;
    if (cost > limit) return undefined;
    tables.push({ direction, table });
  }
  const out: Unnumbered = { fam, rules: [], tiers: [], hashes: [] };
  const byHeight: number[] = [];
  let narrow = false;
  for (const { direction, table } of tables) {
    for (const { entry, height, depth } of byNesting(table.entries, width)) {
      const local = space.format(entry.block);
      // The rule of `r` at `place` among the policy's rules, with its tier by depth and by height.
      const add = (r: PolicyFilterRule, place: number): void => {
        const tier = depth === 0 ? place : nestedTier(depth, place);
        if (tier === undefined) narrow = true;
        byHeight.push(height * rules.length + place);
        expandOne(r, { direction, local, tier: tier ?? 0 }, out);
      };
      if (!entry.accept) add(REJECT_ALL, 1);
      else
        rules.forEach((r, i) => {
          if (appliesTo(r, direction) && inFamily(r, fam)) add(r, i + 1);
        });
    }
  }
  if (narrow) out.tiers = byHeight;
  else out.fallback = byHeight;
  return out;
}

/**
 * The slot of a rule of an entry nested `depth` ≥ 1 entries deep, at `place` among the policy's
 * rules, encoded below zero for `freeNumber`; undefined when its slot would be empty. Outermost
 * entries keep the tiers of the accept list (their place, numbers from 1001 on), and nested ones
 * take the numbers below: depth 1 gets 501–1000, depth 2 251–500, and so on, each split evenly
 * among ten places. So an entry's numbers depend on its block, its depth and its place, not on what
 * it holds: a departure inside an accepted block adds a reject entry and renumbers nothing.
 */
function nestedTier(depth: number, place: number): number | undefined {
  return place <= 10 && nestedSlot(depth * 16 + place).width > 0 ? -(depth * 16 + place) : undefined;
}

function nestedSlot(code: number): { base: number; width: number } {
  const depth = Math.floor(code / 16);
  const place = code % 16;
  const lo = Math.floor(1000 / 2 ** depth) + 1;
  const hi = Math.floor(1000 / 2 ** (depth - 1));
  const width = Math.floor((hi - lo + 1) / 10);
  return { base: lo + (place - 1) * width, width };
}

/**
 * `entries` with each moved to the largest block of the filter's current rules (`current`, CIDR
 * text) that holds it and adds no held address and no other entry: the entry decides the same
 * held addresses, nothing nests differently, and the rules already in EC2 stay as they are. The
 * minimal table puts each entry on the smallest block around what it decides, where an accept
 * list (`cover`) takes the largest; without this, a departure inside an accepted block would
 * move the block's rules to a smaller block besides adding the reject (ADR 26).
 */
function widenToCurrent(
  entries: readonly PrefixEntry[],
  space: Space,
  current: ReadonlySet<string>,
): PrefixEntry[] {
  if (current.size === 0) return [...entries];
  const { width } = space;
  const held = (lo: number, hi: number): boolean => {
    const sel = space.selected;
    let a = 0;
    let b = sel.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (sel[m]! < lo) a = m + 1;
      else b = m;
    }
    if (a < sel.length && sel[a]! <= hi) return true;
    return space.unselected.some(([s, e]) => s <= hi && e >= lo);
  };
  return entries.map((entry) => {
    let block = entry.block;
    let best = block;
    while (block.len > 0) {
      const half = 2 ** (width - block.len);
      const parent = { base: block.base - (block.base % (2 * half)), len: block.len - 1 };
      const sibling = parent.base === block.base ? block.base + half : parent.base;
      if (held(sibling, sibling + half - 1)) break;
      const other = entries.some(
        (e) =>
          e !== entry &&
          e.block.len >= parent.len &&
          contains(parent, e.block.base, width) &&
          !(e.block.len >= block.len && contains(block, e.block.base, width)),
      );
      if (other) break;
      block = parent;
      if (current.has(space.format(block))) best = block;
    }
    return best === entry.block ? entry : { block: best, accept: entry.accept };
  });
}

/**
 * A table's entries with their nesting heights (0 for one holding no other entry) and depths (how
 * many entries hold it), innermost first (the order they are tried in).
 */
function byNesting(
  entries: readonly PrefixEntry[],
  width: number,
): { entry: PrefixEntry; height: number; depth: number }[] {
  const inner = [...entries].sort((a, b) => b.block.len - a.block.len || a.block.base - b.block.base);
  const out: { entry: PrefixEntry; height: number; depth: number }[] = [];
  for (const entry of inner) {
    let height = 0;
    for (const o of out)
      if (o.entry.block.len > entry.block.len && contains(entry.block, o.entry.block.base, width)) {
        height = Math.max(height, o.height + 1);
        o.depth++;
      }
    out.push({ entry, height, depth: 0 });
  }
  return out.sort((a, b) => a.height - b.height || a.entry.block.base - b.entry.block.base);
}

/**
 * `acceptForm` of the accept-all rule alone, numbered: what nearly every filter is (a policy with
 * no rules of its own, a target without node sources). The same rules in the same order with the
 * same numbers, made without the general path's working lists: one rule pair per block.
 */
function acceptAll(blocks: readonly Block[]): DesiredRule[] | undefined {
  if (blocks.length * 2 > MAX_RULES_PER_FILTER) return undefined;
  const rules: DesiredRule[] = [];
  const inText = ALL_TRAFFIC_TEXT.ingress;
  const outText = ALL_TRAFFIC_TEXT.egress;
  for (const b of blocks) {
    const local = formatBlock(b);
    rules.push(
      {
        direction: "ingress",
        action: "accept",
        sourceCidrBlock: ANY,
        destinationCidrBlock: local,
        ruleNumber: freeNumber(rules, "ingress", 1, inText.head.valueAfter(local, inText.tail)),
      },
      {
        direction: "egress",
        action: "accept",
        sourceCidrBlock: local,
        destinationCidrBlock: ANY,
        ruleNumber: freeNumber(rules, "egress", 1, outText.head.valueAfter(local, outText.tail)),
      },
    );
  }
  return rules;
}

/**
 * A rule's number: its tier's range from the content hash, past numbers the same direction's rules
 * already hold (at most ten rules: a scan beats a set).
 */
function freeNumber(
  numbered: readonly DesiredRule[],
  direction: TrafficDirection,
  tier: number,
  hash: number,
): number {
  const { base, width } = tier > 0 ? { base: tier * 1000 + 1, width: 997 } : nestedSlot(-tier);
  let offset = hash % width;
  for (let tries = 0; tries < width; tries++, offset = (offset + 1) % width)
    if (!numbered.some((r) => r.direction === direction && r.ruleNumber === base + offset))
      return base + offset;
  return 0;
}

function range(s: number, e: number): number[] {
  const out: number[] = [];
  for (let a = s; a <= e; a++) out.push(a);
  return out;
}

/** One rule as a comparable string (ignores the id). */
export function canonicalRule(r: DesiredRule): string {
  return canonicalText(r, r.ruleNumber);
}

// `ruleText` hashes this same text in two parts; filters.test.ts keeps them in step.
function canonicalText(r: Omit<DesiredRule, "ruleNumber">, ruleNumber: number): string {
  const sp = r.sourcePortRange;
  const dp = r.destinationPortRange;
  return `${r.direction} ${ruleNumber} ${r.action} ${r.protocol ?? -1} ${r.sourceCidrBlock} ${r.destinationCidrBlock} ${sp?.fromPort ?? -1}-${sp?.toPort ?? -1} ${dp?.fromPort ?? -1}-${dp?.toPort ?? -1}`;
}
