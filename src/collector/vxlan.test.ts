import { describe, expect, it } from "vitest";
import { buildFrame, vxlanHeader } from "../../test/ec2-sim/packets.ts";
import { Malformed, originalFrameLength, readVni } from "./vxlan.ts";

const macs = { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" };
const frame = buildFrame(
  { src: "10.0.0.1", dst: "10.0.0.2", srcPort: 1, dstPort: 80, payloadLength: 100 },
  macs,
);

describe("readVni", () => {
  it("reads the 24-bit VNI of a well-formed datagram", () => {
    for (const vni of [0, 1, 4789, 0xabcdef, 0xffffff]) {
      expect(readVni(Buffer.concat([vxlanHeader(vni), frame]))).toBe(vni);
    }
  });

  it("reads a datagram at an offset of a shared buffer (the batch path), not the bytes before it", () => {
    const d = Buffer.concat([vxlanHeader(0xabcdef), frame]);
    const shared = Buffer.concat([Buffer.concat([Buffer.from([0x0c, 1, 2, 3, 4, 5, 6, 7]), frame]), d]);
    expect(readVni(shared, d.length, shared.length - d.length)).toBe(0xabcdef);
    expect(readVni(shared, d.length, 0)).toBe(Malformed.reserved);
  });

  it.each([
    ["too short for a header", Buffer.alloc(7), Malformed.short],
    ["a header and no Ethernet header", Buffer.concat([vxlanHeader(5), Buffer.alloc(13)]), Malformed.short],
    ["the I flag missing", Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 5, 0]), frame]), Malformed.flags],
    [
      "another flag set",
      Buffer.concat([Buffer.from([0x0c, 0, 0, 0, 0, 0, 5, 0]), frame]),
      Malformed.reserved,
    ],
    [
      "reserved bytes set",
      Buffer.concat([Buffer.from([0x08, 0, 1, 0, 0, 0, 5, 0]), frame]),
      Malformed.reserved,
    ],
    [
      "the last byte set",
      Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 5, 7]), frame]),
      Malformed.reserved,
    ],
  ])("refuses %s", (_name, buf, code) => {
    expect(readVni(buf)).toBe(code);
  });

  it("honours the length given rather than the buffer's", () => {
    const buf = Buffer.concat([vxlanHeader(9), frame]);
    expect(readVni(buf, 21)).toBe(Malformed.short);
    expect(readVni(buf, 22)).toBe(9);
  });
});

describe("originalFrameLength", () => {
  it("is the captured length for a whole IPv4 frame", () => {
    expect(originalFrameLength(frame, 0, frame.length)).toBe(frame.length);
  });

  it("recovers the length of a truncated IPv4 frame from its IP header", () => {
    expect(originalFrameLength(frame, 0, 64)).toBe(frame.length);
    // With an offset into a larger buffer, as the receiver calls it.
    const datagram = Buffer.concat([vxlanHeader(1), frame.subarray(0, 40)]);
    expect(originalFrameLength(datagram, 8, 40)).toBe(frame.length);
  });

  it("reads through a VLAN tag and handles IPv6", () => {
    const tagged = Buffer.concat([frame.subarray(0, 12), Buffer.from([0x81, 0, 0, 5]), frame.subarray(12)]);
    expect(originalFrameLength(tagged, 0, 50)).toBe(tagged.length);
    const v6 = Buffer.alloc(14 + 40);
    v6.writeUInt16BE(0x86dd, 12);
    v6[14] = 0x60;
    v6.writeUInt16BE(1000, 18);
    expect(originalFrameLength(v6, 0, v6.length)).toBe(14 + 40 + 1000);
  });

  it("keeps the captured length when the header is missing, odd or claims less", () => {
    expect(originalFrameLength(frame, 0, 15)).toBe(15);
    const arp = Buffer.from(frame);
    arp.writeUInt16BE(0x0806, 12);
    expect(originalFrameLength(arp, 0, 60)).toBe(60);
    const lying = Buffer.from(frame);
    lying.writeUInt16BE(20, 16);
    expect(originalFrameLength(lying, 0, lying.length)).toBe(lying.length);
  });
});
