// The collector under conditions it must survive: a full disk (it drops and counts, then recovers
// when space returns), a live PCAP-over-IP reader, and several workers sharing the port.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { streamRequest } from "../../src/collector/stream.ts";
import type { VniMap } from "../../src/api/vni-map.ts";
import { buildFrame, vxlanHeader } from "../ec2-sim/packets.ts";
import { sendDatagrams, startCollectorProcess } from "../fixtures/collector.ts";
import { promtoolCheckMetrics } from "../fixtures/promtool.ts";
import { tsharkCount } from "../fixtures/tshark.ts";
import { until } from "../fixtures/scenario.ts";

const stateDir = inject("harnessStateDir");
const map: VniMap = {
  version: 1,
  sessions: [
    { vni: 21, policies: ["ops/app"], networkInterfaceId: "eni-ops", sourceIp: "10.2.0.1", pods: [] },
  ],
};
const macs = { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" };
const datagram = (i: number, payloadLength = 400): Buffer =>
  Buffer.concat([
    vxlanHeader(21),
    buildFrame(
      {
        src: "10.2.0.9",
        dst: "10.2.0.1",
        protocol: 17,
        srcPort: 1000 + (i % 60000),
        dstPort: 8080,
        payloadLength,
      },
      macs,
    ),
  ]);
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "tmo-collector-ops-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("a full disk", () => {
  const mnt = () => join(work, "small-disk");
  beforeAll(() => {
    mkdirSync(mnt());
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt()]);
  });
  afterAll(() => execFileSync("umount", ["-l", mnt()]));

  it("stops writing, counts every packet it could not keep, and resumes when space returns", async () => {
    const c = await startCollectorProcess({
      stateDir,
      name: "collector-diskfull",
      map,
      env: {
        TMO_COLLECTOR_DIR: join(mnt(), "captures"),
        TMO_COLLECTOR_ROTATE_BYTES: "8192",
        TMO_COLLECTOR_ROTATE_SECONDS: "1",
        TMO_COLLECTOR_DISK_RETRY_SECONDS: "0.5",
        TMO_COLLECTOR_RETAIN_BYTES: "0",
        TMO_COLLECTOR_RETAIN_SECONDS: "0",
      },
    });
    try {
      expect(c.dir).toBe(join(mnt(), "captures"));
      const written = () => c.sample("tmo_collector_written_packets_total", '{policy="ops/app"}');
      const dropped = () => c.sample("tmo_collector_dropped_packets_total", '{policy="ops/app"}');
      await sendDatagrams(
        c.port,
        Array.from({ length: 400 }, (_, i) => datagram(i)),
      );
      await until(
        "all 400 accounted for",
        async () => ((await written()) + (await dropped()) === 400 ? true : undefined),
        20_000,
      );
      const w1 = await written();
      expect(await dropped()).toBeGreaterThan(0);
      expect(await c.sample("tmo_collector_write_errors_total", '{policy="ops/app"}')).toBeGreaterThan(0);
      expect(w1).toBeGreaterThan(0);
      expect(await fetch(`http://127.0.0.1:${c.metricsPort}/healthz`).then((r) => r.status)).toBe(200);
      // What was kept is whole: once the open file is closed (1 s rotation), the files hold it all.
      const inFiles = () => c.files("ops/app").reduce((n, f) => n + tsharkCount(f, work), 0);
      await until("the open file closed", () => Promise.resolve(inFiles() === w1 ? true : undefined), 10_000);
      const files = c.files("ops/app");
      // Space returns; after the retry pause the next packets are written again.
      for (const f of files) unlinkSync(f);
      await new Promise((r) => setTimeout(r, 700));
      await sendDatagrams(
        c.port,
        Array.from({ length: 10 }, (_, i) => datagram(i, 100)),
      );
      await until("written again", async () => ((await written()) === w1 + 10 ? true : undefined), 20_000);
      await c.stop();
      expect(c.files("ops/app").reduce((n, f) => n + tsharkCount(f, work), 0)).toBe(10);
    } finally {
      await c.stop();
    }
  });
});

describe("the live stream", () => {
  it("sends PCAP-over-IP that tshark reads, packet for packet, to a client that asked for the policy", async () => {
    const c = await startCollectorProcess({ stateDir, name: "collector-stream", map, stream: true });
    try {
      // A plain client, which asks for nothing, is refused: the chart does not allow every policy.
      const plain = connect(c.streamPort!, "127.0.0.1");
      plain.on("error", () => undefined);
      await until("plain client refused", async () =>
        (await c.sample("tmo_collector_stream_refused_total")) === 1 ? true : undefined,
      );
      plain.destroy();
      const socket = connect(c.streamPort!, "127.0.0.1");
      socket.write(streamRequest("ops/app"));
      const chunks: Buffer[] = [];
      socket.on("data", (d: Buffer) => chunks.push(d));
      await until("client seen", async () =>
        (await c.sample("tmo_collector_stream_clients")) === 1 ? true : undefined,
      );
      const sent = Array.from({ length: 30 }, (_, i) => datagram(i, 200));
      await sendDatagrams(c.port, sent);
      const expected = 24 + sent.reduce((n, d) => n + 16 + d.length - 8, 0);
      await until("all bytes", () =>
        Promise.resolve(Buffer.concat(chunks).length >= expected ? true : undefined),
      );
      socket.destroy();
      const file = join(work, "stream.pcap");
      writeFileSync(file, Buffer.concat(chunks));
      expect(Buffer.concat(chunks).length).toBe(expected);
      expect(tsharkCount(file, work)).toBe(30);
      expect(promtoolCheckMetrics(await c.metrics())).toEqual({ code: 0, output: "" });
    } finally {
      await c.stop();
    }
  });
});

describe("several workers", () => {
  it("share the port with reusePort, each with its own files, and the metrics add up and pass promtool", async () => {
    const c = await startCollectorProcess({
      stateDir,
      name: "collector-workers",
      map,
      env: { TMO_COLLECTOR_WORKERS: "2" },
    });
    try {
      // 64 flows (source sockets): the kernel spreads them over the two workers' sockets.
      await sendDatagrams(
        c.port,
        Array.from({ length: 2000 }, (_, i) => datagram(i, 100)),
        { sockets: 64 },
      );
      await until("2000 counted", async () =>
        (await c.sample("tmo_collector_packets_total", '{policy="ops/app"}')) === 2000 ? true : undefined,
      );
      expect(await c.sample("tmo_collector_datagrams_total")).toBe(2000);
      // The primary's text: the workers' sums, then the host metrics.
      expect(promtoolCheckMetrics(await c.metrics())).toEqual({ code: 0, output: "" });
      await c.stop();
      const files = c.files("ops/app");
      const byWorker = new Map<string, number>();
      for (const f of files) {
        const w = f.split("/").pop()!.split("-")[0]!;
        byWorker.set(w, (byWorker.get(w) ?? 0) + tsharkCount(f, work));
      }
      expect([...byWorker.keys()].sort()).toEqual(["w0", "w1"]);
      expect([...byWorker.values()].reduce((a, b) => a + b, 0)).toBe(2000);
    } finally {
      await c.stop();
    }
  });
});
