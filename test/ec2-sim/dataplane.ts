/**
 * The emulator's data plane: applies each source ENI's sessions to synthetic packets the way AWS
 * does (session-number order, first session whose filter accepts wins, rules lowest number first,
 * direction from the ENI's point of view, packet-length truncation) and sends the copies as VXLAN
 * to loopback endpoints standing in for the targets. Loopback only; bounded per call.
 */
import { createSocket, type Socket } from "node:dgram";
import type {
  FilterRule,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../../src/api/inventory.ts";
import { contains, parseCidr, parseIp } from "../../src/plan/ipv4.ts";
import { contains6, isIpv6Text, parseCidr6, parseIp6 } from "../../src/plan/ipv6.ts";
import { buildFrame, vxlanHeader, type SyntheticPacket } from "./packets.ts";
import type { Ec2State } from "./state.ts";

/** Where a target's copies go: a loopback address and UDP port. */
export interface LoopbackEndpoint {
  host?: string;
  port: number;
}

/** One copy the data plane made. */
export interface MirroredCopy {
  packet: number;
  trafficMirrorSessionId: string;
  networkInterfaceId: string;
  direction: "ingress" | "egress";
  virtualNetworkId: number;
  trafficMirrorTargetId: string;
  /** Inner frame bytes sent. */
  length: number;
  truncated: boolean;
  sent: boolean;
}

/** The most packets one call may ask for: a guard so a test cannot flood the machine. */
export const MAX_PACKETS_PER_CALL = 100_000;
// Amazon DNS at the VPC resolver's link-local addresses (IPv4, and IPv6 on Nitro instances).
const AMAZON_DNS = new Set(["169.254.169.253", "fd00:ec2::253"]);
// Largest inner frame delivered whole to an instance target: MTU 9001 − 54 bytes of overhead + 14.
const MAX_INNER_FRAME_TO_ENI = 9001 - 54 + 14;

/** Whether `ip` lies in `cidr`; never across families (AWS matches a rule's CIDRs to packets of their family). */
function inCidr(cidr: string, ip: string): boolean {
  if (isIpv6Text(cidr) || isIpv6Text(ip)) {
    const b = isIpv6Text(cidr) ? parseCidr6(cidr) : undefined;
    const n = isIpv6Text(ip) ? parseIp6(ip) : undefined;
    return b !== undefined && n !== undefined && contains6(b, n);
  }
  const b = parseCidr(cidr);
  const n = parseIp(ip);
  return b !== undefined && n !== undefined && contains(b, n);
}

/** Whether an ENI holds an address: a private IPv4 or IPv6 address, or inside a delegated prefix. */
export function eniHolds(e: NetworkInterface, ip: string): boolean {
  if (isIpv6Text(ip)) {
    const n = parseIp6(ip);
    return (
      (e.ipv6Addresses ?? []).some((a) => parseIp6(a) === n) ||
      (e.ipv6Prefixes ?? []).some((p) => inCidr(p, ip))
    );
  }
  return e.privateIps.includes(ip) || e.ipv4Prefixes.some((p) => inCidr(p, ip));
}

function ruleMatches(r: FilterRule, p: SyntheticPacket): boolean {
  if (r.protocol !== undefined && r.protocol !== (p.protocol ?? 6)) return false;
  if (!inCidr(r.sourceCidrBlock, p.src) || !inCidr(r.destinationCidrBlock, p.dst)) return false;
  const inRange = (range: { fromPort: number; toPort: number } | undefined, port = 0): boolean =>
    range === undefined || (port >= range.fromPort && port <= range.toPort);
  return inRange(r.sourcePortRange, p.srcPort) && inRange(r.destinationPortRange, p.dstPort);
}

/** Whether a session's filter accepts a packet crossing its ENI in a direction. */
export function filterAccepts(
  state: Ec2State,
  s: MirrorSession,
  p: SyntheticPacket,
  direction: "ingress" | "egress",
): boolean {
  const f = state.filters.get(s.trafficMirrorFilterId);
  return f !== undefined && mirrorFilterAccepts(f, p, direction);
}

/** Whether the filter mirrors a TCP packet from a remote address to `ip` (an IPv4 address of its ENI). */
export function mirrorsInboundTo(f: MirrorFilter, ip: string): boolean {
  const probe = { src: "198.51.100.7", dst: ip, protocol: 6, srcPort: 40_000, dstPort: 80 };
  return mirrorFilterAccepts(f, probe, "ingress");
}

/** Whether a filter accepts a packet crossing its session's ENI in a direction (AWS's rule order). */
export function mirrorFilterAccepts(
  f: MirrorFilter,
  p: SyntheticPacket,
  direction: "ingress" | "egress",
): boolean {
  const dns = (AMAZON_DNS.has(p.dst) || AMAZON_DNS.has(p.src)) && (p.dstPort === 53 || p.srcPort === 53);
  if (dns && !f.networkServices.includes("amazon-dns")) return false;
  const rules = [...(direction === "ingress" ? f.ingressRules : f.egressRules)].sort(
    (a, b) => a.ruleNumber - b.ruleNumber,
  );
  const first = rules.find((r) => ruleMatches(r, p));
  return first?.action === "accept";
}

/** The (ENI, direction) pairs a packet crosses: egress at the sender's ENI, ingress at the receiver's. */
export function crossings(
  state: Ec2State,
  p: SyntheticPacket,
): { eni: NetworkInterface; direction: "ingress" | "egress" }[] {
  const enis = [...state.enis.values()];
  const from = enis.find((e) => eniHolds(e, p.src));
  const to = enis.find((e) => eniHolds(e, p.dst));
  // Traffic between two addresses of one instance stays on the host.
  if (from && to && from.instanceId !== undefined && from.instanceId === to.instanceId) return [];
  return [
    ...(from ? [{ eni: from, direction: "egress" as const }] : []),
    ...(to ? [{ eni: to, direction: "ingress" as const }] : []),
  ];
}

function macOf(ip: string): string {
  // Locally administered, from the address's last 32 bits.
  const n = isIpv6Text(ip) ? Number((parseIp6(ip) ?? 0n) & 0xffffffffn) : (parseIp(ip) ?? 0);
  return ["02", "00", ...[24, 16, 8, 0].map((s) => ((n >>> s) & 255).toString(16).padStart(2, "0"))].join(
    ":",
  );
}

/** A hash of a packet's flow, the same for both directions (addresses, protocol, ports). */
function flowHash(p: SyntheticPacket): number {
  const ends = [`${p.src}:${p.srcPort ?? 0}`, `${p.dst}:${p.dstPort ?? 0}`].sort().join("|");
  let h = 2166136261;
  for (const ch of `${ends}|${p.protocol}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h;
}

/** Applies sessions and sends copies; owns one UDP socket for its lifetime. */
export class DataPlane {
  readonly endpoints = new Map<string, LoopbackEndpoint>();
  readonly #state: Ec2State;
  #socket: Socket | undefined;
  /** With `spreadFlows`: one socket per outer source port, chosen by the inner flow. */
  #flowSockets: Socket[] = [];

  constructor(state: Ec2State) {
    this.#state = state;
  }

  /** Maps a target (tmt id, ENI id, NLB ARN or GWLB endpoint id) to a loopback endpoint. */
  setEndpoint(key: string, e: LoopbackEndpoint): void {
    if (!/^127\.\d+\.\d+\.\d+$/.test(e.host ?? "127.0.0.1"))
      throw new Error("data-plane endpoints must be on loopback");
    this.endpoints.set(key, e);
  }

  /** Mirrors the packets; resolves when every datagram is handed to the kernel. */
  async send(packets: readonly SyntheticPacket[]): Promise<MirroredCopy[]> {
    if (packets.length > MAX_PACKETS_PER_CALL)
      throw new Error(`at most ${MAX_PACKETS_PER_CALL} packets per call`);
    const copies: MirroredCopy[] = [];
    for (const [i, p] of packets.entries()) {
      for (const { eni, direction } of crossings(this.#state, p)) {
        const session = [...this.#state.sessions.values()]
          .filter((s) => s.networkInterfaceId === eni.networkInterfaceId)
          .sort((a, b) => a.sessionNumber - b.sessionNumber)
          .find((s) => filterAccepts(this.#state, s, p, direction));
        if (session) copies.push(await this.#mirror({ packet: p, index: i, eni, direction, session }));
      }
    }
    return copies;
  }

  async #mirror(c: {
    packet: SyntheticPacket;
    index: number;
    eni: NetworkInterface;
    direction: "ingress" | "egress";
    session: MirrorSession;
  }): Promise<MirroredCopy> {
    const target = this.#state.targets.get(c.session.trafficMirrorTargetId);
    const full = buildFrame(c.packet, { src: macOf(c.packet.src), dst: macOf(c.packet.dst) });
    let keep = c.session.packetLength ?? full.length;
    if (target?.networkInterfaceId !== undefined) keep = Math.min(keep, MAX_INNER_FRAME_TO_ENI);
    const inner = full.subarray(0, Math.min(keep, full.length));
    const endpoint = target ? this.#endpointOf(target) : undefined;
    if (endpoint)
      await this.#sendDatagram(
        Buffer.concat([vxlanHeader(c.session.virtualNetworkId), inner]),
        endpoint,
        flowHash(c.packet),
      );
    return {
      packet: c.index,
      trafficMirrorSessionId: c.session.trafficMirrorSessionId,
      networkInterfaceId: c.eni.networkInterfaceId,
      direction: c.direction,
      virtualNetworkId: c.session.virtualNetworkId,
      trafficMirrorTargetId: c.session.trafficMirrorTargetId,
      length: inner.length,
      truncated: inner.length < full.length,
      sent: endpoint !== undefined,
    };
  }

  #endpointOf(t: MirrorTarget): LoopbackEndpoint | undefined {
    const keys = [
      t.trafficMirrorTargetId,
      t.networkInterfaceId,
      t.networkLoadBalancerArn,
      t.gatewayLoadBalancerEndpointId,
    ];
    for (const k of keys) if (k && this.endpoints.has(k)) return this.endpoints.get(k);
    return undefined;
  }

  /**
   * Sends each inner flow's copies from one of `n` outer source ports, as AWS does (it derives the
   * outer source port from the inner flow), so a collector's `SO_REUSEPORT` workers share the
   * flows. By default every copy leaves from one socket.
   */
  spreadFlows(n: number): void {
    for (const s of this.#flowSockets) s.close();
    this.#flowSockets = Array.from({ length: n }, () => createSocket("udp4"));
  }

  #sendDatagram(buf: Buffer, e: LoopbackEndpoint, flow: number): Promise<void> {
    this.#socket ??= createSocket("udp4");
    const socket = this.#flowSockets.length
      ? this.#flowSockets[flow % this.#flowSockets.length]!
      : this.#socket;
    return new Promise((resolve, reject) =>
      socket.send(buf, e.port, e.host ?? "127.0.0.1", (err) => (err ? reject(err) : resolve())),
    );
  }

  /** Closes the sockets. */
  close(): void {
    this.#socket?.close();
    this.#socket = undefined;
    for (const s of this.#flowSockets) s.close();
    this.#flowSockets = [];
  }
}
