import { describe, expect, it } from "vitest";
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";

describe("EKS node fixtures", () => {
  it("gives every node distinct addresses, instance ids and non-overlapping /26 pod ranges", () => {
    const specs = Array.from({ length: 768 }, (_, i) => eksNodeSpec(i));
    expect(new Set(specs.map((s) => s.internalIp)).size).toBe(768);
    expect(new Set(specs.map((s) => s.instanceId)).size).toBe(768);
    expect(new Set(specs.map((s) => s.podCidr)).size).toBe(768);
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
    expect(() => eksNodeSpec(768)).toThrow(/out of range/);
  });
});
