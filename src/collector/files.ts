/**
 * Capture files: one rotating pcapng file set per policy (and one for unknown VNIs). A file is
 * written under `<root>/.partial/` and renamed into `<root>/<namespace>/<name>/` when it is closed,
 * so a watcher (Suricata's continuous pcap-file mode, a shipper) only ever sees whole files.
 * Directories are 0700 and files 0600: mirrored packets are as sensitive as the traffic itself.
 *
 * Writes are asynchronous (libuv's thread pool), so a slow disk does not hold up the socket; once
 * more than `MAX_IN_FLIGHT_BYTES` wait for the disk, the set writes synchronously until it catches
 * up (the kernel's socket buffer then absorbs the wait, and its drops are counted).
 *
 * A disk that fills up stops the set: the file is cut back to its last whole block and closed, the
 * packets that could not be written are counted, and writing resumes after `retryMs`.
 */
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  write,
  writeSync,
  chmodSync,
} from "node:fs";
import { join } from "node:path";
import {
  enhancedPacketSize,
  interfaceDescriptionBlock,
  sectionHeaderBlock,
  writeEnhancedPacket,
  type PacketView,
} from "./pcapng.ts";

/** Directory (under the root) where open files live until they are closed. */
export const PARTIAL_DIR = ".partial";
/** Directory (under the root) for packets whose VNI is not in the map. */
export const UNKNOWN_DIR = "_unknown";
const WRITE_BUFFER_BYTES = 1 << 20;
/** Bytes one set may have waiting for the disk before it writes synchronously. */
export const MAX_IN_FLIGHT_BYTES = 8 * WRITE_BUFFER_BYTES;
const DISK_FULL = new Set(["ENOSPC", "EDQUOT", "EFBIG"]);

/** When files are closed and how writing recovers. */
export interface RotationPolicy {
  /** Close a file once it holds this many bytes. */
  maxFileBytes: number;
  /** Close a file this long after it was opened. */
  maxFileMs: number;
  /** After a full disk, wait this long before trying again. */
  retryMs: number;
}

/** How an interface (a session) is named inside the files. */
export interface InterfaceLabel {
  name: string;
  description: string;
}

/** Counters of one file set, read by the metrics. */
export interface FileSetStats {
  packetsWritten: number;
  filesClosed: number;
  /** Packets lost to a full disk or a failed write. */
  packetsDropped: number;
  writeErrors: number;
}

/** What a file set needs. */
export interface FileSetOptions {
  root: string;
  /** Path under the root, e.g. `payments/web` or `_unknown`. */
  subdir: string;
  /** Distinguishes the files of several workers (`w0`, `w1`, …). */
  prefix: string;
  rotation: RotationPolicy;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Called once per closed file, with its final path and size. */
  onClosed?: (path: string, bytes: number) => void;
  /** Called on write errors (the set carries on). */
  onError?: (err: Error) => void;
}

/** Makes a directory (and its parents) readable only by its owner. */
export function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  try {
    chmodSync(path, 0o700);
  } catch {
    // A directory owned by someone else (a hostPath made by the kubelet): its files stay 0600.
  }
}

function stamp(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

/** One buffer handed to the disk. */
interface Chunk {
  pos: number;
  buf: Buffer;
  len: number;
  packets: number;
  done: boolean;
}

/** A file being written; it may still have writes in flight after the set moved on. */
interface OpenFile {
  fd: number;
  partialPath: string;
  finalPath: string;
  openedAt: number;
  /** Where the next chunk goes (bytes handed out so far). */
  end: number;
  chunks: Chunk[];
  inFlight: number;
  /** The position of the first failed write, if one failed. */
  failedAt: number | undefined;
  closing: boolean;
}

/** The rotating files of one policy (or of unknown VNIs) for one worker. */
export class CaptureFileSet {
  readonly stats: FileSetStats = {
    packetsWritten: 0,
    filesClosed: 0,
    packetsDropped: 0,
    writeErrors: 0,
  };
  readonly #o: FileSetOptions;
  readonly #dir: string;
  readonly #free: Buffer[] = [];
  #buf: Buffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
  #used = 0;
  #bufferedPackets = 0;
  #file: OpenFile | undefined;
  /** Files closed by the set whose writes have not all finished. */
  readonly #finishing = new Set<OpenFile>();
  #inFlightBytes = 0;
  #sequence = 0;
  #stalledUntil = 0;
  #idle: (() => void)[] = [];
  /** VNI → interface id in the open file. */
  readonly #interfaces = new Map<number, number>();

  constructor(o: FileSetOptions) {
    this.#o = o;
    this.#dir = join(o.root, o.subdir);
  }

  /** Appends a packet of a session; false when it was dropped (disk full). */
  write(vni: number, label: (vni: number) => InterfaceLabel, p: PacketView): boolean {
    const now = this.#o.now();
    if (now < this.#stalledUntil) {
      this.stats.packetsDropped++;
      return false;
    }
    if (this.#file && this.#due(this.#file, now)) this.close();
    if (!this.#file && !this.#open(now)) {
      this.stats.packetsDropped++;
      return false;
    }
    let id = this.#interfaces.get(vni);
    if (id === undefined) {
      id = this.#interfaces.size;
      const l = label(vni);
      if (!this.#append(interfaceDescriptionBlock(l.name, l.description))) {
        this.stats.packetsDropped++;
        return false;
      }
      this.#interfaces.set(vni, id);
    }
    const size = enhancedPacketSize(p.length);
    if (this.#used + size > this.#buf.length && !this.#flush()) {
      this.stats.packetsDropped++;
      return false;
    }
    p.interfaceId = id;
    this.#used = writeEnhancedPacket(this.#buf, this.#used, p);
    this.#bufferedPackets++;
    return true;
  }

  /** Periodic work: hand what is buffered to the disk and close a file that is due. */
  tick(): void {
    if (!this.#file) return;
    if (this.#due(this.#file, this.#o.now())) this.close();
    else this.#flush();
  }

  /** Whether a file is open. */
  get open(): boolean {
    return this.#file !== undefined;
  }

  /** Closes the open file: it is moved into place once its writes finish (an empty file is removed). */
  close(): void {
    const f = this.#file;
    if (!f) return;
    this.#flush();
    this.#detach(f);
  }

  /** Resolves when every file the set closed is on disk and in place. */
  idle(): Promise<void> {
    if (this.#finishing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #due(f: OpenFile, now: number): boolean {
    return (
      f.end + this.#used >= this.#o.rotation.maxFileBytes || now - f.openedAt >= this.#o.rotation.maxFileMs
    );
  }

  #open(now: number): boolean {
    const name = `${this.#o.prefix}-${stamp(now)}-${String(++this.#sequence).padStart(6, "0")}.pcapng`;
    const partialDir = join(this.#o.root, PARTIAL_DIR);
    let fd: number;
    let partialPath: string;
    try {
      ensurePrivateDir(partialDir);
      ensurePrivateDir(this.#dir);
      partialPath = join(partialDir, `${this.#o.subdir.replaceAll("/", "_")}-${name}`);
      fd = openSync(partialPath, "wx", 0o600);
    } catch (err) {
      this.#failed(err, now);
      return false;
    }
    this.#file = {
      fd,
      partialPath,
      finalPath: join(this.#dir, name),
      openedAt: now,
      end: 0,
      chunks: [],
      inFlight: 0,
      failedAt: undefined,
      closing: false,
    };
    this.#used = 0;
    this.#bufferedPackets = 0;
    this.#interfaces.clear();
    // An empty buffer always has room for the header.
    this.#append(sectionHeaderBlock("traffic-mirror-operator collector", `policy ${this.#o.subdir}`));
    return true;
  }

  /** Buffers a block; false when making room failed (the file is closed then). */
  #append(block: Buffer): boolean {
    if (this.#used + block.length > this.#buf.length && !this.#flush()) return false;
    block.copy(this.#buf, this.#used);
    this.#used += block.length;
    return true;
  }

  /** Hands the buffer to the disk; false when the file failed (it is detached then). */
  #flush(): boolean {
    const f = this.#file;
    if (!f) return false;
    if (this.#used === 0) return true;
    const chunk: Chunk = {
      pos: f.end,
      buf: this.#buf,
      len: this.#used,
      packets: this.#bufferedPackets,
      done: false,
    };
    f.end += this.#used;
    f.chunks.push(chunk);
    this.#buf = this.#free.pop() ?? Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
    this.#used = 0;
    this.#bufferedPackets = 0;
    if (this.#inFlightBytes + chunk.len > MAX_IN_FLIGHT_BYTES) return this.#writeNow(f, chunk);
    this.#inFlightBytes += chunk.len;
    f.inFlight++;
    this.#writeAsync(f, chunk, 0);
    return true;
  }

  #writeAsync(f: OpenFile, c: Chunk, offset: number): void {
    write(f.fd, c.buf, offset, c.len - offset, c.pos + offset, (err, n) => {
      if (!err && offset + n < c.len) return this.#writeAsync(f, c, offset + n);
      f.inFlight--;
      this.#inFlightBytes -= c.len;
      if (err) this.#chunkFailed(f, c, err);
      else this.#chunkDone(c);
      this.#settle(f);
    });
  }

  /** The disk is far behind: write this chunk before taking more packets. */
  #writeNow(f: OpenFile, c: Chunk): boolean {
    try {
      let done = 0;
      while (done < c.len) done += writeSync(f.fd, c.buf, done, c.len - done, c.pos + done);
    } catch (err) {
      this.#chunkFailed(f, c, err);
      this.#settle(f);
      return false;
    }
    this.#chunkDone(c);
    return true;
  }

  #chunkDone(c: Chunk): void {
    c.done = true;
    this.stats.packetsWritten += c.packets;
    this.#free.push(c.buf);
  }

  /** A write failed: the file ends before this chunk; what was buffered after it is lost too. */
  #chunkFailed(f: OpenFile, c: Chunk, err: unknown): void {
    this.#free.push(c.buf);
    f.failedAt = Math.min(f.failedAt ?? Infinity, c.pos);
    if (this.#file === f) {
      this.stats.packetsDropped += this.#bufferedPackets;
      this.#used = 0;
      this.#bufferedPackets = 0;
      this.#detach(f);
    }
    this.#failed(err, this.#o.now());
  }

  #detach(f: OpenFile): void {
    if (this.#file === f) this.#file = undefined;
    if (f.closing) return; // already detached (a failed flush during close)
    f.closing = true;
    this.#finishing.add(f);
    this.#settle(f);
  }

  /** Once a closed file has no write in flight: cut it back if a write failed, close, move it. */
  #settle(f: OpenFile): void {
    if (!f.closing || f.inFlight > 0 || !this.#finishing.has(f)) return;
    this.#finishing.delete(f);
    let kept = 0;
    for (const c of f.chunks) {
      if (f.failedAt !== undefined && c.pos >= f.failedAt) {
        // Written after the failure point, or failed: cut off below, so not on disk.
        if (c.done) {
          this.stats.packetsWritten -= c.packets;
        }
        this.stats.packetsDropped += c.packets;
      } else kept += c.packets;
    }
    try {
      if (f.failedAt !== undefined) ftruncateSync(f.fd, f.failedAt);
    } catch {
      // Nothing more can be done for this file; it is closed below.
    }
    this.#finish(f, kept);
    if (this.#finishing.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #finish(f: OpenFile, packets: number): void {
    closeSync(f.fd);
    try {
      if (packets === 0) {
        unlinkSync(f.partialPath);
        return;
      }
      renameSync(f.partialPath, f.finalPath);
      this.stats.filesClosed++;
      this.#o.onClosed?.(f.finalPath, f.failedAt ?? f.end);
    } catch (err) {
      this.stats.writeErrors++;
      this.#o.onError?.(err as Error);
    }
  }

  #failed(err: unknown, now: number): void {
    this.stats.writeErrors++;
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (DISK_FULL.has(code)) this.#stalledUntil = now + this.#o.rotation.retryMs;
    else this.#stalledUntil = now + Math.min(this.#o.rotation.retryMs, 1000);
    this.#o.onError?.(err as Error);
  }
}
