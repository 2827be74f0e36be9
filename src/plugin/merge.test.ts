import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { readPcapng } from "../../test/fixtures/pcapng-read.ts";
import { TimeOrderedPcapng } from "./merge.ts";

const packet = (ts: number, byte: number) => ({
  timestampMicros: ts,
  originalLength: 80,
  data: Buffer.alloc(60, byte),
});

describe("TimeOrderedPcapng", () => {
  it("writes two streams' packets in time order, each on its stream's interface", () => {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (c: Buffer) => chunks.push(c));
    const w = new TimeOrderedPcapng({
      out,
      interfaces: [
        { name: "pod-a w0", description: "worker 0" },
        { name: "pod-a w1", description: "worker 1" },
      ],
      comment: "shop/capture-x",
      windowMs: 1,
    });
    w.add(0, packet(1_000, 1));
    w.add(0, packet(3_000, 3));
    w.add(1, packet(2_000, 2));
    // Only what is older than the window is written yet.
    w.flush(3_500);
    w.add(1, packet(4_000, 4));
    w.flush(0, true);
    const file = readPcapng(Buffer.concat(chunks));
    expect(file.interfaces.map((i) => i.name)).toEqual(["pod-a w0", "pod-a w1"]);
    expect(file.packets.map((p) => [p.interfaceId, p.data[0], p.original])).toEqual([
      [0, 1, 80],
      [1, 2, 80],
      [0, 3, 80],
      [1, 4, 80],
    ]);
    expect(w.stats).toEqual({ packets: 4, late: 0 });
  });
});
