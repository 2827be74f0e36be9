// Collector receive rate with zero loss, against tcpdump capturing the same stream in the same run.
//
//   node bench/collector/run.ts [seconds-per-step=2] [repeats=3] [rates=50000,100000,...]
//
// tcpreplay injects VXLAN datagrams (VNI in the collector's map, 128 and 1,400 bytes on the wire)
// into a veth pair at fixed rates; on the far end, in a network namespace the benchmark makes (and
// removes), the collector (one worker, as a process) and `tcpdump -w` receive exactly the same
// datagrams, as they would arrive from a NIC. (Frames injected on loopback are not delivered to
// sockets, hence the veth.) For each size it prints, per rate, the median
// loss of both and the collector's CPU per packet, then the highest rate each kept with zero loss
// and the ratio, for the batch receive path (the native addon) and for dgram (its fallback), each
// against tcpdump in the same run (BENCH_RECEIVE=batch or =dgram runs one). The machine is shared:
// read medians and ratios, not single runs.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ipv4Header, pcapHeader, pcapRecord, vxlanHeader } from "../../test/ec2-sim/packets.ts";
import { startCollectorProcess, type CollectorProcess } from "../../test/fixtures/collector.ts";
import { makeVethNamespace } from "../../test/fixtures/netns.ts";

const seconds = Number(process.argv[2] ?? 2);
const repeats = Number(process.argv[3] ?? 3);
const rates = (process.argv[4] ?? "50000,100000,150000,200000,250000,300000,400000,500000")
  .split(",")
  .map(Number);
const SIZES = [128, 1400];
const VNI = 7;
const work = mkdtempSync(join(tmpdir(), "tmo-bench-collector-"));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** An Ethernet frame to the collector's veth carrying one VXLAN datagram of `wire` bytes in all. */
function vxlanFrame(dstMac: string, port: number, wire: number, i: number): Buffer {
  const innerPayload = Buffer.alloc(wire - 14 - 20 - 8 - 8, i & 0xff);
  // The inner frame: any Ethernet/IPv4 bytes; the collector does not look past the IP header.
  innerPayload.writeUInt16BE(0x0800, 12);
  const vxlan = Buffer.concat([vxlanHeader(VNI), innerPayload]);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000 + (i % 64), 0); // 64 flows, as AWS's per-flow source ports give
  udp.writeUInt16BE(port, 2);
  udp.writeUInt16BE(8 + vxlan.length, 4);
  const ip = ipv4Header({ src: net.outerIp, dst: net.innerIp, protocol: 17, length: 8 + vxlan.length });
  const macs = Buffer.from([...dstMac.split(":").map((x) => parseInt(x, 16)), 2, 0, 0, 0, 0, 1, 8, 0]);
  return Buffer.concat([macs, ip, udp, vxlan]);
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in USER_HZ (100)
}

/** tcpdump's capture buffer in KiB: the collector's granted socket buffer, so neither buffers more. */
let tcpdumpBufferKiB = 8192;

async function tcpdumpStart(port: number, file: string) {
  const p = spawn(
    "ip",
    [
      "netns",
      "exec",
      net.ns,
      "tcpdump",
      "-i",
      net.inner,
      "-Q",
      "in",
      "-n",
      "-Z",
      "root",
      "-B",
      String(tcpdumpBufferKiB),
      "-w",
      file,
      `udp dst port ${port}`,
    ],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let err = "";
  p.stderr.on("data", (d: Buffer) => (err += d.toString()));
  while (!err.includes("listening on")) {
    if (p.exitCode !== null) throw new Error(`tcpdump failed: ${err}`);
    await sleep(20);
  }
  return {
    async stop(): Promise<number> {
      p.kill("SIGINT");
      await new Promise((r) => p.once("exit", r));
      if (process.env["BENCH_DEBUG"]) console.error(err.trim().split("\n").slice(-3).join(" / "));
      const captured = /(\d+) packets captured/.exec(err);
      if (!captured) throw new Error(`tcpdump said: ${err}`);
      return Number(captured[1]);
    },
  };
}

async function settle(c: CollectorProcess, name: string): Promise<number> {
  let last = -1;
  for (;;) {
    const v = await c.sample(name);
    if (v === last) return v;
    last = v;
    await sleep(150);
  }
}

interface Step {
  rate: number;
  /** What tcpreplay achieved: packets over its wall time (it falls short of high targets). */
  achieved: number;
  sent: number;
  collectorLost: number;
  tcpdumpLost: number;
  cpuMicrosPerPacket: number;
}

async function step(c: CollectorProcess, file: string, rate: number): Promise<Step> {
  const sent = rate * seconds;
  const before = await settle(c, "tmo_collector_datagrams_total");
  const dump = await tcpdumpStart(c.port, join(work, "tcpdump.pcap"));
  const cpu0 = cpuSeconds(c.process.child.pid!);
  const t0 = performance.now();
  execFileSync("tcpreplay", ["-i", net.outer, "-q", `--pps=${rate}`, `--limit=${sent}`, "--loop=0", file], {
    stdio: "ignore",
  });
  const achieved = Math.round(sent / ((performance.now() - t0) / 1000));
  const after = await settle(c, "tmo_collector_datagrams_total");
  const cpu1 = cpuSeconds(c.process.child.pid!);
  // tcpdump stops reading at SIGINT, and libpcap hands over a partly filled ring block only after
  // its 1 s timeout: wait longer than that, or packets it did receive would count as lost.
  await sleep(1500);
  const captured = await dump.stop();
  const got = after - before;
  return {
    rate,
    achieved,
    sent,
    collectorLost: sent - got,
    tcpdumpLost: sent - captured,
    cpuMicrosPerPacket: got > 0 ? ((cpu1 - cpu0) * 1e6) / got : NaN,
  };
}

const stateDir = join(work, "state");
execFileSync("mkdir", ["-p", stateDir]);
const net = makeVethNamespace("bench");
process.on("exit", () => net.close());
// Each receive path in turn, each against tcpdump in the same run: the batch path (the native
// addon) and dgram, the fallback where the addon is not built.
const paths = (process.env["BENCH_RECEIVE"] ?? "batch,dgram").split(",");
const summary: string[] = [];
try {
  for (const path of paths) await measure(path);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`\n${summary.join("\n")}`);

async function measure(path: string): Promise<void> {
  const collector = await startCollectorProcess({
    stateDir,
    netns: { name: net.ns, host: net.innerIp },
    map: {
      version: 1,
      sessions: [
        {
          vni: VNI,
          policies: ["bench/load"],
          networkInterfaceId: "eni-bench",
          sourceIp: "127.0.0.1",
          pods: [],
        },
      ],
    },
    env: {
      TMO_COLLECTOR_RECV_BUFFER_BYTES: String(32 << 20),
      TMO_COLLECTOR_RETAIN_BYTES: String(2 * 2 ** 30),
      TMO_COLLECTOR_RECEIVE: path,
      TMO_LOG_LEVEL: "warn",
    },
  });
  const rcvbuf = await collector.sample("tmo_collector_receive_buffer_bytes");
  tcpdumpBufferKiB = Math.max(1024, Math.round(rcvbuf / 1024));
  console.log(
    `\nreceive path ${path}: tcpdump -B ${tcpdumpBufferKiB} KiB (the same buffer); collector pid ${collector.process.child.pid}, port ${collector.port}, SO_RCVBUF granted ${rcvbuf} bytes; ${seconds} s per step, ${repeats} repeats`,
  );
  try {
    for (const size of SIZES) {
      const file = join(work, `vxlan-${size}.pcap`);
      writeFileSync(
        file,
        Buffer.concat([
          pcapHeader(),
          ...Array.from({ length: 256 }, (_, i) =>
            pcapRecord(vxlanFrame(net.innerMac, collector.port, size, i), 0),
          ),
        ]),
      );
      console.log(`\n${size}-byte datagrams on the wire (VXLAN ${size - 42} bytes), ${path}`);
      console.log(
        "target/s  achieved  collector lost (median)   tcpdump lost (median)   collector CPU µs/packet (median)",
      );
      let bestCollector = 0;
      let bestTcpdump = 0;
      const cpus: number[] = [];
      for (const rate of rates) {
        const runs: Step[] = [];
        for (let r = 0; r < repeats; r++) runs.push(await step(collector, file, rate));
        const cl = median(runs.map((s) => s.collectorLost));
        const tl = median(runs.map((s) => s.tcpdumpLost));
        const cpu = median(runs.map((s) => s.cpuMicrosPerPacket));
        cpus.push(cpu);
        const achieved = median(runs.map((s) => s.achieved));
        console.log(
          `${String(rate).padEnd(9)} ${String(achieved).padEnd(10)} ${String(cl).padEnd(25)} ${String(tl).padEnd(23)} ${cpu.toFixed(2)}`,
        );
        if (cl === 0) bestCollector = Math.max(bestCollector, achieved);
        if (tl === 0) bestTcpdump = Math.max(bestTcpdump, achieved);
      }
      const ratio = bestTcpdump > 0 ? (bestCollector / bestTcpdump).toFixed(2) : "n/a";
      const line = `${path}, ${size} bytes: highest zero-loss rate: collector ${bestCollector}/s, tcpdump -w ${bestTcpdump}/s, ratio ${ratio}; collector CPU ${median(cpus).toFixed(2)} µs/packet (median over rates)`;
      console.log(line);
      summary.push(line);
    }
  } finally {
    await collector.stop();
    rmSync(dirname(collector.dir), { recursive: true, force: true });
  }
}
