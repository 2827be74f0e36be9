/**
 * The client side of the collector's stream: sends the request line for one policy and reads the
 * classic pcap records that follow. Used by `kubectl trafficmirror capture` and by tests.
 */
import type { Duplex } from "node:stream";
import { streamRequest } from "./stream.ts";

/** One streamed packet. */
export interface StreamedPacket {
  timestampMicros: number;
  originalLength: number;
  data: Buffer;
}

const GLOBAL_HEADER = 24;
const RECORD_HEADER = 16;
const PCAP_MAGIC_MICROS = 0xa1b2c3d4;

/**
 * Asks `socket` (connected to a collector's stream, directly or through a port-forward) for
 * `policy`'s packets and yields them as they come; ends when the connection does. Throws when the
 * collector closed without sending the pcap header (it refused the request).
 */
export async function* readPolicyStream(socket: Duplex, policy: string): AsyncGenerator<StreamedPacket> {
  socket.write(streamRequest(policy));
  let buf: Buffer = Buffer.alloc(0);
  let header = false;
  for await (const chunk of socket as AsyncIterable<Buffer>) {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (!header) {
      if (buf.length < GLOBAL_HEADER) continue;
      if (buf.readUInt32LE(0) !== PCAP_MAGIC_MICROS)
        throw new Error("the collector's stream did not start with a pcap header");
      buf = buf.subarray(GLOBAL_HEADER);
      header = true;
    }
    let at = 0;
    while (buf.length - at >= RECORD_HEADER) {
      const captured = buf.readUInt32LE(at + 8);
      if (buf.length - at < RECORD_HEADER + captured) break;
      yield {
        timestampMicros: buf.readUInt32LE(at) * 1e6 + buf.readUInt32LE(at + 4),
        originalLength: buf.readUInt32LE(at + 12),
        data: Buffer.from(buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + captured)),
      };
      at += RECORD_HEADER + captured;
    }
    buf = buf.subarray(at);
  }
  if (!header) throw new Error(`the collector refused the stream of ${policy}`);
}
