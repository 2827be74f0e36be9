// The live stream keeps up with readers and disconnects one that stops reading instead of holding
// memory for it; each client gets only the policy it asked for; plain clients, which ask for
// nothing, get everything only where that is allowed.
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { PacketView } from "./pcapng.ts";
import { readPolicyStream, type StreamedPacket } from "./stream-client.ts";
import { PcapStream } from "./stream.ts";

let stream: PcapStream | undefined;
afterEach(() => stream?.close());

async function client(port: number, request?: string): Promise<{ socket: Socket; bytes: () => number }> {
  const socket = connect(port, "127.0.0.1");
  let n = 0;
  socket.on("data", (d: Buffer) => (n += d.length));
  socket.on("error", () => undefined);
  await new Promise<void>((r) => socket.once("connect", () => r()));
  if (request !== undefined) socket.write(request);
  return { socket, bytes: () => n };
}

function packet(byte: number, length = 1400): PacketView {
  return {
    interfaceId: 0,
    timestampMicros: 1e15 + byte,
    data: Buffer.alloc(length, byte),
    start: 0,
    length,
    originalLength: length,
  };
}

async function clients(s: PcapStream, n: number): Promise<void> {
  for (let i = 0; i < 200 && s.stats.clients < n; i++) await sleep(10);
  expect(s.stats.clients).toBe(n);
}

it("drops a client that stops reading, and only that one", async () => {
  stream = new PcapStream({ maxBufferedBytes: 256 << 10, allowAllPolicies: true, helloMs: 50 });
  const port = await stream.listen("127.0.0.1", 0);
  const reader = await client(port);
  const stalled = await client(port);
  stalled.socket.pause();
  await clients(stream, 2);
  const p = packet(7);
  let sent = 0;
  // Loopback buffers a few MiB before the stalled client's backlog shows; bounded either way.
  while (stream.stats.slowClientsDropped === 0 && sent < 200_000) {
    stream.send(p, ["a/p"]);
    sent++;
    if (sent % 500 === 0) await sleep(1); // lets the reader drain, as a live socket would
  }
  expect(stream.stats.slowClientsDropped).toBe(1);
  expect(stream.stats.clients).toBe(1);
  const expected = 24 + sent * (16 + 1400);
  for (let i = 0; i < 500 && reader.bytes() < expected; i++) await sleep(10);
  expect(reader.bytes()).toBe(expected);
  reader.socket.destroy();
  stalled.socket.destroy();
});

describe("per-policy selection", () => {
  it("gives each client only the packets kept for the policy it asked for", async () => {
    stream = new PcapStream({ helloMs: 5_000 });
    const port = await stream.listen("127.0.0.1", 0);
    const got = new Map<string, StreamedPacket[]>();
    const readers = ["shop/web", "bank/ledger"].map(async (policy) => {
      const socket = connect(port, "127.0.0.1");
      await new Promise<void>((r) => socket.once("connect", () => r()));
      const list: StreamedPacket[] = [];
      got.set(policy, list);
      for await (const p of readPolicyStream(socket, policy)) list.push(p);
    });
    await clients(stream, 2);
    stream.send(packet(1, 60), ["shop/web"]);
    stream.send(packet(2, 60), ["bank/ledger"]);
    stream.send(packet(3, 60), ["bank/ledger", "shop/web"]);
    stream.send(packet(4, 60), ["shop/webx"]);
    await sleep(100);
    await stream.close();
    await Promise.all(readers);
    const bytes = (policy: string) => got.get(policy)!.map((p) => p.data[0]);
    expect(bytes("shop/web")).toEqual([1, 3]);
    expect(bytes("bank/ledger")).toEqual([2, 3]);
    expect(got.get("shop/web")![0]).toMatchObject({ timestampMicros: 1e15 + 1, originalLength: 60 });
  });

  it("refuses a plain client unless allowed, and a request it cannot read", async () => {
    stream = new PcapStream({ helloMs: 100 });
    const port = await stream.listen("127.0.0.1", 0);
    const plain = await client(port);
    const bad = await client(port, "policy ../../etc\n");
    const long = await client(port, "x".repeat(600));
    for (let i = 0; i < 100 && stream.stats.refused < 3; i++) await sleep(10);
    expect(stream.stats.refused).toBe(3);
    expect([plain, bad, long].map((c) => [c.socket.destroyed || c.socket.readableEnded, c.bytes()])).toEqual([
      [true, 0],
      [true, 0],
      [true, 0],
    ]);
    await stream.close();
    stream = new PcapStream({ helloMs: 100, allowAllPolicies: true });
    const open = await stream.listen("127.0.0.1", 0);
    const everything = await client(open);
    await clients(stream, 1);
    stream.send(packet(5, 60), ["shop/web"]);
    stream.send(packet(6, 60), ["bank/ledger"]);
    for (let i = 0; i < 100 && everything.bytes() < 24 + 2 * 76; i++) await sleep(10);
    expect(everything.bytes()).toBe(24 + 2 * 76);
    everything.socket.destroy();
  });
});
