/**
 * Selection at the collector: which policies a mirrored packet belongs to. AWS delivers each packet
 * once per ENI, through the first session whose filter accepts it, and a session may serve several
 * policies (of several namespaces). So the collector reads the inner IPv4 header and keeps the
 * packet for exactly the policies that selected its pod (or whole ENI) and whose rules accept it:
 * never for one that did not ask for it, and for each one that did, whichever of their sessions
 * carried it. Compiled when the map changes; matching allocates nothing.
 */
import type { PolicyFilterRule } from "../api/resources.ts";
import { parseCidr, parseIp, type Block } from "../plan/ipv4.ts";
import { innerL3Offset } from "./vxlan.ts";

/** The Amazon DNS server's link-local address (the `amazon-dns` network service). */
export const AMAZON_DNS = parseIp("169.254.169.253")!;

const PROTOCOLS: Record<PolicyFilterRule["protocol"], number> = {
  All: -1,
  TCP: 6,
  UDP: 17,
  ICMP: 1,
  ICMPv6: 58,
};

/** A policy rule with its CIDR and protocol read once. */
export interface CompiledRule {
  /** 0 both, 1 ingress only, 2 egress only. */
  direction: 0 | 1 | 2;
  accept: boolean;
  /** IANA number, -1 for all. */
  protocol: number;
  remote: Block | undefined;
  remoteFrom: number;
  remoteTo: number;
  localFrom: number;
  localTo: number;
  /** Whether the rule names ports (then it matches TCP and UDP packets whose ports are known). */
  ports: boolean;
}

/** One policy's selection on one ENI, ready for the hot path. */
export interface CompiledSelection {
  policy: string;
  /** The selected addresses; undefined for a whole-ENI (node) source. */
  ips: Set<number> | undefined;
  /** For a whole ENI: the blocks it holds (its addresses and prefixes), to tell local from remote. */
  local: Block[];
  rules: CompiledRule[];
  mirrorDns: boolean;
}

/** The fields of a mirrored frame that selection reads. */
export interface InnerHeader {
  src: number;
  dst: number;
  protocol: number;
  srcPort: number;
  dstPort: number;
  /** False for a non-first fragment or a frame cut before the ports. */
  hasPorts: boolean;
}

/** Compiles one policy rule. */
export function compileRule(r: PolicyFilterRule): CompiledRule {
  return {
    direction: r.direction === "ingress" ? 1 : r.direction === "egress" ? 2 : 0,
    accept: r.action === "accept",
    protocol: PROTOCOLS[r.protocol],
    remote: r.remoteCidr === undefined ? undefined : parseCidr(r.remoteCidr),
    remoteFrom: r.remotePorts?.from ?? 0,
    remoteTo: r.remotePorts?.to ?? 65535,
    localFrom: r.localPorts?.from ?? 0,
    localTo: r.localPorts?.to ?? 65535,
    ports: r.remotePorts !== undefined || r.localPorts !== undefined,
  };
}

/** Compiles a policy's selection on an ENI; addresses that do not parse select nothing. */
export function compileSelection(s: {
  policy: string;
  ips: readonly string[];
  whole: boolean;
  localAddresses: readonly string[];
  rules: readonly PolicyFilterRule[];
  mirrorDns: boolean;
}): CompiledSelection {
  const ips = new Set<number>();
  for (const ip of s.ips) {
    const n = parseIp(ip);
    if (n !== undefined) ips.add(n);
  }
  const local: Block[] = [];
  if (s.whole)
    for (const a of s.localAddresses) {
      const b = a.includes("/")
        ? parseCidr(a)
        : ((n) => (n === undefined ? undefined : { base: n, len: 32 }))(parseIp(a));
      if (b) local.push(b);
    }
  return {
    policy: s.policy,
    ips: s.whole ? undefined : ips,
    local,
    rules: s.rules.map(compileRule),
    mirrorDns: s.mirrorDns,
  };
}

function inBlock(b: Block, a: number): boolean {
  return b.len === 0 || Math.floor(a / 2 ** (32 - b.len)) === Math.floor(b.base / 2 ** (32 - b.len));
}

/**
 * Reads the inner frame's IPv4 header into `out` (one VLAN tag or a QinQ pair skipped); false when
 * the frame is not IPv4 or is cut before the addresses.
 */
export function readInnerHeader(buf: Uint8Array, start: number, length: number, out: InnerHeader): boolean {
  const end = start + length;
  const l3 = innerL3Offset(buf, start, end);
  if (l3 < 0) return false;
  const etherType = (buf[l3 - 2]! << 8) | buf[l3 - 1]!;
  if (etherType !== 0x0800 || l3 + 20 > end || buf[l3]! >> 4 !== 4) return false;
  const ihl = (buf[l3]! & 15) * 4;
  out.protocol = buf[l3 + 9]!;
  out.src = ((buf[l3 + 12]! << 24) | (buf[l3 + 13]! << 16) | (buf[l3 + 14]! << 8) | buf[l3 + 15]!) >>> 0;
  out.dst = ((buf[l3 + 16]! << 24) | (buf[l3 + 17]! << 16) | (buf[l3 + 18]! << 8) | buf[l3 + 19]!) >>> 0;
  const fragmentOffset = ((buf[l3 + 6]! & 0x1f) << 8) | buf[l3 + 7]!;
  const l4 = l3 + ihl;
  out.hasPorts =
    ihl >= 20 && fragmentOffset === 0 && (out.protocol === 6 || out.protocol === 17) && l4 + 4 <= end;
  out.srcPort = out.hasPorts ? (buf[l4]! << 8) | buf[l4 + 1]! : 0;
  out.dstPort = out.hasPorts ? (buf[l4 + 2]! << 8) | buf[l4 + 3]! : 0;
  return true;
}

/** Whether the rules accept a packet crossing the ENI inbound (`ingress`) or outbound. */
function rulesAccept(rules: readonly CompiledRule[], h: InnerHeader, ingress: boolean): boolean {
  if (rules.length === 0) return true;
  const remote = ingress ? h.src : h.dst;
  const remotePort = ingress ? h.srcPort : h.dstPort;
  const localPort = ingress ? h.dstPort : h.srcPort;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.direction === (ingress ? 2 : 1)) continue;
    if (r.protocol >= 0 && r.protocol !== h.protocol) continue;
    if (r.remote !== undefined && !inBlock(r.remote, remote)) continue;
    if (r.ports) {
      if (!h.hasPorts) continue;
      if (remotePort < r.remoteFrom || remotePort > r.remoteTo) continue;
      if (localPort < r.localFrom || localPort > r.localTo) continue;
    }
    return r.accept;
  }
  return false;
}

function isLocal(s: CompiledSelection, a: number): boolean {
  if (s.ips !== undefined) return s.ips.has(a);
  for (let i = 0; i < s.local.length; i++) if (inBlock(s.local[i]!, a)) return true;
  return false;
}

/**
 * Whether a packet belongs to a selection: to or from one of its addresses, accepted by its rules
 * in that direction, and not DNS to the Amazon DNS server unless the policy mirrors DNS.
 */
export function selects(s: CompiledSelection, h: InnerHeader): boolean {
  if (
    !s.mirrorDns &&
    (h.src === AMAZON_DNS || h.dst === AMAZON_DNS) &&
    h.hasPorts &&
    (h.srcPort === 53 || h.dstPort === 53)
  )
    return false;
  return (
    (isLocal(s, h.dst) && rulesAccept(s.rules, h, true)) ||
    (isLocal(s, h.src) && rulesAccept(s.rules, h, false))
  );
}
