// The receive path without a socket: routing by VNI, counters, and a fuzz run of a million random
// and malformed datagrams in which nothing throws and every datagram is counted exactly once.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildFrame, vxlanHeader } from "../../test/ec2-sim/packets.ts";
import { readPcapng } from "../../test/fixtures/pcapng-read.ts";
import type { VniMap } from "../api/vni-map.ts";
import { Receiver } from "./receiver.ts";
import { MALFORMED_REASONS } from "./vxlan.ts";

const frame = buildFrame(
  { src: "10.0.0.1", dst: "10.0.1.20", srcPort: 1234, dstPort: 80, payloadLength: 60 },
  { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
);
const map: VniMap = {
  version: 1,
  sessions: [
    { vni: 11, policies: ["shop/web"], networkInterfaceId: "eni-a", sourceIp: "10.0.1.10", pods: [] },
    // A session shared by two policies: each gets the packet in its own files.
    {
      vni: 12,
      policies: ["shop/db", "audit/all"],
      networkInterfaceId: "eni-b",
      sourceIp: "10.0.1.11",
      pods: [],
    },
  ],
};
let root: string;

function makeReceiver(captureUnknown = false): Receiver {
  const r = new Receiver({
    host: "127.0.0.1",
    port: 0,
    recvBufferBytes: 1 << 20,
    reusePort: false,
    root,
    worker: "w0",
    rotation: { maxFileBytes: 64 << 20, maxFileMs: 3_600_000, retryMs: 1000 },
    captureUnknown,
    log: pino({ level: "silent" }),
  });
  r.setMap(map);
  return r;
}

const packetsIn = (dir: string): number =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith(".pcapng"))
    .reduce((n, f) => n + readPcapng(join(root, dir, f)).packets.length, 0);

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "tmo-rx-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("Receiver.handle", () => {
  it("routes by VNI to every policy of the session and counts the rest", async () => {
    const r = makeReceiver(true);
    for (const vni of [11, 12, 12, 99]) r.handle(Buffer.concat([vxlanHeader(vni), frame]));
    r.handle(Buffer.alloc(30)); // no I flag
    await r.stop();
    expect(Object.fromEntries([...r.policies].map(([k, v]) => [k, v.packets]))).toEqual({
      "shop/web": 1,
      "shop/db": 2,
      "audit/all": 2,
    });
    expect(r.counters).toMatchObject({ datagrams: 5, unknownVniPackets: 1, malformed: [0, 1, 0] });
    expect([
      packetsIn("shop/web"),
      packetsIn("shop/db"),
      packetsIn("audit/all"),
      packetsIn("_unknown"),
    ]).toEqual([1, 2, 2, 1]);
  });

  it("closes the files of a policy that left the map and keeps its counters", async () => {
    const r = makeReceiver();
    r.handle(Buffer.concat([vxlanHeader(11), frame]));
    r.setMap({ version: 1, sessions: [map.sessions[1]!] });
    expect(r.fileSets.get("shop/web")!.open).toBe(false);
    await r.idle();
    expect(packetsIn("shop/web")).toBe(1);
    r.handle(Buffer.concat([vxlanHeader(11), frame]));
    expect(r.counters.unknownVniPackets).toBe(1);
    expect(r.policies.get("shop/web")!.packets).toBe(1);
    await r.stop();
  });

  it("survives a million random and malformed datagrams and counts every one", async () => {
    const r = makeReceiver();
    // A seeded xorshift: the run is the same every time, and a failure can be replayed.
    let s = 0x2545f491;
    const rand = (n: number): number => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) % n;
    };
    const valid = Buffer.concat([vxlanHeader(11), frame]);
    const scratch = Buffer.alloc(valid.length + 64);
    const N = 1_000_000;
    let routed = 0;
    for (let i = 0; i < N; i++) {
      const kind = rand(6);
      let len: number;
      if (kind === 0) {
        len = rand(scratch.length); // random bytes, random length (including 0)
        for (let j = 0; j < len; j++) scratch[j] = rand(256);
      } else if (kind === 1) {
        len = rand(valid.length); // a valid datagram cut anywhere
        valid.copy(scratch, 0, 0, len);
      } else if (kind === 2) {
        len = valid.length; // one bit flipped somewhere in the header or the frame
        valid.copy(scratch);
        scratch[rand(len)]! ^= 1 << rand(8);
      } else {
        len = valid.length; // valid, to a known or an unknown VNI
        valid.copy(scratch);
        scratch.writeUIntBE(kind === 3 ? 11 : kind === 4 ? 12 : 1000 + rand(1000), 4, 3);
      }
      const before = r.counters.unknownVniPackets + r.counters.malformed.reduce((a, b) => a + b, 0);
      r.handle(scratch.subarray(0, len));
      if (r.counters.unknownVniPackets + r.counters.malformed.reduce((a, b) => a + b, 0) === before) routed++;
    }
    await r.stop();
    const c = r.counters;
    const malformed = c.malformed.reduce((a, b) => a + b, 0);
    expect(c.datagrams).toBe(N);
    expect(malformed + c.unknownVniPackets + routed).toBe(N);
    const perPolicy = r.policies.get("shop/web")!.packets + r.policies.get("shop/db")!.packets;
    expect(perPolicy).toBe(routed);
    // Every reason occurred, so each path was exercised.
    expect(
      c.malformed.every((n) => n > 0),
      JSON.stringify(c.malformed),
    ).toBe(true);
    expect(MALFORMED_REASONS).toHaveLength(c.malformed.length);
    // What was routed is on disk, whole: the files parse and hold exactly that many packets.
    expect(packetsIn("shop/web") + packetsIn("shop/db")).toBe(routed);
    expect(packetsIn("audit/all")).toBe(r.policies.get("audit/all")!.packets);
  }, 120_000);
});
