/**
 * pcapng (draft-ietf-opsawg-pcapng) as the collector writes it: one Section Header Block per file,
 * one Interface Description Block per mirror session (named so Wireshark shows the policy and ENI a
 * packet came from), Enhanced Packet Blocks for the packets. Every interface has link type
 * Ethernet and the same snap length, which is what libpcap (tcpdump, Suricata) needs to read a
 * pcapng file. Little-endian throughout; timestamps in microseconds (the default resolution).
 *
 * Packet blocks are written straight into a caller's buffer: no allocation per packet.
 */

/** LINKTYPE_ETHERNET. */
export const LINKTYPE_ETHERNET = 1;
/** The snap length of every interface: the largest frame AWS can deliver fits. */
export const SNAP_LENGTH = 65535;
/** Bytes an Enhanced Packet Block adds around the packet data (before padding). */
export const EPB_OVERHEAD = 32;

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;

const pad4 = (n: number): number => (n + 3) & ~3;

function encodeOptions(options: readonly [code: number, value: string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of options) {
    const data = Buffer.from(value, "utf8");
    const head = Buffer.alloc(4);
    head.writeUInt16LE(code, 0);
    head.writeUInt16LE(data.length, 2);
    parts.push(head, data, Buffer.alloc(pad4(data.length) - data.length));
  }
  if (parts.length > 0) parts.push(Buffer.alloc(4)); // opt_endofopt
  return Buffer.concat(parts);
}

function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(total, 4);
  body.copy(out, 8);
  out.writeUInt32LE(total, total - 4);
  return out;
}

/** A Section Header Block naming the writing application. */
export function sectionHeaderBlock(application: string, comment?: string): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(1, 4);
  fixed.writeUInt16LE(0, 6);
  // Section length unknown (-1): the file is written as a stream.
  fixed.writeInt32LE(-1, 8);
  fixed.writeInt32LE(-1, 12);
  const opts: [number, string][] = [[SHB_USERAPPL, application]];
  if (comment) opts.unshift([OPT_COMMENT, comment]);
  return block(SHB, Buffer.concat([fixed, encodeOptions(opts)]));
}

/** An Interface Description Block: one per session, Ethernet, the common snap length. */
export function interfaceDescriptionBlock(name: string, description: string): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(LINKTYPE_ETHERNET, 0);
  fixed.writeUInt32LE(SNAP_LENGTH, 4);
  const opts: [number, string][] = [[IF_NAME, name]];
  if (description) opts.push([IF_DESCRIPTION, description]);
  return block(IDB, Buffer.concat([fixed, encodeOptions(opts)]));
}

/**
 * One packet on its way to disk: a view into the receive buffer. The receiver keeps one instance
 * and overwrites its fields for every datagram, so writing a packet allocates nothing.
 */
export interface PacketView {
  interfaceId: number;
  timestampMicros: number;
  data: Uint8Array;
  start: number;
  length: number;
  originalLength: number;
}

/** Bytes `writeEnhancedPacket` uses for a packet of `captured` bytes. */
export function enhancedPacketSize(captured: number): number {
  return EPB_OVERHEAD + pad4(captured);
}

/**
 * Writes one Enhanced Packet Block into `out` at `offset` and returns the offset after it. The
 * caller makes sure `enhancedPacketSize(length)` bytes are free.
 */
export function writeEnhancedPacket(out: Buffer, offset: number, packet: PacketView): number {
  const total = enhancedPacketSize(packet.length);
  out.writeUInt32LE(EPB, offset);
  out.writeUInt32LE(total, offset + 4);
  out.writeUInt32LE(packet.interfaceId, offset + 8);
  const high = Math.floor(packet.timestampMicros / 0x100000000);
  out.writeUInt32LE(high, offset + 12);
  out.writeUInt32LE(packet.timestampMicros - high * 0x100000000, offset + 16);
  out.writeUInt32LE(packet.length, offset + 20);
  out.writeUInt32LE(packet.originalLength, offset + 24);
  out.set(packet.data.subarray(packet.start, packet.start + packet.length), offset + 28);
  const padded = offset + 28 + pad4(packet.length);
  out.fill(0, offset + 28 + packet.length, padded);
  out.writeUInt32LE(total, padded);
  return padded + 4;
}

/** Classic pcap global header (the PCAP-over-IP stream's format), Ethernet, microseconds. */
export function pcapGlobalHeader(): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(SNAP_LENGTH, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

/** One classic pcap record (header + data) as a new buffer: the stream hands it to sockets. */
export function pcapRecord(p: PacketView): Buffer {
  const out = Buffer.allocUnsafe(16 + p.length);
  const seconds = Math.floor(p.timestampMicros / 1e6);
  out.writeUInt32LE(seconds, 0);
  out.writeUInt32LE(p.timestampMicros - seconds * 1e6, 4);
  out.writeUInt32LE(p.length, 8);
  out.writeUInt32LE(p.originalLength, 12);
  out.set(p.data.subarray(p.start, p.start + p.length), 16);
  return out;
}
