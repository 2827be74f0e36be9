/**
 * The live stream, in the PCAP-over-IP convention: a TCP listener that sends each client a classic
 * pcap header and then packets as they arrive. A client that does not keep up is disconnected (and
 * counted) rather than allowed to hold memory or slow the receiver.
 *
 * Which packets: a client first sends one request line, `policy <namespace>/<name>\n`, and then
 * gets only the packets that policy's selection kept (what its capture files hold). A client that
 * sends nothing within `helloMs` is a plain PCAP-over-IP client (tshark `-i TCP@…`, `nc`): it gets
 * every policy's packets only where `allowAllPolicies` is set, and is disconnected otherwise.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { pcapGlobalHeader, pcapRecord, type PacketView } from "./pcapng.ts";

/** Stream counters, read by the metrics. */
export interface StreamStats {
  clients: number;
  slowClientsDropped: number;
  /** Connections closed without streaming: a bad request line, or no line where one is required. */
  refused: number;
}

/** How a `PcapStream` treats its clients. */
export interface StreamOptions {
  /** How much may wait for one client before it is dropped (4 MiB). */
  maxBufferedBytes?: number;
  /** Plain clients (no request line) get every policy's packets; else they are disconnected. */
  allowAllPolicies?: boolean;
  /** How long a client has to send its request line (500 ms). */
  helloMs?: number;
}

/** The request line: one policy, `namespace/name` as the VNI map names it. */
const REQUEST = /^policy ([a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?)\r?$/;
const MAX_REQUEST_BYTES = 512;

/** Makes the request line a client sends to get one policy's packets. */
export function streamRequest(policy: string): string {
  return `policy ${policy}\n`;
}

/** A running PCAP-over-IP listener. */
export class PcapStream {
  readonly stats: StreamStats = { clients: 0, slowClientsDropped: 0, refused: 0 };
  /** Streaming clients and the policy each asked for (undefined: every policy). */
  readonly #clients = new Map<Socket, string | undefined>();
  /** Connections still in their request window. */
  readonly #waiting = new Set<Socket>();
  readonly #maxBuffered: number;
  readonly #allowAll: boolean;
  readonly #helloMs: number;
  #server: Server | undefined;

  constructor(o: StreamOptions = {}) {
    this.#maxBuffered = o.maxBufferedBytes ?? 4 << 20;
    this.#allowAll = o.allowAllPolicies ?? false;
    this.#helloMs = o.helloMs ?? 500;
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

  /**
   * Sends a packet to every client that may see it: those that asked for one of `kept` (the
   * policies whose selection kept it), and plain clients; drops the ones that are too far behind.
   */
  send(p: PacketView, kept: readonly string[]): void {
    let record: Buffer | undefined;
    for (const [c, policy] of this.#clients) {
      if (policy !== undefined && !kept.includes(policy)) continue;
      if (c.writableLength > this.#maxBuffered) {
        this.stats.slowClientsDropped++;
        this.#drop(c);
        continue;
      }
      record ??= pcapRecord(p);
      c.write(record);
    }
  }

  /** Disconnects everyone and stops listening. */
  async close(): Promise<void> {
    for (const c of [...this.#clients.keys(), ...this.#waiting]) c.destroy();
    this.#clients.clear();
    this.#waiting.clear();
    this.stats.clients = 0;
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.on("error", () => this.#drop(socket));
    socket.on("close", () => this.#drop(socket));
    this.#waiting.add(socket);
    let line = "";
    const timer = setTimeout(() => {
      if (!this.#waiting.delete(socket)) return;
      socket.off("data", onData);
      if (this.#allowAll) this.#start(socket, undefined);
      else this.#refuse(socket);
    }, this.#helloMs);
    const onData = (d: Buffer): void => {
      line += d.toString("latin1");
      const end = line.indexOf("\n");
      if (end < 0 && line.length <= MAX_REQUEST_BYTES) return;
      clearTimeout(timer);
      socket.off("data", onData);
      if (!this.#waiting.delete(socket)) return;
      const m = end < 0 ? null : REQUEST.exec(line.slice(0, end));
      if (m) this.#start(socket, m[1]);
      else this.#refuse(socket);
    };
    socket.on("data", onData);
  }

  #start(socket: Socket, policy: string | undefined): void {
    // Clients only read from now on; anything more they send is discarded.
    socket.on("data", () => undefined);
    socket.write(pcapGlobalHeader());
    this.#clients.set(socket, policy);
    this.stats.clients = this.#clients.size;
  }

  #refuse(socket: Socket): void {
    this.stats.refused++;
    socket.destroy();
  }

  #drop(socket: Socket): void {
    this.#waiting.delete(socket);
    if (this.#clients.delete(socket)) socket.destroy();
    this.stats.clients = this.#clients.size;
  }
}
