import { describe, expect, it } from "vitest";
import { parseCidr } from "../../src/plan/ipv4.ts";
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";
import { makeWorld } from "../fixtures/world.ts";

describe("EKS node fixtures", () => {
  it("gives every node distinct addresses, instance ids and non-overlapping /26 pod ranges", () => {
    const specs = Array.from({ length: 1792 }, (_, i) => eksNodeSpec(i));
    expect(new Set(specs.map((s) => s.internalIp)).size).toBe(1792);
    expect(new Set(specs.map((s) => s.instanceId)).size).toBe(1792);
    expect(new Set(specs.map((s) => s.podCidr)).size).toBe(1792);
    expect(specs.every((s) => s.podCidr.endsWith("/26"))).toBe(true);
  });

  it("builds a Node with an EKS providerID and the labels EKS sets", () => {
    const spec = eksNodeSpec(4, { instanceType: "c5.xlarge" });
    const node = makeEksNode(spec);
    expect(node.spec?.providerID).toBe(`aws:///us-east-1b/${spec.instanceId}`);
    expect(node.metadata?.labels?.["node.kubernetes.io/instance-type"]).toBe("c5.xlarge");
    expect(node.metadata?.labels?.["topology.kubernetes.io/zone"]).toBe("us-east-1b");
    expect(node.status?.addresses?.find((a) => a.type === "InternalIP")?.address).toBe("10.0.0.8");
  });

  it("refuses indexes outside the address plan", () => {
    expect(() => eksNodeSpec(1792)).toThrow(/out of range/);
    expect(() => eksNodeSpec(-1)).toThrow(/out of range/);
  });

  it("mixed addressing: three ENIs per node hold every address of the node's /26 exactly once", () => {
    const w = makeWorld({ nodes: 1000, podsPerNode: 0, addressing: "mixed" });
    expect(w.inventory.networkInterfaces).toHaveLength(3000);
    expect(new Set(w.inventory.networkInterfaces.map((e) => e.networkInterfaceId)).size).toBe(3000);
    const primaries = w.inventory.networkInterfaces.map((e) => e.primaryIp);
    expect(new Set(primaries).size).toBe(3000);
    for (const i of [0, 767, 768, 999]) {
      const block = parseCidr(eksNodeSpec(i).podCidr)!;
      const enis = w.inventory.networkInterfaces.filter((e) => e.instanceId === eksNodeSpec(i).instanceId);
      const held: number[] = [];
      for (const e of enis) {
        for (const ip of e.privateIps.slice(1)) held.push(parseCidr(`${ip}/32`)!.base);
        for (const c of e.ipv4Prefixes) {
          const b = parseCidr(c)!;
          for (let a = b.base; a < b.base + 16; a++) held.push(a);
        }
      }
      held.sort((a, b) => a - b);
      expect(held).toEqual(Array.from({ length: 64 }, (_, k) => block.base + k));
      expect(enis.every((e) => e.privateIps.length > 1 || e.ipv4Prefixes.length > 0)).toBe(true);
      expect(enis.some((e) => e.privateIps.length > 1 && e.ipv4Prefixes.length > 0)).toBe(true);
    }
  });
});
