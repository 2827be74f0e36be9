// The collector as a process, fed by the emulator's data plane the way AWS feeds a target: the
// files it writes are read by tshark, tcpdump and Suricata (which raises an alert on a signature in
// the traffic); truncated copies keep their original length; malformed and unknown datagrams are
// counted and never stop it; a new VNI map is picked up while it runs.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { VniMap } from "../../src/api/vni-map.ts";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { eniHolds } from "../ec2-sim/dataplane.ts";
import { buildFrame, vxlanHeader, type SyntheticPacket } from "../ec2-sim/packets.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { sendDatagrams, startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { promtoolCheckMetrics } from "../fixtures/promtool.ts";
import { tsharkFields } from "../fixtures/tshark.ts";
import { until } from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const stateDir = inject("harnessStateDir");
const SIGNATURE = "tmo-test-signature-7f3a";
const world = makeWorld({ nodes: 3, podsPerNode: 2, collectors: [0] });
const podOn = (node: number) => world.pods.find((p) => p.nodeName === world.nodes[node]!.name)!;
const web = podOn(1);
const db = podOn(2);
const client = podOn(0).podIPs[0]!;
let sim: Ec2Sim;
let collector: CollectorProcess;
let work: string;
let map: VniMap;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "tmo-collector-it-"));
  sim = await startEc2Sim();
  seed(sim.state, world.inventory);
  const api = new Ec2MirrorApi({
    client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
    cluster: "collector-it",
  });
  const target = await api.createTarget({
    key: "c",
    owners: [],
    networkInterfaceId: world.inventory.networkInterfaces[0]!.networkInterfaceId,
    description: "",
  });
  const toPod = (ip: string) =>
    api.createFilter({
      key: ip,
      rules: [
        {
          direction: "ingress",
          ruleNumber: 10,
          action: "accept",
          sourceCidrBlock: "0.0.0.0/0",
          destinationCidrBlock: `${ip}/32`,
        },
      ],
      networkServices: [],
      description: "",
    });
  const webEni = world.inventory.networkInterfaces.find((e) => eniHolds(e, web.podIPs[0]!))!;
  const dbEni = world.inventory.networkInterfaces.find((e) => eniHolds(e, db.podIPs[0]!))!;
  const s1 = await api.createSession({
    key: "s1",
    owners: [],
    description: "",
    networkInterfaceId: webEni.networkInterfaceId,
    trafficMirrorTargetId: target.trafficMirrorTargetId,
    trafficMirrorFilterId: (await toPod(web.podIPs[0]!)).trafficMirrorFilterId,
    sessionNumber: 1,
    virtualNetworkId: 4101,
  });
  const s2 = await api.createSession({
    key: "s2",
    owners: [],
    description: "",
    networkInterfaceId: dbEni.networkInterfaceId,
    trafficMirrorTargetId: target.trafficMirrorTargetId,
    trafficMirrorFilterId: (await toPod(db.podIPs[0]!)).trafficMirrorFilterId,
    sessionNumber: 1,
    virtualNetworkId: 4102,
    packetLength: 60,
  });
  map = {
    version: 1,
    sessions: [
      {
        vni: 4101,
        sessionId: s1.trafficMirrorSessionId,
        policies: ["shop/web"],
        networkInterfaceId: webEni.networkInterfaceId,
        sourceIp: webEni.privateIps[0]!,
        nodeName: web.nodeName,
        pods: [{ name: `shop/${web.name}`, ip: web.podIPs[0]! }],
      },
      {
        vni: 4102,
        sessionId: s2.trafficMirrorSessionId,
        policies: ["shop/db"],
        networkInterfaceId: dbEni.networkInterfaceId,
        sourceIp: dbEni.privateIps[0]!,
        pods: [{ name: `shop/${db.name}`, ip: db.podIPs[0]! }],
      },
    ],
  };
  collector = await startCollectorProcess({ stateDir, map, env: { TMO_COLLECTOR_CAPTURE_UNKNOWN: "true" } });
  sim.dataPlane.setEndpoint(target.trafficMirrorTargetId, { port: collector.port });
});

afterAll(async () => {
  sim?.dataPlane.close();
  await sim?.stop();
  await collector?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("collector", () => {
  let webFile: string;
  let dbFile: string;

  it("writes what the data plane mirrors, per policy, readable by tshark, tcpdump and Suricata, with metrics promtool accepts", async () => {
    const packets: SyntheticPacket[] = [];
    for (let i = 0; i < 40; i++) {
      packets.push({
        src: client,
        dst: web.podIPs[0]!,
        protocol: 17,
        srcPort: 30000 + i,
        dstPort: 9999,
        payload: `hello ${i} ${i % 10 === 0 ? SIGNATURE : "benign"}`,
      });
    }
    for (let i = 0; i < 15; i++) {
      packets.push({
        src: client,
        dst: db.podIPs[0]!,
        protocol: 6,
        srcPort: 31000 + i,
        dstPort: 5432,
        payloadLength: 500,
      });
    }
    // Not mirrored: the filters accept only traffic to the two pods.
    packets.push({
      src: web.podIPs[0]!,
      dst: client,
      protocol: 17,
      srcPort: 9999,
      dstPort: 30000,
      payloadLength: 10,
    });
    const copies = await sim.dataPlane.send(packets);
    expect(copies.map((c) => c.virtualNetworkId).sort()).toEqual([
      ...Array(40).fill(4101),
      ...Array(15).fill(4102),
    ]);
    await until("all copies counted", async () =>
      (await collector.sample("tmo_collector_packets_total", '{policy="shop/web"}')) === 40 &&
      (await collector.sample("tmo_collector_packets_total", '{policy="shop/db"}')) === 15
        ? true
        : undefined,
    );
    // Prometheus' own linter on the text, per-policy series included.
    expect(promtoolCheckMetrics(await collector.metrics())).toEqual({ code: 0, output: "" });
    // These files came through the batch receive path (the addon `make deps` builds).
    expect(await collector.sample("tmo_collector_batch_receive")).toBe(1);
    await collector.stop(); // closes the files
    webFile = collector.files("shop/web")[0]!;
    dbFile = collector.files("shop/db")[0]!;
    expect(collector.files("shop/web")).toHaveLength(1);
    expect(collector.log()).toContain("Loaded the VNI map");

    const rows = tsharkFields(
      webFile!,
      ["frame.interface_name", "frame.interface_description", "ip.dst", "udp.dstport", "data.data"],
      { home: work },
    );
    expect(rows).toHaveLength(40);
    const eni = map.sessions[0]!.networkInterfaceId;
    expect(new Set(rows.map((r) => r[0]))).toEqual(new Set([`${eni} vni 4101`]));
    expect(rows[0]![1]).toContain("policy shop/web");
    expect(rows[0]![1]).toContain(map.sessions[0]!.sessionId!);
    expect(rows.every((r) => r[2] === web.podIPs[0] && r[3] === "9999")).toBe(true);
    const payloads = rows.map((r) => Buffer.from(r[4]!, "hex").toString());
    expect(payloads.filter((p) => p.includes(SIGNATURE))).toHaveLength(4);

    const dump = execFileSync("tcpdump", ["-nn", "-r", webFile!], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(dump.trim().split("\n")).toHaveLength(40);
    expect(dump).toContain(`${web.podIPs[0]}.9999: UDP`);
  });

  it("keeps the original length of copies the session truncated", () => {
    const rows = tsharkFields(dbFile, ["frame.len", "frame.cap_len", "ip.len"], { home: work });
    expect(rows).toHaveLength(15);
    // 14 Ethernet + 20 IP + 20 TCP + 500 payload = 554 on the wire; 60 bytes kept.
    expect(new Set(rows.map((r) => `${r[0]}/${r[1]}/${r[2]}`))).toEqual(new Set(["554/60/540"]));
  });

  it("makes files Suricata alerts on", () => {
    const rules = join(work, "tmo.rules");
    writeFileSync(
      rules,
      `alert udp any any -> any 9999 (msg:"TMO test signature"; content:"${SIGNATURE}"; sid:9000001; rev:1;)\n`,
    );
    const logs = mkdtempSync(join(work, "suricata-"));
    // -k none: truncated copies carry no valid checksum (the reference says IDS tools must not check).
    execFileSync("suricata", ["-r", webFile, "-S", rules, "-l", logs, "-k", "none", "--runmode", "single"], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    });
    const alerts = readFileSync(join(logs, "eve.json"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event_type: string; alert?: { signature_id: number } })
      .filter((e) => e.event_type === "alert");
    expect(alerts.map((a) => a.alert!.signature_id)).toEqual([9000001, 9000001, 9000001, 9000001]);
  });

  it("files are readable only by their owner", () => {
    expect(statSync(webFile).mode & 0o777).toBe(0o600);
    expect(statSync(collector.dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(collector.dir, "shop/web")).mode & 0o777).toBe(0o700);
  });
});

describe("collector input it cannot use", () => {
  let c: CollectorProcess;
  const frame = buildFrame(
    { src: "10.1.0.1", dst: "10.1.0.2", protocol: 17, srcPort: 1, dstPort: 2, payloadLength: 30 },
    { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
  );

  beforeAll(async () => {
    c = await startCollectorProcess({
      stateDir,
      name: "collector-bad",
      map: { version: 1, sessions: [] },
      env: { TMO_COLLECTOR_CAPTURE_UNKNOWN: "true" },
    });
  });
  afterAll(() => c?.stop());

  it("counts malformed datagrams and unknown VNIs, keeps unknown ones apart, and stays up", async () => {
    const garbage: Buffer[] = [];
    for (let i = 0; i < 100; i++) garbage.push(Buffer.alloc(i % 30)); // short, or no I flag
    garbage.push(Buffer.concat([Buffer.from([0x08, 1, 0, 0, 0, 0, 1, 0]), frame])); // reserved bits
    const unknown = Array.from({ length: 7 }, (_, i) => Buffer.concat([vxlanHeader(777 + (i % 2)), frame]));
    await sendDatagrams(c.port, [...garbage, ...unknown]);
    await until("counted", async () =>
      (await c.sample("tmo_collector_datagrams_total")) === 108 ? true : undefined,
    );
    // Lengths 0–29: below 8 + 14 bytes is "short"; the zero-filled rest lack the I flag.
    const expectShort = garbage.filter((g) => g.length < 22).length;
    const reasons = ["short", "flags", "reserved"].map((r) =>
      c.sample("tmo_collector_malformed_total", `{reason="${r}"}`),
    );
    expect(await Promise.all(reasons)).toEqual([expectShort, 100 - expectShort, 1]);
    expect(await c.sample("tmo_collector_unknown_vni_packets_total")).toBe(7);
    expect(await c.sample("tmo_collector_unknown_vni_bytes_total")).toBe(7 * frame.length);
    expect(await c.metrics()).toMatch(/^tmo_collector_internal_errors_total 0$/m);
    expect(await fetch(`http://127.0.0.1:${c.metricsPort}/healthz`).then((r) => r.status)).toBe(200);
    await c.stop();
    const [file] = c.files("_unknown");
    const names = tsharkFields(file!, ["frame.interface_name"], { home: work }).map((r) => r[0]);
    expect(names.sort()).toEqual([...Array(4).fill("unknown vni 777"), ...Array(3).fill("unknown vni 778")]);
  });
});

describe("collector map updates", () => {
  it("picks up a new VNI map while running and keeps the old one when the new one is invalid", async () => {
    const c = await startCollectorProcess({ stateDir, name: "collector-map" });
    try {
      const frame = buildFrame(
        { src: "10.1.0.1", dst: "10.1.0.2", protocol: 17, srcPort: 1, dstPort: 2 },
        { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
      );
      await sendDatagrams(c.port, [Buffer.concat([vxlanHeader(55), frame])]);
      await until("unknown", async () =>
        (await c.sample("tmo_collector_unknown_vni_packets_total")) === 1 ? true : undefined,
      );
      c.writeMap({
        version: 1,
        sessions: [
          { vni: 55, policies: ["team/late"], networkInterfaceId: "eni-1", sourceIp: "10.1.0.1", pods: [] },
        ],
      });
      await until("map loaded", () =>
        Promise.resolve(c.log().split("Loaded the VNI map").length === 3 ? true : undefined),
      );
      writeFileSync(c.mapFile, '{"version": 2, "sessions": "nope"}');
      await until("bad map reported", () =>
        Promise.resolve(c.log().includes("Kept the previous VNI map") ? true : undefined),
      );
      await sendDatagrams(c.port, [Buffer.concat([vxlanHeader(55), frame])]);
      await until("routed", async () =>
        (await c.sample("tmo_collector_packets_total", '{policy="team/late"}')) === 1 ? true : undefined,
      );
      expect(c.log()).toContain("is not valid");
    } finally {
      await c.stop();
    }
  });
});
