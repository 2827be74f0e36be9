import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildFrame } from "../../test/ec2-sim/packets.ts";
import { readPcapng } from "../../test/fixtures/pcapng-read.ts";
import { CaptureFileSet, PARTIAL_DIR, type RotationPolicy } from "./files.ts";
import type { PacketView } from "./pcapng.ts";
import { sweepRetention } from "./retention.ts";

const frame = buildFrame(
  { src: "10.0.0.1", dst: "10.0.0.2", srcPort: 1, dstPort: 80, payloadLength: 200 },
  { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
);
const label = (vni: number) => ({ name: `eni-${vni} vni ${vni}`, description: `session for ${vni}` });
let root: string;
let clock: number;

function makeSet(rotation: Partial<RotationPolicy> = {}): CaptureFileSet {
  return new CaptureFileSet({
    root,
    subdir: "shop/web",
    prefix: "w0",
    rotation: { maxFileBytes: 1 << 30, maxFileMs: 60_000, retryMs: 5_000, ...rotation },
    now: () => clock,
  });
}

function packet(n: number): PacketView {
  return {
    interfaceId: 0,
    timestampMicros: clock * 1000 + n,
    data: frame,
    start: 0,
    length: frame.length,
    originalLength: frame.length,
  };
}

const closed = (): string[] =>
  readdirSync(join(root, "shop/web"))
    .filter((f) => f.endsWith(".pcapng"))
    .sort()
    .map((f) => join(root, "shop/web", f));

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "tmo-files-"));
  clock = 1_790_000_000_000;
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("CaptureFileSet", () => {
  it("writes under .partial and moves a whole file into place on close, one IDB per VNI", async () => {
    const set = makeSet();
    for (let i = 0; i < 6; i++) expect(set.write(i % 2 ? 7 : 9, label, packet(i))).toBe(true);
    set.tick();
    expect(readdirSync(join(root, PARTIAL_DIR))).toHaveLength(1);
    expect(readdirSync(join(root, "shop/web"))).toEqual([]);
    set.close();
    await set.idle();
    expect(readdirSync(join(root, PARTIAL_DIR))).toEqual([]);
    const [file] = closed();
    const c = readPcapng(file!);
    expect(c.application).toContain("traffic-mirror-operator");
    expect(c.interfaces.map((i) => i.name)).toEqual(["eni-9 vni 9", "eni-7 vni 7"]);
    expect(new Set(c.interfaces.map((i) => `${i.linkType}/${i.snapLength}`))).toEqual(new Set(["1/65535"]));
    expect(c.packets.map((p) => p.interfaceId)).toEqual([0, 1, 0, 1, 0, 1]);
    expect(c.packets[3]!.timestampMicros).toBe(clock * 1000 + 3);
    expect(c.packets.every((p) => p.data.equals(frame))).toBe(true);
    expect(set.stats).toMatchObject({ packetsWritten: 6, filesClosed: 1, packetsDropped: 0 });
  });

  it("makes directories 0700 and files 0600", async () => {
    const set = makeSet();
    set.write(1, label, packet(0));
    set.close();
    await set.idle();
    for (const d of [root, join(root, "shop"), join(root, "shop/web"), join(root, PARTIAL_DIR)]) {
      expect(statSync(d).mode & 0o777, d).toBe(0o700);
    }
    expect(statSync(closed()[0]!).mode & 0o777).toBe(0o600);
  });

  it("rotates by size: every file is whole and under the limit plus one packet", async () => {
    const set = makeSet({ maxFileBytes: 4096 });
    for (let i = 0; i < 100; i++) set.write(1, label, packet(i));
    set.close();
    await set.idle();
    const files = closed();
    expect(files.length).toBeGreaterThan(5);
    let total = 0;
    for (const f of files) {
      const c = readPcapng(f);
      expect(c.interfaces).toHaveLength(1); // each file names its interfaces again
      expect(statSync(f).size).toBeLessThan(4096 + 300);
      total += c.packets.length;
    }
    expect(total).toBe(100);
    expect(set.stats.filesClosed).toBe(files.length);
  });

  it("rotates by time, also when no packet arrives, and removes files that stayed empty", async () => {
    const set = makeSet({ maxFileMs: 10_000 });
    set.write(1, label, packet(0));
    clock += 9_999;
    set.tick();
    expect(closed()).toHaveLength(0);
    clock += 1;
    set.tick(); // due: closed by the timer alone
    await set.idle();
    expect(closed()).toHaveLength(1);
    expect(set.open).toBe(false);
    set.write(1, label, packet(1));
    clock += 20_000;
    set.write(1, label, packet(2)); // the first file is due: closed before this packet
    set.close();
    await set.idle();
    expect(closed().map((f) => readPcapng(f).packets.length)).toEqual([1, 1, 1]);
  });
});

describe("sweepRetention", () => {
  function file(name: string, bytes: number, ageMs: number): string {
    const dir = join(root, "ns/p");
    const path = join(dir, name);
    writeFileSync(path, Buffer.alloc(bytes), { flag: "w" });
    const t = (Date.now() - ageMs) / 1000;
    utimesSync(path, t, t);
    return path;
  }

  it("deletes files past the age, then the oldest until under the byte limit, never open files", () => {
    makeSet().write(1, label, packet(0)); // leaves an open file in .partial
    const dir = join(root, "ns/p");
    mkdirSync(dir, { recursive: true });
    file("a.pcapng", 1000, 3_600_000);
    file("b.pcapng", 1000, 30_000);
    file("c.pcapng", 1000, 20_000);
    file("d.pcapng", 1000, 10_000);
    file("notes.txt", 5000, 3_600_000);
    const r = sweepRetention(root, { maxAgeMs: 600_000, maxTotalBytes: 2500 }, Date.now());
    expect(readdirSync(dir).sort()).toEqual(["c.pcapng", "d.pcapng", "notes.txt"]);
    expect(r).toEqual({ files: 2, bytes: 2000, deleted: 2 });
    expect(readdirSync(join(root, PARTIAL_DIR))).toHaveLength(1);
  });

  it("keeps everything when the limits are 0", () => {
    const dir = join(root, "ns/p");
    mkdirSync(dir, { recursive: true });
    file("a.pcapng", 10, 1e9);
    expect(sweepRetention(root, { maxAgeMs: 0, maxTotalBytes: 0 }, Date.now()).deleted).toBe(0);
  });
});
