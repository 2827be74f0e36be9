/**
 * `collector`: the decap collector (see src/collector). With more than one worker the process
 * forks cluster workers that each bind the port with `reusePort` and write their own files; the
 * primary serves the summed metrics, the probes and retention.
 */
import cluster, { type Worker } from "node:cluster";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import pino, { type Logger } from "pino";
import { AggregatorRegistry, Registry } from "prom-client";
import { startProbeServer } from "../controller/http.ts";
import { ensurePrivateDir } from "../collector/files.ts";
import { recoverPartialFiles, watchVniMap } from "../collector/map-watch.ts";
import { VxlanDevices } from "../collector/kernel.ts";
import {
  kernelDrops,
  registerDeviceMetrics,
  registerHostMetrics,
  registerReceiverMetrics,
} from "../collector/metrics.ts";
import { Receiver } from "../collector/receiver.ts";
import { sweepRetention, type SweepResult } from "../collector/retention.ts";
import { PcapStream } from "../collector/stream.ts";
import type { VniMap } from "../api/vni-map.ts";
import { loadCollectorConfig, type CollectorConfig } from "./config.ts";

const RETENTION_INTERVAL_MS = 10_000;

/**
 * Resolves on the first SIGTERM/SIGINT. The handlers stay: a second signal (a cluster worker gets
 * one from its process group and one from the primary) must not kill a process still closing files.
 */
function signalled(): Promise<string> {
  return new Promise((resolve) => {
    process.on("SIGTERM", () => resolve("SIGTERM"));
    process.on("SIGINT", () => resolve("SIGINT"));
  });
}

function mapRefused(log: Logger, err: Error): void {
  log.warn(
    { err: err.message, cause: (err.cause as Error | undefined)?.message },
    "Kept the previous VNI map",
  );
}

/**
 * Follows the VNI map from where the configuration says: the ConfigMap through the apiserver
 * (credentials from the pod's ServiceAccount, or KUBECONFIG), or the file. Returns a stop function.
 */
async function followMap(
  config: CollectorConfig,
  log: Logger,
  onMap: (map: VniMap) => void,
): Promise<() => Promise<void>> {
  const loaded = (map: VniMap, from?: { resourceVersion: string }): void => {
    onMap(map);
    log.info({ sessions: map.sessions.length, resourceVersion: from?.resourceVersion }, "Loaded the VNI map");
  };
  const onError = (err: Error): void => mapRefused(log, err);
  if (config.vniMapConfigMap) {
    // Loaded only here: a collector reading a file never carries the Kubernetes client.
    const { KubeConfig } = await import("@kubernetes/client-node");
    const { watchVniMapConfigMap } = await import("../collector/map-watch-api.ts");
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return watchVniMapConfigMap({ kc, ...config.vniMapConfigMap, log, onMap: loaded, onError });
  }
  const stop = watchVniMap({
    path: config.vniMapFile,
    intervalMs: config.vniMapPollMs,
    onMap: loaded,
    onError,
  });
  return () => Promise.resolve(stop());
}

/** A worker's map, sent by the primary (which alone watches the apiserver). */
interface MapMessage {
  vniMap: VniMap;
}

function isMapMessage(m: unknown): m is MapMessage {
  return typeof m === "object" && m !== null && "vniMap" in m;
}

/** One worker's receive path: socket, map (watched, or from the primary), optional stream. */
async function startWorker(config: CollectorConfig, log: Logger, index: number) {
  const stream = config.stream ? new PcapStream({ allowAllPolicies: config.streamAllPolicies }) : undefined;
  const receiver = new Receiver({
    host: config.listen.host,
    port: config.listen.port,
    recvBufferBytes: config.recvBufferBytes,
    reusePort: config.workers > 1,
    receive: config.receive,
    root: config.dir,
    worker: `w${index}`,
    rotation: config.rotation,
    captureUnknown: config.captureUnknown,
    log,
    stream,
  });
  let stopWatching: () => Promise<void>;
  if (cluster.isWorker && config.vniMapConfigMap) {
    const onMessage = (m: unknown): void => {
      if (isMapMessage(m)) receiver.setMap(m.vniMap);
    };
    process.on("message", onMessage);
    stopWatching = () => Promise.resolve(void process.off("message", onMessage));
  } else {
    stopWatching = await followMap(config, log, (map) => receiver.setMap(map));
  }
  const port = await receiver.start();
  // Each worker streams on its own port (port + index): a client of one worker sees its flows only.
  const streamPort =
    stream && config.stream ? await stream.listen(config.stream.host, config.stream.port + index) : undefined;
  log.info(
    {
      port,
      worker: index,
      receivePath: receiver.receivePath,
      receiveBuffer: receiver.effectiveRecvBufferBytes,
      streamPort,
    },
    "Receiving VXLAN",
  );
  return {
    receiver,
    stream,
    stop: async () => {
      await stopWatching();
      await receiver.stop();
      await stream?.close();
    },
  };
}

/** Retention on a timer; the last sweep is what the host metrics show. */
function startRetention(config: CollectorConfig, log: Logger) {
  let last: SweepResult = { files: 0, bytes: 0, deleted: 0 };
  const sweep = (): void => {
    last = sweepRetention(config.dir, config.retention, Date.now());
    if (last.deleted > 0) log.info({ deleted: last.deleted, bytes: last.bytes }, "Removed old capture files");
  };
  sweep();
  const timer = setInterval(sweep, RETENTION_INTERVAL_MS);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    /** Disk use from the last sweep and the kernel's drops on the port, exported once per host. */
    register: (registry: Registry) =>
      registerHostMetrics(registry, {
        captureBytes: () => last.bytes,
        captureFiles: () => last.files,
        kernelDrops: () => kernelDrops(config.listen.port),
      }),
  };
}

function prepare(config: CollectorConfig, log: Logger): void {
  ensurePrivateDir(config.dir);
  const recovered = recoverPartialFiles(config.dir);
  if (recovered > 0) log.warn({ recovered }, "Moved files left open by a previous run to _recovered");
}

async function runSingle(config: CollectorConfig, log: Logger): Promise<number> {
  prepare(config, log);
  const worker = await startWorker(config, log, 0);
  const retention = startRetention(config, log);
  const registry = new Registry();
  registerReceiverMetrics(registry, worker.receiver, worker.stream);
  retention.register(registry);
  const server = await startProbeServer({ ...config.metrics, registry });
  log.info({ metricsPort: server.port, dir: config.dir }, "Collector started");
  const why = await signalled();
  log.info({ why }, "Stopping");
  retention.stop();
  await worker.stop();
  await server.close();
  return 0;
}

async function runClusterWorker(config: CollectorConfig, log: Logger): Promise<number> {
  const index = Number(process.env["TMO_COLLECTOR_WORKER_INDEX"] ?? "0");
  const worker = await startWorker(config, log, index);
  const registry = new Registry();
  registerReceiverMetrics(registry, worker.receiver, worker.stream);
  // Constructing an aggregator is what makes prom-client answer the primary's metric requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  process.send?.({ ready: true });
  await signalled();
  await worker.stop();
  // The IPC channel to the primary keeps a worker alive; its files are closed now.
  process.disconnect?.();
  return 0;
}

async function runPrimary(config: CollectorConfig, log: Logger): Promise<number> {
  prepare(config, log);
  const ready = new Set<number>();
  let stopping = false;
  // With the apiserver as the map's source, the primary watches once and tells every worker.
  let map: VniMap | undefined;
  const tell = (w: Worker): void => {
    if (map && w.isConnected()) w.send({ vniMap: map } satisfies MapMessage);
  };
  const fork = (index: number): Worker => {
    const w = cluster.fork({ TMO_COLLECTOR_WORKER_INDEX: String(index) });
    w.on("online", () => tell(w));
    w.on("message", (m: { ready?: boolean }) => m.ready && ready.add(index));
    w.on("exit", (code, signal) => {
      ready.delete(index);
      if (stopping) return;
      log.error({ worker: index, code, signal }, "Worker exited; starting it again");
      workers[index] = fork(index);
    });
    return w;
  };
  const workers = Array.from({ length: config.workers }, (_, i) => fork(i));
  const stopWatching = config.vniMapConfigMap
    ? await followMap(config, log, (m) => {
        map = m;
        for (const w of workers) tell(w);
      })
    : () => Promise.resolve();
  const retention = startRetention(config, log);
  const aggregator = new AggregatorRegistry();
  const host = new Registry();
  retention.register(host);
  const server = await startProbeServer({
    ...config.metrics,
    ready: () => ready.size === config.workers,
    metricsText: async () => `${await aggregator.clusterMetrics()}\n${await host.metrics()}`,
  });
  log.info({ workers: config.workers, metricsPort: server.port, dir: config.dir }, "Collector started");
  const why = await signalled();
  log.info({ why }, "Stopping");
  stopping = true;
  retention.stop();
  await stopWatching();
  // A signal, not worker.kill(): that disconnects IPC first and a disconnected worker exits at
  // once, leaving its open file under .partial instead of closing it.
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once("exit", () => resolve());
          w.process.kill("SIGTERM");
        }),
    ),
  );
  await server.close();
  return 0;
}

/** Kernel mode: the devices follow the map; metrics and probes as in userspace mode. */
async function runKernel(config: CollectorConfig, log: Logger): Promise<number> {
  const devices = new VxlanDevices({ port: config.listen.port, log });
  try {
    devices.existing();
  } catch (err) {
    throw new Error("kernel mode needs the ip command, the vxlan module and NET_ADMIN", { cause: err });
  }
  let synced = false;
  const stopWatching = await followMap(config, log, (map) => {
    devices.sync(map);
    synced = true;
    if (devices.refused.size > 0)
      log.warn(
        { sessions: devices.refused.size },
        "Gave no vxlan device to sessions whose AWS filter does not select pods (selectionMode Eni needs userspace mode)",
      );
  });
  // Through the apiserver the first map takes a moment: wait for it, so devices that will be kept
  // are not removed and made again under the tools attached to them.
  for (let waited = 0; !synced && config.vniMapConfigMap && waited < 10_000; waited += 100) await sleep(100);
  if (!synced) devices.sync({ version: 1, sessions: [] }); // no map yet: leftovers go now
  const registry = new Registry();
  registerDeviceMetrics(
    registry,
    () => devices.counters(),
    () => devices.errors,
    () => devices.refused.size,
  );
  const server = await startProbeServer({ ...config.metrics, registry });
  log.info({ metricsPort: server.port, port: config.listen.port }, "Collector started in kernel mode");
  const why = await signalled();
  log.info({ why }, "Stopping; the vxlan devices stay for the tools attached to them");
  await stopWatching();
  await server.close();
  return 0;
}

/** Runs the collector until SIGTERM/SIGINT; resolves to the exit code. */
export async function run(_argv: string[]): Promise<number> {
  const config = loadCollectorConfig(process.env);
  const log = pino({
    level: config.logLevel,
    base: { component: "collector", node: config.nodeName ?? hostname() },
  });
  if (config.mode === "kernel") return runKernel(config, log);
  if (cluster.isWorker) return runClusterWorker(config, log);
  // Watching the map through the apiserver needs the Kubernetes client (25 MiB of heap): the
  // primary process holds it and hands the map to its workers, so the receiving processes stay
  // small (measured: with the client in the receiving process, 5% of 1,400-byte datagrams were
  // lost at 100,000/s, through longer garbage-collection pauses; none without it).
  return config.workers === 1 && !config.vniMapConfigMap ? runSingle(config, log) : runPrimary(config, log);
}
