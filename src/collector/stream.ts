/**
 * The live stream, in the PCAP-over-IP convention: a TCP listener that sends each client a classic
 * pcap header and then every packet as it arrives. A client that does not keep up is disconnected
 * (and counted) rather than allowed to hold memory or slow the receiver.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { pcapGlobalHeader, pcapRecord, type PacketView } from "./pcapng.ts";

/** Stream counters, read by the metrics. */
export interface StreamStats {
  clients: number;
  slowClientsDropped: number;
}

/** A running PCAP-over-IP listener. */
export class PcapStream {
  readonly stats: StreamStats = { clients: 0, slowClientsDropped: 0 };
  readonly #clients = new Set<Socket>();
  readonly #maxBuffered: number;
  #server: Server | undefined;

  /** `maxBufferedBytes`: how much may wait for one client before it is dropped. */
  constructor(maxBufferedBytes = 4 << 20) {
    this.#maxBuffered = maxBufferedBytes;
  }

  /** Listens; resolves to the bound port. */
  async listen(host: string, port: number): Promise<number> {
    const server = createServer((socket) => this.#accept(socket));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  /** Whether anyone is listening (the receiver skips the copy otherwise). */
  get active(): boolean {
    return this.#clients.size > 0;
  }

  /** Sends a packet to every client; drops the ones that are too far behind. */
  send(p: PacketView): void {
    const record = pcapRecord(p);
    for (const c of this.#clients) {
      if (c.writableLength > this.#maxBuffered) {
        this.stats.slowClientsDropped++;
        this.#drop(c);
        continue;
      }
      c.write(record);
    }
  }

  /** Disconnects everyone and stops listening. */
  async close(): Promise<void> {
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
    this.stats.clients = 0;
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.on("error", () => this.#drop(socket));
    socket.on("close", () => this.#drop(socket));
    // Clients only read; anything they send is discarded.
    socket.on("data", () => undefined);
    socket.write(pcapGlobalHeader());
    this.#clients.add(socket);
    this.stats.clients = this.#clients.size;
  }

  #drop(socket: Socket): void {
    if (this.#clients.delete(socket)) socket.destroy();
    this.stats.clients = this.#clients.size;
  }
}
