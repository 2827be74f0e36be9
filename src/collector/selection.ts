/**
 * Selection at the collector: which policies a mirrored packet belongs to. AWS delivers each packet
 * once per ENI, through the first session whose filter accepts it, and a session may serve several
 * policies (of several namespaces). So the collector reads the inner IPv4 or IPv6 header and keeps the
 * packet for exactly the policies that selected its pod (or whole ENI) and whose rules accept it:
 * never for one that did not ask for it, and for each one that did, whichever of their sessions
 * carried it. Compiled when the map changes; matching allocates nothing.
 */
import type { PolicyFilterRule } from "../api/resources.ts";
import { parseCidr, parseIp, type Block } from "../plan/ipv4.ts";
import { isIpv6Text, parseCidr6, parseIp6 } from "../plan/ipv6.ts";
import { innerL3Offset } from "./vxlan.ts";

/** The Amazon DNS server's link-local address (the `amazon-dns` network service). */
export const AMAZON_DNS = parseIp("169.254.169.253")!;

/** An IPv6 block as four 32-bit words (most significant first), compared without allocating. */
export interface Block6w {
  words: Uint32Array;
  len: number;
}

function wordsOf(n: bigint): Uint32Array {
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = Number((n >> BigInt(96 - 32 * i)) & 0xffffffffn);
  return w;
}

/** The Amazon DNS server's IPv6 address on Nitro instances, as words. */
const AMAZON_DNS6 = wordsOf(parseIp6("fd00:ec2::253")!);

function block6(cidr: string): Block6w | undefined {
  const b = parseCidr6(cidr);
  return b && { words: wordsOf(b.base), len: b.len };
}

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
  /** An IPv6 remote CIDR; a rule with one matches IPv6 packets only, one with `remote` IPv4 only. */
  remote6: Block6w | undefined;
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
  /** The selected IPv6 addresses, four words each. */
  ips6: Uint32Array;
  /** For a whole ENI: the blocks it holds (its addresses and prefixes), to tell local from remote. */
  local: Block[];
  /** Its IPv6 blocks likewise. */
  local6: Block6w[];
  rules: CompiledRule[];
  mirrorDns: boolean;
}

/** The fields of a mirrored frame that selection reads. */
export interface InnerHeader {
  /** IPv4 addresses; 0 in an IPv6 packet. */
  src: number;
  dst: number;
  /** Whether the packet is IPv6: then its addresses are `words` (source 0–3, destination 4–7). */
  v6: boolean;
  words: Uint32Array;
  protocol: number;
  srcPort: number;
  dstPort: number;
  /** False for a non-first fragment or a frame cut before the ports. */
  hasPorts: boolean;
}

/** A header record to fill with `readInnerHeader`, made once per receiver (reading allocates nothing). */
export function newInnerHeader(): InnerHeader {
  return {
    src: 0,
    dst: 0,
    v6: false,
    words: new Uint32Array(8),
    protocol: 0,
    srcPort: 0,
    dstPort: 0,
    hasPorts: false,
  };
}

/** Compiles one policy rule. */
export function compileRule(r: PolicyFilterRule): CompiledRule {
  return {
    direction: r.direction === "ingress" ? 1 : r.direction === "egress" ? 2 : 0,
    accept: r.action === "accept",
    protocol: PROTOCOLS[r.protocol],
    remote: r.remoteCidr === undefined || isIpv6Text(r.remoteCidr) ? undefined : parseCidr(r.remoteCidr),
    remote6: r.remoteCidr !== undefined && isIpv6Text(r.remoteCidr) ? block6(r.remoteCidr) : undefined,
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
  const six: bigint[] = [];
  for (const ip of s.ips) {
    const n = isIpv6Text(ip) ? parseIp6(ip) : parseIp(ip);
    if (typeof n === "bigint") six.push(n);
    else if (n !== undefined) ips.add(n);
  }
  const ips6 = new Uint32Array(4 * six.length);
  six.forEach((n, k) => ips6.set(wordsOf(n), 4 * k));
  const local: Block[] = [];
  const local6: Block6w[] = [];
  if (s.whole)
    for (const a of s.localAddresses) {
      if (isIpv6Text(a)) {
        const b = block6(a.includes("/") ? a : `${a}/128`);
        if (b) local6.push(b);
        continue;
      }
      const b = a.includes("/")
        ? parseCidr(a)
        : ((n) => (n === undefined ? undefined : { base: n, len: 32 }))(parseIp(a));
      if (b) local.push(b);
    }
  return {
    policy: s.policy,
    ips: s.whole ? undefined : ips,
    ips6,
    local,
    local6,
    rules: s.rules.map(compileRule),
    mirrorDns: s.mirrorDns,
  };
}

function inBlock(b: Block, a: number): boolean {
  return b.len === 0 || Math.floor(a / 2 ** (32 - b.len)) === Math.floor(b.base / 2 ** (32 - b.len));
}

/** Whether the words at `at` of `w` lie in `b`. */
function inBlock6(b: Block6w, w: Uint32Array, at: number): boolean {
  for (let i = 0, bits = b.len; bits > 0; i++, bits -= 32) {
    const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    if (((w[at + i]! ^ b.words[i]!) & mask) !== 0) return false;
  }
  return true;
}

/** Whether the words at `at` of `w` are one of the addresses in `list` (four words each). */
function among6(list: Uint32Array, w: Uint32Array, at: number): boolean {
  for (let k = 0; k < list.length; k += 4)
    if (
      list[k] === w[at] &&
      list[k + 1] === w[at + 1] &&
      list[k + 2] === w[at + 2] &&
      list[k + 3] === w[at + 3]
    )
      return true;
  return false;
}

/** IPv6 extension headers that may come before the transport header (RFC 8200 section 4). */
const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const DESTINATION_OPTIONS = 60;

/** Reads an IPv6 header at `l3` into `out`, past up to four extension headers. */
function readIpv6Header(buf: Uint8Array, l3: number, end: number, out: InnerHeader): boolean {
  if (l3 + 40 > end || buf[l3]! >> 4 !== 6) return false;
  const w = out.words;
  for (let i = 0; i < 8; i++) {
    const o = l3 + 8 + 4 * i;
    w[i] = ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
  }
  out.v6 = true;
  out.src = 0;
  out.dst = 0;
  let next = buf[l3 + 6]!;
  let at = l3 + 40;
  let first = true;
  for (let n = 0; n < 4 && at + 8 <= end; n++) {
    if (next === FRAGMENT) {
      first &&= (((buf[at + 2]! << 8) | buf[at + 3]!) & 0xfff8) === 0;
      next = buf[at]!;
      at += 8;
    } else if (next === HOP_BY_HOP || next === ROUTING || next === DESTINATION_OPTIONS) {
      next = buf[at]!;
      at += 8 + 8 * buf[at + 1]!;
    } else break;
  }
  out.protocol = next;
  out.hasPorts = first && (next === 6 || next === 17) && at + 4 <= end;
  out.srcPort = out.hasPorts ? (buf[at]! << 8) | buf[at + 1]! : 0;
  out.dstPort = out.hasPorts ? (buf[at + 2]! << 8) | buf[at + 3]! : 0;
  return true;
}

/**
 * Reads the inner frame's IPv4 or IPv6 header into `out` (one VLAN tag or a QinQ pair skipped);
 * false when the frame is neither or is cut before the addresses.
 */
export function readInnerHeader(buf: Uint8Array, start: number, length: number, out: InnerHeader): boolean {
  const end = start + length;
  const l3 = innerL3Offset(buf, start, end);
  if (l3 < 0) return false;
  const etherType = (buf[l3 - 2]! << 8) | buf[l3 - 1]!;
  // IPv4 first: on most clusters nearly every copy is.
  if (etherType !== 0x0800) return etherType === 0x86dd && readIpv6Header(buf, l3, end, out);
  if (l3 + 20 > end || buf[l3]! >> 4 !== 4) return false;
  out.v6 = false;
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

/** Whether a rule's remote CIDR (it has one) holds the packet's remote address: never across families. */
function remoteMatches(r: CompiledRule, h: InnerHeader, ingress: boolean): boolean {
  if (h.v6) return r.remote6 !== undefined && inBlock6(r.remote6, h.words, ingress ? 0 : 4);
  return r.remote !== undefined && inBlock(r.remote, ingress ? h.src : h.dst);
}

/** Whether the rules accept a packet crossing the ENI inbound (`ingress`) or outbound. */
function rulesAccept(rules: readonly CompiledRule[], h: InnerHeader, ingress: boolean): boolean {
  if (rules.length === 0) return true;
  const remotePort = ingress ? h.srcPort : h.dstPort;
  const localPort = ingress ? h.dstPort : h.srcPort;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.direction === (ingress ? 2 : 1)) continue;
    if (r.protocol >= 0 && r.protocol !== h.protocol) continue;
    // Most rules name no remote CIDR: they match both families without a look at the addresses.
    if ((r.remote !== undefined || r.remote6 !== undefined) && !remoteMatches(r, h, ingress)) continue;
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

/** `isLocal` for the IPv6 address at word `at` of the header. */
function isLocal6(s: CompiledSelection, w: Uint32Array, at: number): boolean {
  if (s.ips !== undefined) return among6(s.ips6, w, at);
  for (let i = 0; i < s.local6.length; i++) if (inBlock6(s.local6[i]!, w, at)) return true;
  return false;
}

function isAmazonDns(h: InnerHeader): boolean {
  return h.v6
    ? among6(AMAZON_DNS6, h.words, 0) || among6(AMAZON_DNS6, h.words, 4)
    : h.src === AMAZON_DNS || h.dst === AMAZON_DNS;
}

/**
 * Whether a packet belongs to a selection: to or from one of its addresses, accepted by its rules
 * in that direction, and not DNS to the Amazon DNS server unless the policy mirrors DNS.
 */
export function selects(s: CompiledSelection, h: InnerHeader): boolean {
  if (!s.mirrorDns && h.hasPorts && (h.srcPort === 53 || h.dstPort === 53) && isAmazonDns(h)) return false;
  if (h.v6)
    return (
      (isLocal6(s, h.words, 4) && rulesAccept(s.rules, h, true)) ||
      (isLocal6(s, h.words, 0) && rulesAccept(s.rules, h, false))
    );
  return (
    (isLocal(s, h.dst) && rulesAccept(s.rules, h, true)) ||
    (isLocal(s, h.src) && rulesAccept(s.rules, h, false))
  );
}
