// The live stream keeps up with readers and disconnects one that stops reading instead of holding
// memory for it; the other reader keeps getting every packet.
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, it } from "vitest";
import type { PacketView } from "./pcapng.ts";
import { PcapStream } from "./stream.ts";

let stream: PcapStream | undefined;
afterEach(() => stream?.close());

async function client(port: number): Promise<{ socket: Socket; bytes: () => number }> {
  const socket = connect(port, "127.0.0.1");
  let n = 0;
  socket.on("data", (d: Buffer) => (n += d.length));
  socket.on("error", () => undefined);
  await new Promise<void>((r) => socket.once("connect", () => r()));
  return { socket, bytes: () => n };
}

it("drops a client that stops reading, and only that one", async () => {
  stream = new PcapStream(256 << 10);
  const port = await stream.listen("127.0.0.1", 0);
  const reader = await client(port);
  const stalled = await client(port);
  stalled.socket.pause();
  while (stream.stats.clients < 2) await sleep(10);
  const data = Buffer.alloc(1400, 7);
  const p: PacketView = {
    interfaceId: 0,
    timestampMicros: 1e15,
    data,
    start: 0,
    length: 1400,
    originalLength: 1400,
  };
  let sent = 0;
  // Loopback buffers a few MiB before the stalled client's backlog shows; bounded either way.
  while (stream.stats.slowClientsDropped === 0 && sent < 200_000) {
    stream.send(p);
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
