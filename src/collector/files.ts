/**
 * Capture files: one rotating pcapng file set per policy (and one for unknown VNIs). A file is
 * written under `<root>/.partial/` and renamed into `<root>/<namespace>/<name>/` when it is closed,
 * so a watcher (Suricata's continuous pcap-file mode, a shipper) only ever sees whole files.
 * Directories are 0700 and files 0600: mirrored packets are as sensitive as the traffic itself.
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
  bytesWritten: number;
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

/** The rotating files of one policy (or of unknown VNIs) for one worker. */
export class CaptureFileSet {
  readonly stats: FileSetStats = {
    packetsWritten: 0,
    bytesWritten: 0,
    filesClosed: 0,
    packetsDropped: 0,
    writeErrors: 0,
  };
  readonly #o: FileSetOptions;
  readonly #dir: string;
  readonly #buf = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
  #used = 0;
  #bufferedPackets = 0;
  #fd = -1;
  #partialPath = "";
  #finalPath = "";
  #fileBytes = 0;
  #filePackets = 0;
  #openedAt = 0;
  #sequence = 0;
  #stalledUntil = 0;
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
    if (this.#fd >= 0 && this.#due(now)) this.close();
    if (this.#fd < 0 && !this.#open(now)) {
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
    this.stats.bytesWritten += size;
    return true;
  }

  /** Periodic work: flush what is buffered and close a file that is due. */
  tick(): void {
    if (this.#fd < 0) return;
    if (this.#due(this.#o.now())) this.close();
    else this.#flush();
  }

  /** Whether a file is open. */
  get open(): boolean {
    return this.#fd >= 0;
  }

  /** Flushes and closes the open file, moving it into place (an empty file is removed). */
  close(): void {
    if (this.#fd < 0) return;
    // A failed flush has already cut the file back and closed it.
    if (this.#flush()) this.#finish();
  }

  #due(now: number): boolean {
    return (
      this.#fileBytes + this.#used >= this.#o.rotation.maxFileBytes ||
      now - this.#openedAt >= this.#o.rotation.maxFileMs
    );
  }

  #open(now: number): boolean {
    const name = `${this.#o.prefix}-${stamp(now)}-${String(++this.#sequence).padStart(6, "0")}.pcapng`;
    const partialDir = join(this.#o.root, PARTIAL_DIR);
    try {
      ensurePrivateDir(partialDir);
      ensurePrivateDir(this.#dir);
      this.#partialPath = join(partialDir, `${this.#o.subdir.replaceAll("/", "_")}-${name}`);
      this.#finalPath = join(this.#dir, name);
      this.#fd = openSync(this.#partialPath, "wx", 0o600);
    } catch (err) {
      this.#failed(err, now);
      return false;
    }
    this.#openedAt = now;
    this.#fileBytes = 0;
    this.#filePackets = 0;
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

  /** Writes the buffer out; on a full disk, cuts the file back to its last whole block and stops. */
  #flush(): boolean {
    if (this.#used === 0 || this.#fd < 0) return this.#fd >= 0;
    let done = 0;
    try {
      while (done < this.#used)
        done += writeSync(this.#fd, this.#buf, done, this.#used - done, this.#fileBytes + done);
    } catch (err) {
      this.stats.packetsDropped += this.#bufferedPackets;
      this.#used = 0;
      this.#bufferedPackets = 0;
      try {
        ftruncateSync(this.#fd, this.#fileBytes);
      } catch {
        // Nothing more can be done for this file; it is closed below.
      }
      this.#finish();
      this.#failed(err, this.#o.now());
      return false;
    }
    this.#fileBytes += done;
    this.#filePackets += this.#bufferedPackets;
    this.stats.packetsWritten += this.#bufferedPackets;
    this.#used = 0;
    this.#bufferedPackets = 0;
    return true;
  }

  #finish(): void {
    closeSync(this.#fd);
    this.#fd = -1;
    try {
      if (this.#filePackets === 0) {
        unlinkSync(this.#partialPath);
        return;
      }
      renameSync(this.#partialPath, this.#finalPath);
      this.stats.filesClosed++;
      this.#o.onClosed?.(this.#finalPath, this.#fileBytes);
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
