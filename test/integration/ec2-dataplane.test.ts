// The emulator's data plane: copies of synthetic pod traffic follow session order, the first
// accepting filter, rule order, direction and truncation, arrive as VXLAN on loopback, and tshark
// (an independent decoder) reads them back. A shadowed session receives nothing.
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { outerFrame, pcapHeader, pcapRecord, type SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { makeWorld } from "../fixtures/world.ts";

interface Receiver {
  port: number;
  datagrams: Buffer[];
  socket: Socket;
}

async function receiver(): Promise<Receiver> {
  const socket = createSocket("udp4");
  const datagrams: Buffer[] = [];
  socket.on("message", (m) => datagrams.push(m));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  return { port: socket.address().port, datagrams, socket };
}

/** Writes what a receiver got as a pcap (outer UDP to 4789) and reads fields back with tshark. */
function tshark(dir: string, datagrams: Buffer[], fields: string[]): string[][] {
  const file = join(dir, `r-${Math.random().toString(36).slice(2)}.pcap`);
  const records = datagrams.map((d, i) =>
    pcapRecord(
      outerFrame({ src: "10.0.0.5", dst: "10.0.0.4", srcPort: 50000, dstPort: 4789, vxlan: d }),
      1_700_000_000_000 + i,
    ),
  );
  writeFileSync(file, Buffer.concat([pcapHeader(), ...records]));
  return tsharkFields(file, fields, { home: dir });
}

const NLB = (n: string) =>
  `arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/${n}/0123456789abcdef`;
let sim: Ec2Sim;
let dir: string;
const rx: Record<"collector" | "ids" | "shadowed", Receiver> = {} as never;
const world = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0] });
const pod = world.pods.find((p) => p.nodeName === world.nodes[1]!.name)!.podIPs[0]!; // on node 1's eth0
const other = world.pods.find((p) => p.nodeName === world.nodes[0]!.name)!.podIPs[0]!;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tmo-dataplane-"));
  sim = await startEc2Sim();
  seed(sim.state, world.inventory);
  const api = new Ec2MirrorApi({
    client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
    cluster: "dp",
  });
  for (const k of ["collector", "ids", "shadowed"] as const) rx[k] = await receiver();
  const collector = await api.createTarget({
    key: "c",
    owners: [],
    networkInterfaceId: world.inventory.networkInterfaces[0]!.networkInterfaceId,
    description: "",
  });
  const ids = await api.createTarget({
    key: "i",
    owners: [],
    networkLoadBalancerArn: NLB("ids"),
    description: "",
  });
  const shadowed = await api.createTarget({
    key: "s",
    owners: [],
    networkLoadBalancerArn: NLB("late"),
    description: "",
  });
  sim.dataPlane.setEndpoint(collector.trafficMirrorTargetId, { port: rx.collector.port });
  sim.dataPlane.setEndpoint(NLB("ids"), { port: rx.ids.port });
  sim.dataPlane.setEndpoint(shadowed.trafficMirrorTargetId, { port: rx.shadowed.port });
  // Session 1 → collector: HTTP to the pod only (ingress TCP 80); nothing for egress.
  const http = await api.createFilter({
    key: "http",
    rules: [
      {
        direction: "ingress",
        ruleNumber: 10,
        action: "reject",
        protocol: 6,
        sourceCidrBlock: "0.0.0.0/0",
        destinationCidrBlock: `${pod}/32`,
        destinationPortRange: { fromPort: 81, toPort: 65535 },
      },
      {
        direction: "ingress",
        ruleNumber: 20,
        action: "accept",
        protocol: 6,
        sourceCidrBlock: "0.0.0.0/0",
        destinationCidrBlock: `${pod}/32`,
      },
    ],
    networkServices: [],
    description: "",
  });
  // Session 2 → IDS: everything, both directions, truncated to 64 bytes.
  const all = await api.createFilter({
    key: "all",
    rules: [
      {
        direction: "ingress",
        ruleNumber: 100,
        action: "accept",
        sourceCidrBlock: "0.0.0.0/0",
        destinationCidrBlock: "0.0.0.0/0",
      },
      {
        direction: "egress",
        ruleNumber: 100,
        action: "accept",
        sourceCidrBlock: "0.0.0.0/0",
        destinationCidrBlock: "0.0.0.0/0",
      },
    ],
    networkServices: [],
    description: "",
  });
  const eni = world.inventory.networkInterfaces[2]!.networkInterfaceId;
  const base = { owners: [], networkInterfaceId: eni, description: "" };
  await api.createSession({
    ...base,
    key: "s1",
    trafficMirrorTargetId: collector.trafficMirrorTargetId,
    trafficMirrorFilterId: http.trafficMirrorFilterId,
    sessionNumber: 1,
    virtualNetworkId: 101,
  });
  await api.createSession({
    ...base,
    key: "s2",
    trafficMirrorTargetId: ids.trafficMirrorTargetId,
    trafficMirrorFilterId: all.trafficMirrorFilterId,
    sessionNumber: 2,
    virtualNetworkId: 102,
    packetLength: 64,
  });
  // Session 3 to another target with the same accept-all filter: session 2 always wins first.
  await api.createSession({
    ...base,
    key: "s3",
    trafficMirrorTargetId: shadowed.trafficMirrorTargetId,
    trafficMirrorFilterId: all.trafficMirrorFilterId,
    sessionNumber: 3,
    virtualNetworkId: 103,
  });
});

afterAll(async () => {
  for (const r of Object.values(rx)) r.socket.close();
  await sim?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("data plane", () => {
  it("sends each packet to the first session whose filter accepts it, as AWS does", async () => {
    const packets: SyntheticPacket[] = [
      { src: other, dst: pod, protocol: 6, srcPort: 40000, dstPort: 80, payload: "GET / HTTP/1.1\r\n\r\n" }, // → session 1
      { src: other, dst: pod, protocol: 6, srcPort: 40001, dstPort: 443, payloadLength: 200 }, // reject in 1 → session 2
      { src: pod, dst: other, protocol: 17, srcPort: 5353, dstPort: 53, payloadLength: 200 }, // egress: 1 has no egress rules → 2
    ];
    const copies = await sim.dataPlane.send(packets);
    expect(copies.map((c) => [c.packet, c.virtualNetworkId, c.direction])).toEqual([
      [0, 101, "ingress"],
      [1, 102, "ingress"],
      [2, 102, "egress"],
    ]);
    await sleep(200);
    expect(rx.collector.datagrams).toHaveLength(1);
    expect(rx.ids.datagrams).toHaveLength(2);
    expect(rx.shadowed.datagrams).toHaveLength(0);
  });

  it("delivers VXLAN that tshark decodes: VNI, inner addresses, ports, payload and truncation", () => {
    const [collectorCopy] = tshark(dir, rx.collector.datagrams, [
      "vxlan.vni",
      "ip.src",
      "ip.dst",
      "tcp.dstport",
      "http.request.method",
    ]);
    expect(collectorCopy).toEqual(["101", `10.0.0.5,${other}`, `10.0.0.4,${pod}`, "80", "GET"]);
    const ids = tshark(dir, rx.ids.datagrams, ["vxlan.vni", "udp.dstport", "frame.len"]);
    // Inner frames cut to 64 bytes: outer 14+20+8+8 = 50 bytes of headers on top.
    expect(ids.map((r) => [r[0], r[2]])).toEqual([
      ["102", "114"],
      ["102", "114"],
    ]);
  });
});
