/**
 * Batch receive: the native addon (`native/batch-udp.c`) takes up to a batch of datagrams per
 * `recvmmsg` on its own thread, into buffers allocated here, and calls back once per batch. Where
 * the addon is not built (no compiler where it was installed) or cannot load, the collector says so
 * and receives with `dgram`, one datagram at a time, with the same behaviour.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The addon's functions. */
interface BatchNative {
  open(
    o: {
      host: string;
      port: number;
      reusePort: boolean;
      recvBufferBytes: number;
      batch: number;
      datagram: number;
      buffers: ArrayBuffer[];
      lengths: Int32Array[];
      times: Float64Array[];
    },
    onBatch: (slot: number, count: number) => void,
  ): { handle: object; port: number; recvBufferBytes: number };
  close(handle: object): void;
  error(handle: object): number;
}

/** Where `make native` (and the image's build stage) puts the addon. */
export const DEFAULT_ADDON_PATH = fileURLToPath(new URL("../../dist/native/batch-udp.node", import.meta.url));

/** The addon, or why it is not there. */
export function loadBatchAddon(path = DEFAULT_ADDON_PATH): { addon?: BatchNative; why?: string } {
  if (!existsSync(path)) return { why: `${path} is not built (make native)` };
  try {
    return { addon: createRequire(import.meta.url)(path) as BatchNative };
  } catch (err) {
    return { why: `${path} did not load: ${(err as Error).message}` };
  }
}

/** Sizes of the batch path: slots in flight, datagrams per slot, bytes per datagram. */
export const BATCH_SLOTS = 4;
export const BATCH_SIZE = 64;
/** The largest UDP payload over IPv4: no datagram is cut. */
export const DATAGRAM_BYTES = 65_507;

/** One bound socket on the batch path. */
export class BatchSocket {
  readonly port: number;
  readonly recvBufferBytes: number;
  readonly #addon: BatchNative;
  readonly #handle: object;
  #open = true;

  /**
   * Binds and starts receiving; `onDatagram` is called for each datagram with the slot's buffer,
   * where it starts, its length and when the kernel received it (microseconds since the epoch).
   * The buffer is reused once the batch's calls return: copy what you keep.
   */
  constructor(
    addon: BatchNative,
    o: { host: string; port: number; reusePort: boolean; recvBufferBytes: number },
    onDatagram: (buf: Buffer, start: number, length: number, micros: number) => void,
  ) {
    const buffers = Array.from({ length: BATCH_SLOTS }, () => new ArrayBuffer(BATCH_SIZE * DATAGRAM_BYTES));
    const lengths = Array.from({ length: BATCH_SLOTS }, () => new Int32Array(BATCH_SIZE));
    const times = Array.from({ length: BATCH_SLOTS }, () => new Float64Array(BATCH_SIZE));
    const views = buffers.map((b) => Buffer.from(b));
    this.#addon = addon;
    const opened = addon.open(
      { ...o, batch: BATCH_SIZE, datagram: DATAGRAM_BYTES, buffers, lengths, times },
      (slot, count) => {
        if (!this.#open) return;
        const buf = views[slot]!;
        const lens = lengths[slot]!;
        const at = times[slot]!;
        for (let i = 0; i < count; i++) onDatagram(buf, i * DATAGRAM_BYTES, Math.abs(lens[i]!), at[i]!);
      },
    );
    this.#handle = opened.handle;
    this.port = opened.port;
    this.recvBufferBytes = opened.recvBufferBytes;
  }

  /** The errno that stopped the receive thread, or 0. */
  get error(): number {
    return this.#addon.error(this.#handle);
  }

  /** Stops the thread and closes the socket. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#addon.close(this.#handle);
  }
}
