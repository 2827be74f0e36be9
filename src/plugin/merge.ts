/**
 * Merges live packet streams (one per collector worker) into one pcapng, in time order: packets
 * are held for a short window and written oldest first, so a packet of one worker that arrives a
 * little after a later packet of another still lands in its place. One interface per stream,
 * named after the collector pod and worker, so Wireshark shows where each packet was received.
 */
import type { Writable } from "node:stream";
import {
  enhancedPacketSize,
  interfaceDescriptionBlock,
  sectionHeaderBlock,
  writeEnhancedPacket,
} from "../collector/pcapng.ts";
import type { StreamedPacket } from "../collector/stream-client.ts";

interface Held {
  iface: number;
  seq: number;
  p: StreamedPacket;
}

/** A pcapng written as packets arrive from several streams. */
export class TimeOrderedPcapng {
  readonly #out: Writable;
  readonly #windowMicros: number;
  #held: Held[] = [];
  #seq = 0;
  #lastWritten = 0;
  /** Packets written, and packets that came later than the window allowed (written anyway). */
  readonly stats = { packets: 0, late: 0 };

  /** `interfaces`: name and description of each stream, in the order of their ids. */
  constructor(o: {
    out: Writable;
    interfaces: readonly { name: string; description: string }[];
    comment: string;
    windowMs?: number;
  }) {
    this.#out = o.out;
    this.#windowMicros = (o.windowMs ?? 1_000) * 1_000;
    this.#out.write(sectionHeaderBlock("kubectl-trafficmirror", o.comment));
    for (const i of o.interfaces) this.#out.write(interfaceDescriptionBlock(i.name, i.description));
  }

  /** Takes a packet of stream `iface`. */
  add(iface: number, p: StreamedPacket): void {
    this.#held.push({ iface, seq: this.#seq++, p });
  }

  /** Writes the packets older than the window (at `nowMicros`); all of them with `all`. */
  flush(nowMicros: number, all = false): void {
    if (this.#held.length === 0) return;
    // Stable: equal timestamps keep their arrival order.
    this.#held.sort((a, b) => a.p.timestampMicros - b.p.timestampMicros || a.seq - b.seq);
    const cut = all ? Infinity : nowMicros - this.#windowMicros;
    let n = 0;
    while (n < this.#held.length && this.#held[n]!.p.timestampMicros <= cut) n++;
    if (n === 0) return;
    const due = this.#held.slice(0, n);
    this.#held = this.#held.slice(n);
    const buf = Buffer.allocUnsafe(due.reduce((s, h) => s + enhancedPacketSize(h.p.data.length), 0));
    let at = 0;
    for (const h of due) {
      if (h.p.timestampMicros < this.#lastWritten) this.stats.late++;
      this.#lastWritten = Math.max(this.#lastWritten, h.p.timestampMicros);
      at = writeEnhancedPacket(buf, at, {
        interfaceId: h.iface,
        timestampMicros: h.p.timestampMicros,
        data: h.p.data,
        start: 0,
        length: h.p.data.length,
        originalLength: h.p.originalLength,
      });
    }
    this.stats.packets += due.length;
    this.#out.write(buf);
  }
}
