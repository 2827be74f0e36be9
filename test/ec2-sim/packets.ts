/** Builds synthetic Ethernet/IPv4 and Ethernet/IPv6 frames and VXLAN (RFC 7348) encapsulation. */
import { createHash } from "node:crypto";
import { isIpv6Text, parseIp6 } from "../../src/plan/ipv6.ts";

/** A synthetic packet between two IPs, as a test describes it. */
export interface SyntheticPacket {
  src: string;
  dst: string;
  /** IANA number; 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6. Default 6. IPv6 when both addresses are. */
  protocol?: number;
  srcPort?: number;
  dstPort?: number;
  /** Payload bytes after the L4 header (zero-filled unless `payload` is given). Default 0. */
  payloadLength?: number;
  payload?: string;
}

function ipBytes(ip: string): number[] {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return parts;
}

function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2 === 1) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 header for a payload of `length` bytes. */
export function ipv4Header(opts: { src: string; dst: string; protocol: number; length: number }): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + opts.length, 2);
  h.writeUInt16BE(0x4000, 6); // don't fragment
  h[8] = 64;
  h[9] = opts.protocol;
  Buffer.from(ipBytes(opts.src)).copy(h, 12);
  Buffer.from(ipBytes(opts.dst)).copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return h;
}

/** An IPv6 header (RFC 8200, no extension headers) for a payload of `length` bytes. */
export function ipv6Header(opts: { src: string; dst: string; protocol: number; length: number }): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0); // version 6, no traffic class, no flow label
  h.writeUInt16BE(opts.length, 4);
  h[6] = opts.protocol;
  h[7] = 64;
  for (const [at, ip] of [
    [8, opts.src],
    [24, opts.dst],
  ] as const) {
    const n = parseIp6(ip);
    if (n === undefined) throw new Error(`not an IPv6 address: ${ip}`);
    for (let k = 0; k < 16; k++) h[at + k] = Number((n >> BigInt(8 * (15 - k))) & 0xffn);
  }
  return h;
}

function l4Header(p: SyntheticPacket, protocol: number): Buffer {
  if (protocol === 6) {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(p.srcPort ?? 0, 0);
    h.writeUInt16BE(p.dstPort ?? 0, 2);
    h.writeUInt32BE(1, 4);
    h[12] = 0x50;
    h[13] = 0x18; // PSH, ACK
    h.writeUInt16BE(65535, 14);
    return h;
  }
  if (protocol === 17) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(p.srcPort ?? 0, 0);
    h.writeUInt16BE(p.dstPort ?? 0, 2);
    return h;
  }
  if (protocol === 1) return Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]); // echo request
  if (protocol === 58) return Buffer.from([128, 0, 0, 0, 0, 1, 0, 1]); // ICMPv6 echo request
  return Buffer.alloc(0);
}

/** The full Ethernet frame of a synthetic packet (what AWS puts inside the VXLAN header). */
export function buildFrame(p: SyntheticPacket, macs: { src: string; dst: string }): Buffer {
  const protocol = p.protocol ?? 6;
  const payload = p.payload !== undefined ? Buffer.from(p.payload) : Buffer.alloc(p.payloadLength ?? 0);
  const l4 = l4Header(p, protocol);
  if (protocol === 17) l4.writeUInt16BE(l4.length + payload.length, 4);
  const v6 = isIpv6Text(p.src);
  if (v6 !== isIpv6Text(p.dst)) throw new Error(`${p.src} and ${p.dst} are of different IP families`);
  const header = v6 ? ipv6Header : ipv4Header;
  const ip = header({ src: p.src, dst: p.dst, protocol, length: l4.length + payload.length });
  const eth = Buffer.alloc(14);
  Buffer.from(macs.dst.split(":").map((x) => parseInt(x, 16))).copy(eth, 0);
  Buffer.from(macs.src.split(":").map((x) => parseInt(x, 16))).copy(eth, 6);
  eth.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  return Buffer.concat([eth, ip, l4, payload]);
}

/** The 8-byte VXLAN header: flags 0x08 (VNI valid), 24-bit VNI. */
export function vxlanHeader(vni: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 0x08;
  h.writeUIntBE(vni & 0xffffff, 4, 3);
  return h;
}

/** AWS's outer source port: a hash of the inner flow, so one flow keeps one port. */
export function outerSourcePort(p: SyntheticPacket): number {
  const flow = `${p.src}|${p.dst}|${p.protocol ?? 6}|${p.srcPort ?? 0}|${p.dstPort ?? 0}`;
  const h = createHash("sha1").update(flow).digest();
  return 49152 + (h.readUInt16BE(0) % 16384);
}

/** An outer Ethernet+IPv4+UDP packet around a VXLAN payload (for the emulator's own pcap). */
export function outerFrame(opts: {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  vxlan: Buffer;
}): Buffer {
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(opts.srcPort, 0);
  udp.writeUInt16BE(opts.dstPort, 2);
  udp.writeUInt16BE(8 + opts.vxlan.length, 4);
  const ip = ipv4Header({ src: opts.src, dst: opts.dst, protocol: 17, length: 8 + opts.vxlan.length });
  const eth = Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
  return Buffer.concat([eth, ip, udp, opts.vxlan]);
}

/** A pcap (not pcapng) file header, linktype Ethernet. */
export function pcapHeader(): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(1, 20);
  return h;
}

/** One pcap record. */
export function pcapRecord(frame: Buffer, timeMs: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(Math.floor(timeMs / 1000), 0);
  h.writeUInt32LE(Math.floor((timeMs % 1000) * 1000), 4);
  h.writeUInt32LE(frame.length, 8);
  h.writeUInt32LE(frame.length, 12);
  return Buffer.concat([h, frame]);
}
