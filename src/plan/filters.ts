/**
 * Filter rules for one session, within AWS's 10 rules per filter. Two encodings select the same
 * pods on a shared ENI: an accept list of the selected addresses (covered by the fewest CIDR
 * blocks that hold no unselected address of the ENI), or reject rules for the unselected ones
 * followed by accept-all. The reject form lets a newly arrived pod through until the filter
 * catches up, so it is used only where the target allows node-level sources.
 */
import type { FilterRule, PortRange, TrafficDirection } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { byString, hashHex } from "./hash.ts";
import { cover, formatBlock, type Block, type Ranges } from "./ipv4.ts";

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
}

function port(r: { from: number; to: number } | undefined): PortRange | undefined {
  return r ? { fromPort: r.from, toPort: r.to } : undefined;
}

function directions(d: PolicyFilterRule["direction"]): TrafficDirection[] {
  return d === "both" ? ["ingress", "egress"] : [d];
}

/** Rules of one user rule applied to one local block. */
function expand(r: PolicyFilterRule, local: string): Omit<DesiredRule, "ruleNumber">[] {
  const protocol = PROTOCOLS[r.protocol];
  const remote = r.remoteCidr ?? ANY;
  return directions(r.direction).map((direction) => {
    const inbound = direction === "ingress";
    return {
      direction,
      action: r.action,
      ...(protocol === undefined ? {} : { protocol }),
      sourceCidrBlock: inbound ? remote : local,
      destinationCidrBlock: inbound ? local : remote,
      ...(port(inbound ? r.remotePorts : r.localPorts)
        ? { sourcePortRange: port(inbound ? r.remotePorts : r.localPorts) }
        : {}),
      ...(port(inbound ? r.localPorts : r.remotePorts)
        ? { destinationPortRange: port(inbound ? r.localPorts : r.remotePorts) }
        : {}),
    };
  });
}

const ALL_TRAFFIC: PolicyFilterRule = { direction: "both", action: "accept", protocol: "All" };

function number(rules: Omit<DesiredRule, "ruleNumber">[]): DesiredRule[] {
  const next: Record<TrafficDirection, number> = { ingress: 100, egress: 100 };
  return rules.map((r) => {
    const ruleNumber = next[r.direction];
    next[r.direction] += 100;
    return { ...r, ruleNumber };
  });
}

function acceptForm(
  locals: readonly string[],
  userRules: readonly PolicyFilterRule[],
): Omit<DesiredRule, "ruleNumber">[] {
  const rules = userRules.length > 0 ? userRules : [ALL_TRAFFIC];
  return rules.flatMap((r) => locals.flatMap((l) => expand(r, l)));
}

function rejectForm(rejectBlocks: readonly Block[]): Omit<DesiredRule, "ruleNumber">[] {
  const rejects = rejectBlocks.flatMap((b) =>
    expand({ direction: "both", action: "reject", protocol: "All" }, formatBlock(b)),
  );
  return [...rejects, ...expand(ALL_TRAFFIC, ANY)];
}

/**
 * The smallest rule list that mirrors exactly the request, or undefined when none fits in
 * `MAX_RULES_PER_FILTER`.
 */
export function buildFilterRules(req: FilterRequest): DesiredRule[] | undefined {
  if (req.selected === "all") {
    const rules = acceptForm([ANY], req.userRules);
    return rules.length <= MAX_RULES_PER_FILTER ? number(rules) : undefined;
  }
  if (req.selected.length === 0) return undefined;
  const blocks = cover(req.selected, req.unselected).map(formatBlock);
  const candidates = [acceptForm(blocks, req.userRules)];
  // The reject form lists unselected addresses one by one; only for ENIs holding few of them.
  if (req.allowRejectForm && req.userRules.length === 0 && req.unselected.every(([s, e]) => e - s < 256)) {
    const unselectedAddrs = req.unselected.flatMap(([s, e]) => range(s, e));
    const selectedRanges = req.selected.map((a) => [a, a] as const);
    candidates.push(rejectForm(cover(unselectedAddrs, selectedRanges)));
  }
  const best = candidates
    .filter((c) => c.length <= MAX_RULES_PER_FILTER)
    .sort((a, b) => a.length - b.length)[0];
  return best ? number(best) : undefined;
}

function range(s: number, e: number): number[] {
  const out: number[] = [];
  for (let a = s; a <= e; a++) out.push(a);
  return out;
}

/** A stable key for a filter's content, so identical filters are shared between sessions. */
export function filterKey(rules: readonly DesiredRule[], networkServices: readonly string[]): string {
  const canonical = `${[...rules].map(canonicalRule).sort(byString).join(";")}|${[...networkServices].sort(byString).join(",")}`;
  return `filter-${hashHex(canonical)}`;
}

/** One rule as a comparable string (ignores the id). */
export function canonicalRule(r: DesiredRule): string {
  const sp = r.sourcePortRange;
  const dp = r.destinationPortRange;
  return `${r.direction} ${r.ruleNumber} ${r.action} ${r.protocol ?? -1} ${r.sourceCidrBlock} ${r.destinationCidrBlock} ${sp?.fromPort ?? -1}-${sp?.toPort ?? -1} ${dp?.fromPort ?? -1}-${dp?.toPort ?? -1}`;
}
