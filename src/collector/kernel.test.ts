// Kernel mode's device plan with a recording `ip` (the real devices are made in
// test/integration/collector-kernel.test.ts, in a network namespace).
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { VniEntry } from "../api/vni-map.ts";
import { VxlanDevices } from "./kernel.ts";

function entry(vni: number, extra: Partial<VniEntry> = {}): VniEntry {
  return {
    vni,
    policies: ["shop/web"],
    networkInterfaceId: "eni-k",
    sourceIp: "10.0.1.10",
    pods: [{ name: "shop/web-0", ip: "10.0.1.20" }],
    selections: [{ policy: "shop/web", ips: ["10.0.1.20"] }],
    ...extra,
  };
}

describe("VxlanDevices.sync", () => {
  it("gives no device to a session whose AWS filter does not select pods", () => {
    const calls: string[][] = [];
    const devices = new VxlanDevices({
      port: 4789,
      log: pino({ level: "silent" }),
      ip: (args) => {
        calls.push(args);
        return "";
      },
    });
    devices.sync({ version: 1, sessions: [entry(301), entry(302, { selectionAtCollector: true })] });
    const added = calls.filter((c) => c[0] === "link" && c[1] === "add").map((c) => c[2]);
    expect(added).toEqual(["tmo301"]);
    expect([...devices.refused]).toEqual([302]);
    devices.sync({ version: 1, sessions: [entry(301)] });
    expect(devices.refused.size).toBe(0);
  });
});
