/**
 * Whether a filter edit only stops mirroring addresses that pods left (ADR 23): every pod on the
 * ENI is mirrored alike by the current rules and the desired ones, packet for packet. Such an edit
 * can wait a few seconds, so that the arrival of a replacement pod on the same ENI is made in the
 * same rule edit (a rule rewritten in place instead of one deleted and another created).
 */
import type { FilterRule } from "../api/inventory.ts";
import type { DesiredFilter } from "./types.ts";
import { contains, parseCidr, parseIp, type Block } from "./ipv4.ts";

type Rule = Omit<FilterRule, "trafficMirrorFilterRuleId" | "description">;

/** What a rule decides, apart from the local address it applies to. */
function shape(r: Rule, local: "source" | "destination"): string {
  const remote = local === "destination" ? r.sourceCidrBlock : r.destinationCidrBlock;
  const sp = r.sourcePortRange;
  const dp = r.destinationPortRange;
  return `${r.action} ${r.protocol ?? -1} ${remote} ${sp?.fromPort ?? -1}-${sp?.toPort ?? -1} ${dp?.fromPort ?? -1}-${dp?.toPort ?? -1}`;
}

interface Located {
  rule: Rule;
  local: Block;
  shape: string;
  /** Matches every packet of its local addresses: no rule after it is ever reached for them. */
  all: boolean;
}

/** One direction's rules in evaluation order, with their local blocks; undefined if one is not IPv4. */
function located(rules: readonly Rule[], direction: "ingress" | "egress"): Located[] | undefined {
  const side = direction === "ingress" ? "destination" : "source";
  const out: Located[] = [];
  for (const rule of rules) {
    if (rule.direction !== direction) continue;
    const local = parseCidr(side === "destination" ? rule.destinationCidrBlock : rule.sourceCidrBlock);
    if (!local) return undefined;
    const remote = side === "destination" ? rule.sourceCidrBlock : rule.destinationCidrBlock;
    const all =
      rule.protocol === undefined &&
      (remote === "0.0.0.0/0" || remote === "::/0") &&
      !rule.sourcePortRange &&
      !rule.destinationPortRange;
    out.push({ rule, local, shape: shape(rule, side), all });
  }
  return out.sort((a, b) => a.rule.ruleNumber - b.rule.ruleNumber);
}

/** The shapes of the rules that apply to a local address, in evaluation order, up to one that matches all. */
function sequence(rules: readonly Located[], ip: number): string {
  let s = "";
  for (const r of rules) {
    if (!contains(r.local, ip)) continue;
    s += `${r.shape}\n`;
    if (r.all) break;
  }
  return s;
}

/**
 * True when the edit changes what the filter mirrors only for addresses no pod holds: for every
 * address in `inUse` (the pods on the ENI, selected or not) the current rules and the desired ones
 * apply the same rules (same action, protocol, remote block and ports) in the same order in both
 * directions, so every packet of a pod is mirrored alike before and after; and no network service
 * is added. Then waiting mirrors no pod's packets that the policy does not ask for. False whenever
 * it cannot tell (an address or a block that is not IPv4, no address given).
 */
export function onlyFreeAddressesChange(
  current: { rules: readonly Rule[]; networkServices: readonly string[] },
  desired: Pick<DesiredFilter, "rules" | "networkServices">,
  inUse: Iterable<string>,
): boolean {
  if (desired.networkServices.some((s) => !current.networkServices.includes(s))) return false;
  const addresses: number[] = [];
  for (const a of inUse) {
    const ip = parseIp(a);
    if (ip === undefined) return false;
    addresses.push(ip);
  }
  if (addresses.length === 0) return false;
  for (const direction of ["ingress", "egress"] as const) {
    const now = located(current.rules, direction);
    const then = located(desired.rules, direction);
    if (!now || !then) return false;
    for (const ip of addresses) if (sequence(now, ip) !== sequence(then, ip)) return false;
  }
  return true;
}
