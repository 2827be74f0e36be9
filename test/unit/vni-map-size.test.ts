// The VNI map of a large cluster fits in its ConfigMap: 1,000 nodes (three ENIs each), 30,000
// pods and 100 policies, planned by the real planner, with names and session ids shaped like
// real ones (a Deployment's pods' random suffixes compress worse than sequential names). As
// pretty-printed JSON in `data` the apiserver refused it (over its 3 MiB request limit); as
// gzip-compressed compact JSON in `binaryData` it must stay under a ConfigMap's 1 MiB.
import { describe, expect, it } from "vitest";
import {
  encodeVniMap,
  readVniMapConfigMap,
  VNI_MAP_CONFIGMAP_KEY,
  type VniMap,
} from "../../src/api/vni-map.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import { makeBenchInput } from "../../bench/plan/world.ts";

const CONFIGMAP_LIMIT = 1024 * 1024;
const MiB = (n: number) => `${(n / CONFIGMAP_LIMIT).toFixed(2)} MiB`;

/** A fixed pseudo-random sequence (mulberry32), so the figures are the same on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function largeClusterMap(): { map: VniMap; pods: number; policies: number } {
  const next = random(42);
  const chars = (n: number, alphabet: string) =>
    Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]).join("");
  const input = makeBenchInput(1000, "IPv4", { podsPerNode: 30, namespaces: 25 });
  // A Deployment's pods: `<app>-<replica set hash>-<5 random characters>`.
  const hashes = new Map<string, string>();
  for (const p of input.pods) {
    const app = `${p.labels["app"]}-service`;
    const key = `${p.namespace}/${app}`;
    if (!hashes.has(key)) hashes.set(key, chars(10, "bcdfghjklmnpqrstvwxz2456789"));
    p.name = `${app}-${hashes.get(key)}-${chars(5, "bcdfghjklmnpqrstvwxz2456789")}`;
  }
  // Two targets, as the scale run's (an NLB and the collectors): at most two sessions per ENI, within
  // AWS's three, so every pod is mirrored and in the map.
  input.policies.forEach((p, i) => (p.spec.targetRef = { name: `ids-${i % 2}` }));
  const plan = planMirroring(input);
  // As published: every session made, with its id.
  const map: VniMap = {
    ...plan.vniMap,
    sessions: plan.vniMap.sessions.map((e) => ({ ...e, sessionId: `tms-${chars(17, "0123456789abcdef")}` })),
  };
  return { map, pods: input.pods.length, policies: input.policies.length };
}

describe("the VNI map of a large cluster", () => {
  it("fits in its ConfigMap as gzip-compressed compact JSON", () => {
    const { map, pods, policies } = largeClusterMap();
    expect([pods, policies]).toEqual([30_000, 100]);
    // Every pod is in the map (each is selected by one policy).
    expect(new Set(map.sessions.flatMap((e) => e.pods.map((p) => p.name))).size).toBe(30_000);
    const pretty = Buffer.byteLength(JSON.stringify(map, null, 1));
    const compact = Buffer.byteLength(JSON.stringify(map));
    const encoded = encodeVniMap(map);
    console.log(
      `VNI map of 1,000 nodes, ${map.sessions.length} sessions, 30,000 pods, 100 policies: ` +
        `pretty JSON ${MiB(pretty)}, compact JSON ${MiB(compact)}, ` +
        `gzip ${MiB(Buffer.from(encoded, "base64").length)}, base64 in the ConfigMap ${MiB(encoded.length)}`,
    );
    // The old format did not fit (the apiserver's request limit is 3 MiB; a ConfigMap's 1 MiB).
    expect(pretty).toBeGreaterThan(3 * CONFIGMAP_LIMIT);
    expect(encoded.length).toBeLessThan(CONFIGMAP_LIMIT);
    expect(readVniMapConfigMap({ binaryData: { [VNI_MAP_CONFIGMAP_KEY]: encoded } }, "the test")).toEqual(
      map,
    );
  });
});
