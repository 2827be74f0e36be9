// Kernel mode in a network namespace the test makes: the collector creates one vxlan device per
// VNI of the map, copies sent to the namespace arrive on the right device (tcpdump attached to it
// reads the inner frames), devices follow map changes, and a restart removes leftovers.
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { VniMap } from "../../src/api/vni-map.ts";
import { buildFrame, vxlanHeader } from "../ec2-sim/packets.ts";
import { sendDatagrams, startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { promtoolCheckMetrics } from "../fixtures/promtool.ts";
import { makeVethNamespace, type VethNamespace } from "../fixtures/netns.ts";
import { until } from "../fixtures/scenario.ts";

const stateDir = inject("harnessStateDir");
const entry = (vni: number, policy: string) => ({
  vni,
  policies: [policy],
  networkInterfaceId: `eni-k${vni}`,
  sourceIp: "10.3.0.1",
  pods: [],
});
const twoSessions: VniMap = { version: 1, sessions: [entry(301, "k/web"), entry(302, "k/db")] };
let net: VethNamespace;

const devices = (): string[] =>
  (JSON.parse(net.exec("ip", "-j", "-d", "link", "show", "type", "vxlan") || "[]") as { ifname: string }[])
    .map((l) => l.ifname)
    .sort();

function sendTo(vni: number, n: number): Promise<void> {
  const frame = buildFrame(
    {
      src: "10.3.0.9",
      dst: "10.3.0.1",
      protocol: 17,
      srcPort: 5000,
      dstPort: 6000,
      payload: `kernel ${vni}`,
    },
    { src: "02:00:00:00:00:09", dst: "02:00:00:00:00:01" },
  );
  const datagram = Buffer.concat([vxlanHeader(vni), frame]);
  return sendDatagrams(4789, Array<Buffer>(n).fill(datagram), { host: net.innerIp });
}

function start(map: VniMap): Promise<CollectorProcess> {
  return startCollectorProcess({
    stateDir,
    name: "collector-kernel",
    map,
    netns: { name: net.ns, host: net.innerIp },
    env: { TMO_COLLECTOR_MODE: "kernel", TMO_COLLECTOR_PORT: "4789" },
  });
}

beforeAll(() => {
  net = makeVethNamespace("kern", 251);
});
afterAll(() => net?.close());

describe("kernel mode", () => {
  it("makes a device per VNI, delivers the inner frames on it, follows the map, and passes promtool", async () => {
    const c = await start(twoSessions);
    try {
      expect(devices()).toEqual(["tmo301", "tmo302"]);
      const alias = net.exec("cat", "/sys/class/net/tmo301/ifalias");
      expect(alias).toContain("eni-k301 vni 301");
      expect(alias).toContain("policy k/web");
      // An IDS attached to the device sees the decapsulated frames.
      const dump = spawn(
        "ip",
        ["netns", "exec", net.ns, "tcpdump", "-i", "tmo301", "-n", "-c", "5", "udp port 6000"],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      let err = "";
      dump.stdout.on("data", (d: Buffer) => (out += d.toString()));
      dump.stderr.on("data", (d: Buffer) => (err += d.toString()));
      await until("tcpdump listening", () =>
        Promise.resolve(err.includes("listening on") ? true : undefined),
      );
      await sendTo(301, 5);
      await sendTo(302, 3);
      await new Promise((r) => dump.once("exit", r));
      expect(out.trim().split("\n")).toHaveLength(5);
      expect(out).toContain("10.3.0.9.5000 > 10.3.0.1.6000: UDP");
      const sample = (vni: number, policy: string) =>
        c.sample(
          "tmo_collector_device_packets_total",
          `{device="tmo${vni}",vni="${vni}",policy="${policy}"}`,
        );
      await until("counted per device", async () =>
        (await sample(301, "k/web")) === 5 && (await sample(302, "k/db")) === 3 ? true : undefined,
      );
      // The map loses a session and gains one: devices follow.
      c.writeMap({ version: 1, sessions: [entry(301, "k/web"), entry(303, "k/new")] });
      await until("devices follow the map", () =>
        Promise.resolve(devices().join(",") === "tmo301,tmo303" ? true : undefined),
      );
      expect(await c.sample("tmo_collector_device_errors_total")).toBe(0);
      expect(promtoolCheckMetrics(await c.metrics())).toEqual({ code: 0, output: "" });
    } finally {
      await c.stop();
    }
    // Stopping leaves the devices for the tools attached to them.
    expect(devices()).toEqual(["tmo301", "tmo303"]);
  });

  it("removes leftover devices at start that the map no longer names", async () => {
    net.exec("ip", "link", "add", "tmo999", "type", "vxlan", "id", "999", "dstport", "4789");
    const c = await start({ version: 1, sessions: [entry(303, "k/new")] });
    try {
      expect(devices()).toEqual(["tmo303"]);
    } finally {
      await c.stop();
    }
    // Devices that are not ours are never touched.
    net.exec("ip", "link", "add", "other7", "type", "vxlan", "id", "7", "dstport", "4790");
    const again = await start({ version: 1, sessions: [] });
    await again.stop();
    expect(devices()).toEqual(["other7"]);
  });
});
