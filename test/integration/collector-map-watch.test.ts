// The collector following the operator's VNI map through the apiserver (a watch of the one
// ConfigMap), as one process and with two workers (the primary watches and tells the workers): a
// map written after start is used (an older operator's plain key, then the gzip key that replaces
// it), a pod that leaves the map stops being kept, and an invalid or corrupt document keeps the
// previous map.
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { gzipSync } from "node:zlib";
import {
  encodeVniMap,
  VNI_MAP_CONFIGMAP_KEY,
  VNI_MAP_LEGACY_CONFIGMAP_KEY,
  type VniMap,
} from "../../src/api/vni-map.ts";
import { writeConfigMapKey } from "../../src/k8s/objects.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { buildFrame, vxlanHeader } from "../ec2-sim/packets.ts";
import { sendDatagrams, startCollectorProcess, type CollectorProcess } from "../fixtures/collector.ts";
import { createNamespaces, until } from "../fixtures/scenario.ts";

const kubeconfigPath = inject("kubeconfigPath");
const stateDir = inject("harnessStateDir");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const rest = new KubeRest(kc);
const NS = "mapwatch-system";
const POD_A = "10.0.1.20";
const POD_B = "10.0.1.21";

function mapWith(ips: string[]): VniMap {
  return {
    version: 1,
    sessions: [
      {
        vni: 5101,
        policies: ["shop/web"],
        networkInterfaceId: "eni-mapwatch",
        sourceIp: "10.0.1.10",
        pods: ips.map((ip, i) => ({ name: `shop/web-${i}`, ip })),
        selections: [{ policy: "shop/web", ips }],
      },
    ],
    policies: { "shop/web": { target: "collector", rules: [], mirrorDns: false } },
  };
}

const toPod = (ip: string) =>
  Buffer.concat([
    vxlanHeader(5101),
    buildFrame(
      { src: "10.9.0.1", dst: ip, srcPort: 5000, dstPort: 80, payloadLength: 10 },
      { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
    ),
  ]);

/** Writes the ConfigMap's gzip key as the operator does (base64 `value`), removing the plain key. */
const publish = (name: string, value: string) =>
  writeConfigMapKey({
    rest,
    namespace: NS,
    name,
    key: VNI_MAP_CONFIGMAP_KEY,
    value,
    binary: true,
    replaces: [VNI_MAP_LEGACY_CONFIGMAP_KEY],
  });
/** Writes the plain JSON key, as an operator before the gzip key did. */
const publishLegacy = (name: string, map: VniMap) =>
  writeConfigMapKey({
    rest,
    namespace: NS,
    name,
    key: VNI_MAP_LEGACY_CONFIGMAP_KEY,
    value: JSON.stringify(map),
  });
const refusals = (c: CollectorProcess) => c.log().split("Kept the previous VNI map").length - 1;

beforeAll(async () => {
  await createNamespaces(rest, [NS]);
});

describe.each([
  { workers: 1, name: "vni-map-one" },
  { workers: 2, name: "vni-map-two" },
])("collector with the map from the apiserver, $workers worker(s)", ({ workers, name }) => {
  let c: CollectorProcess;

  beforeAll(async () => {
    c = await startCollectorProcess({
      stateDir,
      name: `collector-mapwatch-${workers}`,
      env: {
        KUBECONFIG: kubeconfigPath,
        TMO_COLLECTOR_VNI_MAP_CONFIGMAP: `${NS}/${name}`,
        TMO_COLLECTOR_WORKERS: String(workers),
      },
    });
  });
  afterAll(async () => {
    await c?.stop();
  });

  const kept = () => c.sample("tmo_collector_packets_total", '{policy="shop/web"}');
  const unselected = () => c.sample("tmo_collector_unselected_packets_total");

  it("uses a map written after it started (an older operator's key, then the gzip key), and drops a pod as soon as the map does", async () => {
    // Before the ConfigMap exists, the VNI is unknown.
    await sendDatagrams(c.port, [toPod(POD_A)]);
    await until("the copy counted as unknown", async () =>
      (await c.sample("tmo_collector_unknown_vni_packets_total")) === 1 ? true : undefined,
    );
    await publishLegacy(name, mapWith([POD_A, POD_B]));
    // Until every worker has the map, a copy may still be unknown: send until one is kept.
    await until("a copy kept under the new map", async () => {
      await sendDatagrams(c.port, [toPod(POD_B)], { sockets: workers });
      return (await kept()) > 0 ? true : undefined;
    });
    const before = { kept: await kept(), unselected: await unselected() };
    await publish(name, encodeVniMap(mapWith([POD_A])));
    await until("B's copies no longer kept", async () => {
      await sendDatagrams(c.port, [toPod(POD_B)], { sockets: workers });
      return (await unselected()) > before.unselected ? true : undefined;
    });
    const k = await kept();
    await sendDatagrams(c.port, [toPod(POD_A), toPod(POD_A)], { sockets: workers });
    await until("A's copies still kept", async () => ((await kept()) === k + 2 ? true : undefined));
    expect(c.log()).toContain("Loaded the VNI map");
  });

  it("keeps the previous map when the ConfigMap holds an invalid document", async () => {
    const before = refusals(c);
    await publish(name, gzipSync('{"version": 1, "sessions": "not a list"}').toString("base64"));
    await until("the refusal logged", () => Promise.resolve(refusals(c) > before ? true : undefined));
    const k = await kept();
    await sendDatagrams(c.port, [toPod(POD_A)], { sockets: workers });
    await until("A's copy still kept", async () => ((await kept()) === k + 1 ? true : undefined));
  });

  it("keeps the previous map, naming the key, when the gzip key is corrupt", async () => {
    const before = refusals(c);
    await publish(name, Buffer.from("not gzip at all").toString("base64"));
    await until("the refusal logged", () => Promise.resolve(refusals(c) > before ? true : undefined));
    expect(c.log()).toContain(`(key ${VNI_MAP_CONFIGMAP_KEY}) is not valid gzip`);
    const k = await kept();
    await sendDatagrams(c.port, [toPod(POD_A)], { sockets: workers });
    await until("A's copy still kept", async () => ((await kept()) === k + 1 ? true : undefined));
  });
});
