/**
 * The collector's Prometheus metrics. The receive path only bumps plain numbers; the metrics read
 * them when scraped (`collect`), so there is no metric call per packet.
 */
import { readFileSync } from "node:fs";
import { Counter, Gauge, type Registry } from "prom-client";
import type { FileSetStats } from "./files.ts";
import type { DeviceCounters } from "./kernel.ts";
import type { Receiver } from "./receiver.ts";
import type { PolicyCounters } from "./routes.ts";
import type { PcapStream } from "./stream.ts";
import { MALFORMED_REASONS } from "./vxlan.ts";

type Labels = Record<string, string>;

/** A counter whose values are read from the process's own numbers at scrape time. */
function readCounter(
  registry: Registry,
  spec: { name: string; help: string; labelNames?: string[] },
  read: () => [Labels, number][],
): void {
  new Counter({
    ...spec,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

function readGauge(
  registry: Registry,
  spec: { name: string; help: string; labelNames?: string[]; aggregator?: "sum" | "max" | "first" },
  read: () => [Labels, number][],
): void {
  new Gauge({
    ...spec,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels, value);
    },
  });
}

/** Metrics of one worker's receiver (and its stream). Worker processes sum them in the primary. */
export function registerReceiverMetrics(registry: Registry, r: Receiver, stream?: PcapStream): void {
  const perPolicy = (pick: (c: PolicyCounters) => number): [Labels, number][] =>
    [...r.policies].map(([policy, c]) => [{ policy }, pick(c)]);
  const perSet = (pick: (s: FileSetStats) => number): [Labels, number][] =>
    [...r.fileSets].map(([dir, s]) => [{ policy: dir }, pick(s.stats)]);
  readCounter(registry, { name: "tmo_collector_datagrams_total", help: "UDP datagrams received" }, () => [
    [{}, r.counters.datagrams],
  ]);
  readCounter(
    registry,
    { name: "tmo_collector_received_bytes_total", help: "UDP payload bytes received" },
    () => [[{}, r.counters.bytes]],
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_malformed_total",
      help: "Datagrams dropped as malformed VXLAN",
      labelNames: ["reason"],
    },
    () => MALFORMED_REASONS.map((reason, i) => [{ reason }, r.counters.malformed[i] ?? 0]),
  );
  readCounter(
    registry,
    { name: "tmo_collector_unknown_vni_packets_total", help: "Packets whose VNI is not in the map" },
    () => [[{}, r.counters.unknownVniPackets]],
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_unknown_vni_bytes_total",
      help: "Frame bytes of packets whose VNI is not in the map",
    },
    () => [[{}, r.counters.unknownVniBytes]],
  );
  readCounter(
    registry,
    { name: "tmo_collector_internal_errors_total", help: "Datagrams whose handling failed unexpectedly" },
    () => [[{}, r.counters.internalErrors]],
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_write_errors_total",
      help: "Failed opens, writes or renames of capture files per policy directory",
      labelNames: ["policy"],
    },
    () => perSet((s) => s.writeErrors),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_unselected_packets_total",
      help: "Mirrored packets of known sessions that no policy's selection kept (not written or streamed)",
    },
    () => [[{}, r.counters.unselectedPackets]],
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_unselected_bytes_total",
      help: "Frame bytes of mirrored packets that no policy's selection kept",
    },
    () => [[{}, r.counters.unselectedBytes]],
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_selection_dropped_packets_total",
      help: "Packets that came through a session serving the policy and that no policy's selection kept",
      labelNames: ["policy"],
    },
    () => perPolicy((c) => c.unselectedPackets),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_selection_dropped_bytes_total",
      help: "Frame bytes of packets that came through a session serving the policy and that no policy's selection kept",
      labelNames: ["policy"],
    },
    () => perPolicy((c) => c.unselectedBytes),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_packets_total",
      help: "Mirrored packets kept for each policy (its selection matched)",
      labelNames: ["policy"],
    },
    () => perPolicy((c) => c.packets),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_bytes_total",
      help: "Mirrored frame bytes kept for each policy",
      labelNames: ["policy"],
    },
    () => perPolicy((c) => c.bytes),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_written_packets_total",
      help: "Packets written to capture files per policy directory",
      labelNames: ["policy"],
    },
    () => perSet((s) => s.packetsWritten),
  );
  readCounter(
    registry,
    {
      name: "tmo_collector_dropped_packets_total",
      help: "Packets not written (disk full, write error) per policy directory",
      labelNames: ["policy"],
    },
    () => perSet((s) => s.packetsDropped),
  );
  readCounter(
    registry,
    { name: "tmo_collector_file_rotations_total", help: "Capture files closed", labelNames: ["policy"] },
    () => perSet((s) => s.filesClosed),
  );
  readGauge(
    registry,
    { name: "tmo_collector_receive_buffer_bytes", help: "SO_RCVBUF the kernel granted", aggregator: "max" },
    () => [[{}, r.effectiveRecvBufferBytes]],
  );
  readGauge(
    registry,
    {
      name: "tmo_collector_batch_receive",
      help: "Workers receiving in batches through the native addon (the others use dgram)",
      aggregator: "sum",
    },
    () => [[{}, r.receivePath === "batch" ? 1 : 0]],
  );
  if (stream) {
    readGauge(registry, { name: "tmo_collector_stream_clients", help: "Live stream clients" }, () => [
      [{}, stream.stats.clients],
    ]);
    readCounter(
      registry,
      {
        name: "tmo_collector_stream_slow_clients_dropped_total",
        help: "Stream clients disconnected for lagging",
      },
      () => [[{}, stream.stats.slowClientsDropped]],
    );
    readCounter(
      registry,
      {
        name: "tmo_collector_stream_refused_total",
        help: "Stream connections closed without streaming (a bad request line, or none where one is required)",
      },
      () => [[{}, stream.stats.refused]],
    );
  }
}

/** Drops the kernel counted for UDP sockets bound to `port` (`/proc/net/udp` and `udp6`). */
export function kernelDrops(port: number, procFiles = ["/proc/net/udp", "/proc/net/udp6"]): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let drops = 0;
  for (const file of procFiles) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13 || !f[1]!.endsWith(`:${hexPort}`)) continue;
      drops += Number(f[12]) || 0;
    }
  }
  return drops;
}

/** Host-wide metrics, exported once (by the primary): disk use and kernel drops. */
export function registerHostMetrics(
  registry: Registry,
  read: { captureBytes: () => number; captureFiles: () => number; kernelDrops: () => number },
): void {
  readGauge(
    registry,
    { name: "tmo_collector_capture_bytes", help: "Bytes of closed capture files on disk" },
    () => [[{}, read.captureBytes()]],
  );
  readGauge(registry, { name: "tmo_collector_capture_files", help: "Closed capture files on disk" }, () => [
    [{}, read.captureFiles()],
  ]);
  readCounter(
    registry,
    { name: "tmo_collector_kernel_drops_total", help: "Datagrams the kernel dropped on the receive sockets" },
    () => [[{}, read.kernelDrops()]],
  );
}

/** Kernel mode: the vxlan devices' counters, per device (and the policies its VNI serves). */
export function registerDeviceMetrics(
  registry: Registry,
  read: () => DeviceCounters[],
  errors: () => number,
  refused: () => number = () => 0,
): void {
  readGauge(
    registry,
    {
      name: "tmo_collector_device_refused_sessions",
      help: "Sessions given no vxlan device: their AWS filter does not select pods (selectionMode Eni)",
    },
    () => [[{}, refused()]],
  );
  const labelled = (pick: (d: DeviceCounters) => number): [Labels, number][] =>
    read().map((d) => [{ device: d.device, vni: String(d.vni), policy: d.policies.join(",") }, pick(d)]);
  const labelNames = ["device", "vni", "policy"];
  readCounter(
    registry,
    { name: "tmo_collector_device_packets_total", help: "Frames received on a vxlan device", labelNames },
    () => labelled((d) => d.rxPackets),
  );
  readCounter(
    registry,
    { name: "tmo_collector_device_bytes_total", help: "Bytes received on a vxlan device", labelNames },
    () => labelled((d) => d.rxBytes),
  );
  readCounter(
    registry,
    { name: "tmo_collector_device_dropped_total", help: "Frames a vxlan device dropped", labelNames },
    () => labelled((d) => d.rxDropped),
  );
  readCounter(
    registry,
    { name: "tmo_collector_device_errors_total", help: "ip commands that failed while managing devices" },
    () => [[{}, errors()]],
  );
}
