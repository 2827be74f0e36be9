// The receive path without a socket: routing by VNI, counters, and a fuzz run of a million random
// and malformed datagrams in which nothing throws and every datagram is counted exactly once; then
// the same million through the native batch path's socket, which must count and keep the same.
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildFrame, vxlanHeader } from "../../test/ec2-sim/packets.ts";
import { readPcapng } from "../../test/fixtures/pcapng-read.ts";
import type { VniMap } from "../api/vni-map.ts";
import { Receiver, type ReceiverOptions } from "./receiver.ts";
import { MALFORMED_REASONS } from "./vxlan.ts";

const frame = buildFrame(
  { src: "10.0.0.1", dst: "10.0.1.20", srcPort: 1234, dstPort: 80, payloadLength: 60 },
  { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
);
const frameTo = (dst: string, dstPort = 80): Buffer =>
  buildFrame(
    { src: "10.0.0.1", dst, srcPort: 1234, dstPort, payloadLength: 60 },
    { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
  );
const everything = { target: "collector", rules: [], mirrorDns: false };
const map: VniMap = {
  version: 1,
  sessions: [
    {
      vni: 11,
      policies: ["shop/web"],
      networkInterfaceId: "eni-a",
      sourceIp: "10.0.1.10",
      pods: [{ name: "shop/web-0", ip: "10.0.1.20" }],
      selections: [{ policy: "shop/web", ips: ["10.0.1.20"] }],
    },
    // A session shared by two namespaces' policies: each gets only its own pods' packets.
    {
      vni: 12,
      policies: ["audit/all", "shop/db"],
      networkInterfaceId: "eni-b",
      sourceIp: "10.0.1.11",
      pods: [
        { name: "shop/db-0", ip: "10.0.1.20" },
        { name: "audit/probe-0", ip: "10.0.1.21" },
      ],
      selections: [
        { policy: "audit/all", ips: ["10.0.1.21"] },
        { policy: "shop/db", ips: ["10.0.1.20"] },
      ],
    },
  ],
  policies: { "shop/web": everything, "shop/db": everything, "audit/all": everything },
};
let root: string;

const options = (): ReceiverOptions => ({
  host: "127.0.0.1",
  port: 0,
  recvBufferBytes: 1 << 20,
  reusePort: false,
  root,
  worker: "w0",
  rotation: { maxFileBytes: 64 << 20, maxFileMs: 3_600_000, retryMs: 1000 },
  captureUnknown: false,
  log: pino({ level: "silent" }),
});

function makeReceiver(captureUnknown = false, receive: "auto" | "batch" | "dgram" = "dgram"): Receiver {
  const r = new Receiver({ ...options(), captureUnknown, receive });
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
  it("keeps each packet for exactly the policies that selected its pod, and counts the rest", async () => {
    const r = makeReceiver(true);
    const send = (vni: number, f: Buffer): void => r.handle(Buffer.concat([vxlanHeader(vni), f]));
    send(11, frame);
    send(12, frame); // shop's pod
    send(12, frame);
    send(12, frameTo("10.0.1.21")); // audit's pod
    send(12, frameTo("10.0.1.99")); // on the ENI, selected by nobody
    send(99, frame);
    r.handle(Buffer.alloc(30)); // no I flag
    await r.stop();
    const counters = Object.fromEntries(
      [...r.policies].map(([k, v]) => [k, [v.packets, v.unselectedPackets]]),
    );
    expect(counters).toEqual({ "shop/web": [1, 0], "shop/db": [2, 1], "audit/all": [1, 1] });
    expect(r.counters).toMatchObject({
      datagrams: 7,
      unknownVniPackets: 1,
      unselectedPackets: 1,
      malformed: [0, 1, 0],
    });
    expect([
      packetsIn("shop/web"),
      packetsIn("shop/db"),
      packetsIn("audit/all"),
      packetsIn("_unknown"),
    ]).toEqual([1, 2, 1, 1]);
    // Each policy's interface description names only that policy and its own pods.
    const described = (dir: string): string[] =>
      readdirSync(join(root, dir))
        .filter((f) => f.endsWith(".pcapng"))
        .flatMap((f) => readPcapng(join(root, dir, f)).interfaces.map((i) => i.description ?? ""));
    expect(described("audit/all")).toEqual([expect.stringContaining("policy audit/all;")]);
    expect(described("audit/all").join()).not.toMatch(/shop|10\.0\.1\.20/);
    expect(described("shop/db").join()).not.toMatch(/audit|10\.0\.1\.21/);
  });

  it("attributes a copy to every policy on the ENI and target that selected it, whichever session carried it", async () => {
    const r = makeReceiver();
    const pod = { name: "shop/web-0", ip: "10.0.1.20" };
    const web80 = {
      direction: "both" as const,
      action: "accept" as const,
      protocol: "TCP" as const,
      localPorts: { from: 80, to: 80 },
    };
    r.setMap({
      version: 1,
      sessions: [
        // Higher priority, everything of the pod: AWS delivers the pod's port-80 packets here.
        {
          vni: 21,
          policies: ["shop/all"],
          networkInterfaceId: "eni-c",
          sourceIp: "10.0.1.12",
          pods: [pod],
          selections: [{ policy: "shop/all", ips: [pod.ip] }],
        },
        {
          vni: 22,
          policies: ["shop/http"],
          networkInterfaceId: "eni-c",
          sourceIp: "10.0.1.12",
          pods: [pod],
          selections: [{ policy: "shop/http", ips: [pod.ip] }],
        },
        // Same ENI and pod, another target: copies through vni 21 are not its to see.
        {
          vni: 23,
          policies: ["shop/ids"],
          networkInterfaceId: "eni-c",
          sourceIp: "10.0.1.12",
          pods: [pod],
          selections: [{ policy: "shop/ids", ips: [pod.ip] }],
        },
      ],
      policies: {
        "shop/all": everything,
        "shop/http": { target: "collector", rules: [web80], mirrorDns: false },
        "shop/ids": { target: "other", rules: [], mirrorDns: false },
      },
    });
    r.handle(Buffer.concat([vxlanHeader(21), frameTo(pod.ip, 80)]));
    r.handle(Buffer.concat([vxlanHeader(21), frameTo(pod.ip, 443)]));
    await r.stop();
    const kept = ["shop/all", "shop/http", "shop/ids"].map((k) => r.policies.get(k)!.packets);
    expect(kept).toEqual([2, 1, 0]);
    expect([packetsIn("shop/all"), packetsIn("shop/http")]).toEqual([2, 1]);
  });

  it("reads a map of an older operator: one policy's session by its pods, a shared one kept for nobody", async () => {
    const r = makeReceiver();
    const legacy = (vni: number, policies: string[]) => ({
      vni,
      policies,
      networkInterfaceId: "eni-d",
      sourceIp: "10.0.1.13",
      pods: [{ name: "shop/web-0", ip: "10.0.1.20" }],
    });
    r.setMap({ version: 1, sessions: [legacy(31, ["shop/web"]), legacy(32, ["shop/db", "audit/all"])] });
    r.handle(Buffer.concat([vxlanHeader(31), frame]));
    r.handle(Buffer.concat([vxlanHeader(31), frameTo("10.0.1.99")]));
    r.handle(Buffer.concat([vxlanHeader(32), frame]));
    await r.stop();
    expect(r.policies.get("shop/web")).toMatchObject({ packets: 1, unselectedPackets: 1 });
    expect(r.policies.get("shop/db")).toMatchObject({ packets: 0, unselectedPackets: 1 });
    expect(r.counters.unselectedPackets).toBe(2);
  });

  it("closes the files of a policy that left the map and keeps its counters", async () => {
    const r = makeReceiver();
    r.handle(Buffer.concat([vxlanHeader(11), frame]));
    r.setMap({ ...map, sessions: [map.sessions[1]!] });
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
    let routed = 0;
    const N = fuzz(1_000_000, (d) => {
      const before = r.counters.unknownVniPackets + r.counters.malformed.reduce((a, b) => a + b, 0);
      r.handle(d);
      if (r.counters.unknownVniPackets + r.counters.malformed.reduce((a, b) => a + b, 0) === before) routed++;
    });
    await r.stop();
    const c = r.counters;
    const malformed = c.malformed.reduce((a, b) => a + b, 0);
    expect(c.datagrams).toBe(N);
    expect(malformed + c.unknownVniPackets + routed).toBe(N);
    // A routed datagram is kept for its policies or counted as selected by none, never both.
    const kept = r.policies.get("shop/web")!.packets + r.policies.get("shop/db")!.packets;
    expect(kept + c.unselectedPackets).toBe(routed);
    expect(kept).toBeGreaterThan(N / 4);
    expect(c.unselectedPackets).toBeGreaterThan(0);
    // Every reason occurred, so each path was exercised.
    expect(
      c.malformed.every((n) => n > 0),
      JSON.stringify(c.malformed),
    ).toBe(true);
    expect(MALFORMED_REASONS).toHaveLength(c.malformed.length);
    // What was routed is on disk, whole: the files parse and hold exactly that many packets.
    expect(packetsIn("shop/web") + packetsIn("shop/db")).toBe(kept);
    // The fuzz frames go to shop's pod or to addresses nobody selected: none is audit's.
    expect(r.policies.get("audit/all")!.packets).toBe(0);
  }, 120_000);
});

describe("the batch receive path", () => {
  it("is what the receiver uses where the addon is built, and stamps packets with the kernel's receive time", async () => {
    const r = makeReceiver(false, "auto");
    const port = await r.start();
    expect(r.receivePath).toBe("batch");
    expect(r.effectiveRecvBufferBytes).toBeGreaterThan(0);
    const tx = createSocket("udp4");
    const before = Date.now() * 1000;
    await new Promise<void>((ok, fail) =>
      tx.send(Buffer.concat([vxlanHeader(11), frame]), port, "127.0.0.1", (e) => (e ? fail(e) : ok())),
    );
    while (r.counters.datagrams < 1) await new Promise((ok) => setTimeout(ok, 5));
    const after = Date.now() * 1000 + 1000;
    tx.close();
    await r.stop();
    const [file] = readdirSync(join(root, "shop/web")).filter((f) => f.endsWith(".pcapng"));
    const [packet] = readPcapng(join(root, "shop/web", file!)).packets;
    expect(packet!.timestampMicros).toBeGreaterThanOrEqual(before - 1000);
    expect(packet!.timestampMicros).toBeLessThanOrEqual(after);
  });

  it.each(["batch", "dgram"] as const)(
    "%s: warns when the kernel grants less receive buffer than asked, and only then",
    async (receive) => {
      const warnings = async (recvBufferBytes: number): Promise<string[]> => {
        const lines: string[] = [];
        const log = pino({ level: "warn" }, { write: (l: string) => void lines.push(l) });
        const r = new Receiver({ ...options(), receive, recvBufferBytes, log });
        await r.start();
        await r.stop();
        return lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      };
      // Far above any net.core.rmem_max, and far below one.
      expect(await warnings(1 << 30)).toEqual([expect.stringContaining("net.core.rmem_max caps it")]);
      expect(await warnings(64 << 10)).toEqual([]);
    },
  );

  it("refuses to start in batch mode when the addon cannot load, and falls back in auto mode", async () => {
    const missing = join(root, "no-such-addon.node");
    const strict = new Receiver({ ...options(), receive: "batch", addonPath: missing });
    await expect(strict.start()).rejects.toThrow(
      /Batch receive is not available: .*no-such-addon.node is not built/,
    );
    await strict.stop();
    const lenient = new Receiver({ ...options(), receive: "auto", addonPath: missing });
    await lenient.start();
    expect(lenient.receivePath).toBe("dgram");
    await lenient.stop();
  });

  it("receives the million fuzz datagrams over a socket and counts and keeps exactly what handle() does", async () => {
    // The same seeded datagrams, once through handle() and once through the addon's socket, in
    // batches at offsets of one shared buffer: every counter and every file must come out the same.
    const direct = makeReceiver(false, "dgram");
    const N = fuzz(1_000_000, (d) => direct.handle(d));
    await direct.stop();
    const expected = {
      counters: structuredClone(direct.counters),
      policies: structuredClone([...direct.policies]),
    };
    const onDisk = ["shop/web", "shop/db"].map(packetsIn);
    rmSync(root, { recursive: true, force: true });
    root = mkdtempSync(join(tmpdir(), "tmo-rx-"));

    const r = makeReceiver(false, "batch");
    const port = await r.start();
    expect(r.receivePath).toBe("batch");
    const tx = createSocket("udp4");
    tx.connect(port, "127.0.0.1");
    await once(tx, "connect");
    // Paced so the loopback socket buffer never overflows: a chunk, then wait until it arrived.
    const chunk: Buffer[] = [];
    let sent = 0;
    const flush = async (): Promise<void> => {
      await Promise.all(
        chunk.map((d) => new Promise<void>((ok, fail) => tx.send(d, (e) => (e ? fail(e) : ok())))),
      );
      sent += chunk.length;
      chunk.length = 0;
      const deadline = Date.now() + 10_000;
      while (r.counters.datagrams < sent && Date.now() < deadline)
        await new Promise((ok) => setImmediate(ok));
      expect(r.counters.datagrams, "datagrams lost on loopback").toBe(sent);
    };
    const datagrams: Buffer[] = [];
    fuzz(N, (d) => datagrams.push(Buffer.from(d)));
    for (const d of datagrams) {
      chunk.push(d);
      if (chunk.length === 2000) await flush();
    }
    await flush();
    tx.close();
    await r.stop();
    expect({ counters: r.counters, policies: [...r.policies] }).toEqual(expected);
    expect(["shop/web", "shop/db"].map(packetsIn)).toEqual(onDisk);
  }, 180_000);
});

/**
 * Feeds `deliver` a seeded run of random, cut, bit-flipped and valid datagrams (the same every
 * time, so a failure can be replayed; the buffer is reused between calls). Returns how many.
 */
function fuzz(n: number, deliver: (datagram: Buffer) => void): number {
  // A seeded xorshift.
  let s = 0x2545f491;
  const rand = (m: number): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % m;
  };
  const valid = Buffer.concat([vxlanHeader(11), frame]);
  const scratch = Buffer.alloc(valid.length + 64);
  for (let i = 0; i < n; i++) {
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
    deliver(scratch.subarray(0, len));
  }
  return n;
}
