import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  encodeVniMap,
  parseVniMapBytes,
  readVniMapConfigMap,
  vniMapPayload,
  VNI_MAP_CONFIGMAP_KEY,
  VNI_MAP_LEGACY_CONFIGMAP_KEY,
  type VniMap,
} from "./vni-map.ts";

const map: VniMap = {
  version: 1,
  sessions: [
    {
      vni: 5101,
      sessionId: "tms-0123456789abcdef0",
      policies: ["shop/web"],
      networkInterfaceId: "eni-0123456789abcdef0",
      sourceIp: "10.0.1.10",
      pods: [{ name: "shop/web-0", ip: "10.0.1.20" }],
      selections: [{ policy: "shop/web", ips: ["10.0.1.20"] }],
    },
  ],
  policies: { "shop/web": { target: "collector", rules: [], mirrorDns: false } },
};
const other: VniMap = { ...map, sessions: [{ ...map.sessions[0]!, vni: 5102 }] };
const where = "ConfigMap tmo/traffic-mirror-vni-map";
const gzKey = (b64: string) => ({ binaryData: { [VNI_MAP_CONFIGMAP_KEY]: b64 } });

describe("the VNI map in a ConfigMap", () => {
  it("reads back what the operator writes: compact JSON, gzip-compressed, base64", () => {
    const encoded = encodeVniMap(map);
    expect(readVniMapConfigMap(gzKey(encoded), where)).toEqual(map);
    // Compact: the JSON inside has no indentation.
    expect(gunzipSync(Buffer.from(encoded, "base64")).toString("utf8")).toBe(JSON.stringify(map));
    // The same map encodes to the same bytes, so an unchanged map is not written again.
    expect(encodeVniMap(structuredClone(map))).toBe(encoded);
  });

  it("reads a map written by an older operator (plain JSON in data)", () => {
    const cm = { data: { [VNI_MAP_LEGACY_CONFIGMAP_KEY]: JSON.stringify(map, null, 1) } };
    expect(readVniMapConfigMap(cm, where)).toEqual(map);
    expect(vniMapPayload(cm)).toEqual(cm);
  });

  it("prefers the gzip key when both are there, and finds no map when neither is", () => {
    const both = {
      ...gzKey(encodeVniMap(map)),
      data: { [VNI_MAP_LEGACY_CONFIGMAP_KEY]: JSON.stringify(other) },
    };
    expect(readVniMapConfigMap(both, where)).toEqual(map);
    expect(vniMapPayload(both)).toEqual(gzKey(encodeVniMap(map)));
    const unrelated = { data: { other: "x" }, binaryData: null };
    expect(readVniMapConfigMap(unrelated, where)).toBeUndefined();
    expect(vniMapPayload(unrelated)).toBeUndefined();
  });

  it.each([
    [
      "bytes that are not gzip",
      Buffer.from("{}").toString("base64"),
      /\(key vni-map\.json\.gz\) is not valid gzip/,
    ],
    [
      "a truncated gzip stream",
      encodeVniMap(map).slice(0, 40),
      /ConfigMap tmo\/traffic-mirror-vni-map \(key vni-map\.json\.gz\) is not valid gzip: unexpected end of file/,
    ],
    [
      "gzip of text that is not JSON",
      gzipSync("not json").toString("base64"),
      /reading the VNI map .*vni-map\.json\.gz/,
    ],
    [
      "gzip of a document that does not validate",
      gzipSync('{"version":1,"sessions":"no"}').toString("base64"),
      /the VNI map .*vni-map\.json\.gz\) is not valid: sessions/,
    ],
  ])("refuses %s with a message naming the ConfigMap and key", (_, b64, message) => {
    expect(() => readVniMapConfigMap(gzKey(b64), where)).toThrow(message);
  });

  it("reads a file as plain JSON or gzip (a mounted binaryData key)", () => {
    expect(parseVniMapBytes(Buffer.from(JSON.stringify(map)), "/etc/map")).toEqual(map);
    expect(parseVniMapBytes(Buffer.from(encodeVniMap(map), "base64"), "/etc/map")).toEqual(map);
    expect(() => parseVniMapBytes(Buffer.from([0x1f, 0x8b, 0, 0]), "/etc/map")).toThrow(
      /the VNI map \/etc\/map is not valid gzip/,
    );
  });
});
