/**
 * VXLAN (RFC 7348) as AWS Traffic Mirroring sends it: an 8-byte header (flags 0x08, 24-bit VNI)
 * followed by the mirrored Ethernet frame. Parsing works on the receive buffer in place and
 * allocates nothing, because it runs once per datagram.
 */

/** Bytes of the VXLAN header. */
export const VXLAN_HEADER_LENGTH = 8;
/** Shortest inner frame worth keeping: an Ethernet header. */
export const MIN_INNER_FRAME = 14;
/** The "I" flag: the VNI field is valid. */
const FLAG_VNI_VALID = 0x08;

/** Why a datagram was refused; negative so it shares a return value with a VNI. */
export const Malformed = {
  /** Shorter than a VXLAN header plus an Ethernet header. */
  short: -1,
  /** The I flag is not set, so the VNI means nothing. */
  flags: -2,
  /** Reserved bits set where RFC 7348 says senders put zeros (not something AWS sends). */
  reserved: -3,
} as const;

/** Names of the malformed reasons, indexed by `-code - 1` (for metrics labels). */
export const MALFORMED_REASONS = ["short", "flags", "reserved"] as const;

/** The VNI of the datagram of `length` bytes at `start`, or a negative `Malformed` code. */
export function readVni(buf: Uint8Array, length: number = buf.length, start = 0): number {
  if (length < VXLAN_HEADER_LENGTH + MIN_INNER_FRAME) return Malformed.short;
  const flags = buf[start]!;
  if ((flags & FLAG_VNI_VALID) === 0) return Malformed.flags;
  // Other flag bits, the 24 reserved bits after the flags and the last byte must be zero.
  if (
    (flags & ~FLAG_VNI_VALID) !== 0 ||
    buf[start + 1] !== 0 ||
    buf[start + 2] !== 0 ||
    buf[start + 3] !== 0 ||
    buf[start + 7] !== 0
  ) {
    return Malformed.reserved;
  }
  return (buf[start + 4]! << 16) | (buf[start + 5]! << 8) | buf[start + 6]!;
}

/**
 * Where the inner frame's network header starts, past one 802.1Q or 802.1ad tag (or a QinQ pair);
 * its EtherType is the two bytes before. -1 when the frame ends first.
 */
export function innerL3Offset(buf: Uint8Array, start: number, end: number): number {
  let l3 = start + 14;
  if (l3 > end) return -1;
  let etherType = (buf[l3 - 2]! << 8) | buf[l3 - 1]!;
  for (let tags = 0; tags < 2 && (etherType === 0x8100 || etherType === 0x88a8); tags++) {
    l3 += 4;
    if (l3 > end) return -1;
    etherType = (buf[l3 - 2]! << 8) | buf[l3 - 1]!;
  }
  return l3;
}

/**
 * The length the inner frame had before AWS cut it to the session's packet length, read from the
 * inner IP header; the captured length when the header says less or cannot be read.
 */
export function originalFrameLength(buf: Uint8Array, start: number, captured: number): number {
  const end = start + captured;
  const l3 = innerL3Offset(buf, start, end);
  if (l3 < 0) return captured;
  const etherType = (buf[l3 - 2]! << 8) | buf[l3 - 1]!;
  let ipLength: number;
  if (etherType === 0x0800 && l3 + 4 <= end && buf[l3]! >> 4 === 4) {
    ipLength = (buf[l3 + 2]! << 8) | buf[l3 + 3]!;
  } else if (etherType === 0x86dd && l3 + 6 <= end && buf[l3]! >> 4 === 6) {
    ipLength = 40 + ((buf[l3 + 4]! << 8) | buf[l3 + 5]!);
  } else {
    return captured;
  }
  const original = l3 - start + ipLength;
  return original > captured ? original : captured;
}
