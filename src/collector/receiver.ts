/**
 * The receive path: one UDP socket (several workers share the port with `reusePort`), VXLAN
 * validation, VNI → policies, pcapng file sets and the live stream. Datagrams arrive in batches
 * through the native addon (`batch.ts`), or one at a time through dgram where it is not built.
 * Everything per datagram works on the buffer the socket delivered and on objects made when the map
 * changed: on the batch path nothing is allocated per packet (on the dgram path, the message
 * itself), but a record per stream client, only while someone is connected.
 */
import { createSocket, type Socket } from "node:dgram";
import { BatchSocket, loadBatchAddon } from "./batch.ts";
import type { Logger } from "pino";
import type { VniMap } from "../api/vni-map.ts";
import { CaptureFileSet, UNKNOWN_DIR, type InterfaceLabel, type RotationPolicy } from "./files.ts";
import type { PacketView } from "./pcapng.ts";
import { buildRoutes, policyDir, unknownLabel, type PolicyCounters, type Route } from "./routes.ts";
import { newInnerHeader, readInnerHeader, selects, type InnerHeader } from "./selection.ts";
import type { PcapStream } from "./stream.ts";
import { MALFORMED_REASONS, VXLAN_HEADER_LENGTH, originalFrameLength, readVni } from "./vxlan.ts";

/** What the receiver needs. */
export interface ReceiverOptions {
  host: string;
  port: number;
  /** Requested SO_RCVBUF; the kernel may grant less (see `effectiveRecvBufferBytes`). */
  recvBufferBytes: number;
  reusePort: boolean;
  /**
   * `batch`: the native addon (fails when it cannot load); `dgram`: Node's sockets; `auto`
   * (default): batch where the addon loads, else dgram, saying why.
   */
  receive?: "auto" | "batch" | "dgram";
  /** Path of the addon (default: where `make native` builds it). */
  addonPath?: string;
  /** Capture root directory. */
  root: string;
  /** Prefix of this worker's files (`w0`, `w1`, …). */
  worker: string;
  rotation: RotationPolicy;
  /** Keep packets of unknown VNIs in `_unknown/` (they are counted either way). */
  captureUnknown: boolean;
  log: Logger;
  stream?: PcapStream;
  /** Milliseconds since the epoch (rotation). */
  now?: () => number;
  /** Microseconds since the epoch (packet timestamps). */
  nowMicros?: () => number;
}

/** Wall-clock microseconds: `Date.now()` has only milliseconds. */
export function wallClockMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** Counters of the whole receiver, read by the metrics. */
export interface ReceiverCounters {
  datagrams: number;
  bytes: number;
  /** Indexed like `MALFORMED_REASONS`. */
  malformed: number[];
  unknownVniPackets: number;
  unknownVniBytes: number;
  /** Datagrams whose handling threw (a bug); the receiver carries on. */
  internalErrors: number;
  /** Packets of known sessions that no policy's selection kept (written and streamed nowhere). */
  unselectedPackets: number;
  unselectedBytes: number;
}

interface LiveRoute extends Route {
  /** Indexed like `attributions`. */
  sets: CaptureFileSet[];
  counters: PolicyCounters[];
  /** The counters of the policies the session serves (charged with what nobody kept). */
  owners: PolicyCounters[];
}

/** One worker's receiver. */
export class Receiver {
  readonly counters: ReceiverCounters = {
    datagrams: 0,
    bytes: 0,
    malformed: MALFORMED_REASONS.map(() => 0),
    unknownVniPackets: 0,
    unknownVniBytes: 0,
    internalErrors: 0,
    unselectedPackets: 0,
    unselectedBytes: 0,
  };
  /** Per policy key (`namespace/name`); entries stay when a policy goes, so counters never go back. */
  readonly policies = new Map<string, PolicyCounters>();
  /** Per capture subdirectory. */
  readonly fileSets = new Map<string, CaptureFileSet>();
  readonly #o: ReceiverOptions;
  readonly #now: () => number;
  readonly #nowMicros: () => number;
  readonly #packet: PacketView = {
    interfaceId: 0,
    timestampMicros: 0,
    data: Buffer.alloc(0),
    start: 0,
    length: 0,
    originalLength: 0,
  };
  readonly #header: InnerHeader = newInnerHeader();
  readonly #unknownLabel = (vni: number): InterfaceLabel => unknownLabel(vni);
  #routes = new Map<number, LiveRoute>();
  #unknown: CaptureFileSet | undefined;
  #socket: Socket | undefined;
  #batch: BatchSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #recvBuffer = 0;
  #lastErrorLog = 0;

  constructor(o: ReceiverOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#nowMicros = o.nowMicros ?? wallClockMicros;
    if (o.captureUnknown) this.#unknown = this.#fileSet(UNKNOWN_DIR);
  }

  /** The receive buffer the kernel granted (bytes), once bound. */
  get effectiveRecvBufferBytes(): number {
    return this.#recvBuffer;
  }

  /** Takes a new VNI map; file sets of policies that left are closed. */
  setMap(map: VniMap): void {
    const routes = new Map<number, LiveRoute>();
    const wanted = new Set<string>();
    for (const r of buildRoutes(map).values()) {
      const dirs = r.attributions.map((a) => policyDir(a.policy));
      for (const d of dirs) wanted.add(d);
      routes.set(r.vni, {
        ...r,
        sets: dirs.map((d) => this.#fileSet(d)),
        counters: r.attributions.map((a) => this.#policy(a.policy)),
        owners: r.policies.map((p) => this.#policy(p)),
      });
    }
    this.#routes = routes;
    for (const [dir, set] of this.fileSets) if (dir !== UNKNOWN_DIR && !wanted.has(dir)) set.close();
  }

  /** Which receive path runs: `batch` (the native addon) or `dgram`. */
  get receivePath(): "batch" | "dgram" | undefined {
    return this.#batch ? "batch" : this.#socket ? "dgram" : undefined;
  }

  /** Binds the socket and starts the flush/rotation timer; resolves to the bound port. */
  async start(): Promise<number> {
    const port = this.#startBatch() ?? (await this.#startDgram());
    // Linux reports twice what it keeps for data: less than twice the request means a cap.
    if (this.#recvBuffer < 2 * this.#o.recvBufferBytes)
      this.#o.log.warn(
        { requested: this.#o.recvBufferBytes, granted: this.#recvBuffer / 2 },
        "The kernel granted a smaller receive buffer than asked: net.core.rmem_max caps it, and bursts may be dropped",
      );
    this.#timer = setInterval(() => this.tick(), 1000);
    this.#timer.unref();
    return port;
  }

  /** Handles one datagram without letting a bug stop the capture. */
  #safely(buf: Buffer, start: number, length: number, micros?: number): void {
    try {
      this.#handleAt(buf, start, length, micros);
    } catch (err) {
      // A bug must not stop the capture: count it, say it once a minute at most.
      this.counters.internalErrors++;
      const now = this.#now();
      if (now - this.#lastErrorLog > 60_000) {
        this.#lastErrorLog = now;
        this.#o.log.error({ err }, "Handling a datagram failed");
      }
    }
  }

  #startBatch(): number | undefined {
    const mode = this.#o.receive ?? "auto";
    if (mode === "dgram") return undefined;
    const { addon, why } = loadBatchAddon(this.#o.addonPath);
    if (!addon) {
      if (mode === "batch") throw new Error(`Batch receive is not available: ${why}`);
      this.#o.log.warn({ why }, "Batch receive is not available; receiving one datagram at a time (dgram)");
      return undefined;
    }
    const b = new BatchSocket(
      addon,
      {
        host: this.#o.host,
        port: this.#o.port,
        reusePort: this.#o.reusePort,
        recvBufferBytes: this.#o.recvBufferBytes,
      },
      (buf, start, length, micros) => this.#safely(buf, start, length, micros),
    );
    this.#batch = b;
    this.#recvBuffer = b.recvBufferBytes;
    return b.port;
  }

  async #startDgram(): Promise<number> {
    const socket = createSocket({ type: "udp4", reuseAddr: this.#o.reusePort, reusePort: this.#o.reusePort });
    this.#socket = socket;
    socket.on("message", (msg) => this.#safely(msg, 0, msg.length));
    socket.on("error", (err) => this.#o.log.error({ err }, "Receive socket failed"));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      // exclusive: each cluster worker gets its own socket (the kernel spreads flows with reusePort).
      socket.bind({ port: this.#o.port, address: this.#o.host, exclusive: true }, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    try {
      socket.setRecvBufferSize(this.#o.recvBufferBytes);
    } catch (err) {
      this.#o.log.warn({ err, requested: this.#o.recvBufferBytes }, "Receive buffer size was refused");
    }
    // Linux reports twice what it keeps for data (the rest is bookkeeping); this is what it granted.
    this.#recvBuffer = socket.getRecvBufferSize();
    return socket.address().port;
  }

  /** Handles one datagram (public so tests and the fuzzer can feed it without a socket). */
  handle(msg: Buffer): void {
    this.#handleAt(msg, 0, msg.length);
  }

  /** Handles the datagram of `size` bytes at `at` in `buf`, received at `micros` (else now). */
  #handleAt(buf: Buffer, at: number, size: number, micros?: number): void {
    const c = this.counters;
    c.datagrams++;
    c.bytes += size;
    const vni = readVni(buf, size, at);
    if (vni < 0) {
      c.malformed[-vni - 1]!++;
      return;
    }
    const route = this.#routes.get(vni);
    const start = at + VXLAN_HEADER_LENGTH;
    const length = size - VXLAN_HEADER_LENGTH;
    if (route === undefined) {
      c.unknownVniPackets++;
      c.unknownVniBytes += length;
      // Nobody selected it: only the admin's opt-in `_unknown/` capture keeps it.
      if (this.#unknown !== undefined)
        this.#unknown.write(vni, this.#unknownLabel, this.#view(buf, start, length, micros));
      return;
    }
    const h = this.#header;
    const readable = readInnerHeader(buf, start, length, h);
    let p: PacketView | undefined;
    const attributions = route.attributions;
    for (let i = 0; readable && i < attributions.length; i++) {
      const a = attributions[i]!;
      if (!selects(a.selection, h)) continue;
      p ??= this.#view(buf, start, length, micros);
      const pc = route.counters[i]!;
      pc.packets++;
      pc.bytes += length;
      route.sets[i]!.write(vni, a.labelOf, p);
    }
    if (p === undefined) {
      // Copied by AWS but selected by none of the policies that may see it: dropped here.
      c.unselectedPackets++;
      c.unselectedBytes += length;
      for (const pc of route.owners) {
        pc.unselectedPackets++;
        pc.unselectedBytes += length;
      }
      return;
    }
    const stream = this.#o.stream;
    if (stream?.active) {
      // Only while someone streams: which policies kept it, so each client gets only its own.
      const kept: string[] = [];
      for (let i = 0; i < attributions.length; i++)
        if (selects(attributions[i]!.selection, h)) kept.push(attributions[i]!.policy);
      stream.send(p, kept);
    }
  }

  /** The reusable packet record, filled for the inner frame at `start` (reads the clock if no time). */
  #view(buf: Buffer, start: number, length: number, micros: number | undefined): PacketView {
    const p = this.#packet;
    p.data = buf;
    p.start = start;
    p.length = length;
    p.originalLength = originalFrameLength(buf, start, length);
    p.timestampMicros = micros ?? this.#nowMicros();
    return p;
  }

  /** Flushes buffers and closes files that are due (every second, and on demand in tests). */
  tick(): void {
    for (const set of this.fileSets.values()) set.tick();
  }

  /** Stops receiving and closes every file. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#batch?.close();
    this.#batch = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
    for (const set of this.fileSets.values()) set.close();
    await this.idle();
  }

  /** Resolves when every closed file is written and in place. */
  async idle(): Promise<void> {
    await Promise.all([...this.fileSets.values()].map((set) => set.idle()));
  }

  #policy(key: string): PolicyCounters {
    let pc = this.policies.get(key);
    if (!pc) {
      pc = { packets: 0, bytes: 0, unselectedPackets: 0, unselectedBytes: 0 };
      this.policies.set(key, pc);
    }
    return pc;
  }

  #fileSet(dir: string): CaptureFileSet {
    let set = this.fileSets.get(dir);
    if (!set) {
      set = new CaptureFileSet({
        root: this.#o.root,
        subdir: dir,
        prefix: this.#o.worker,
        rotation: this.#o.rotation,
        now: this.#now,
        onError: (err) => this.#o.log.warn({ err: err.message, dir }, "Capture write failed"),
      });
      this.fileSets.set(dir, set);
    }
    return set;
  }
}
