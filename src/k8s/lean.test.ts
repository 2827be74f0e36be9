import { describe, expect, it } from "vitest";
import { leanCustom, leanNode, leanPod } from "./lean.ts";

describe("lean copies", () => {
  it("keeps only what the planner needs of a pod", () => {
    const pod = {
      metadata: {
        name: "web-1",
        namespace: "shop",
        uid: "u1",
        labels: { app: "web" },
        annotations: { big: "x".repeat(1000) },
      },
      spec: { nodeName: "n1", containers: [{ name: "c", image: "i" }] },
      status: { phase: "Running", podIP: "10.0.64.5", podIPs: [{ ip: "10.0.64.5" }, { ip: "fd00::5" }] },
    };
    const lean = leanPod(pod);
    expect(lean).toEqual({
      namespace: "shop",
      name: "web-1",
      uid: "u1",
      labels: { app: "web" },
      nodeName: "n1",
      podIPs: ["10.0.64.5", "fd00::5"],
      hostNetwork: false,
      phase: "Running",
      deleting: false,
    });
    // A copy: mutating the raw object does not reach the cache.
    pod.metadata.labels.app = "changed";
    expect(lean.labels.app).toBe("web");
  });

  it("keeps when a pod last became Ready, and nothing while it is not", () => {
    const conditions = (status: string) => [
      { type: "PodScheduled", status: "True", lastTransitionTime: "2026-12-01T11:00:00Z" },
      { type: "Ready", status, lastTransitionTime: "2026-12-01T12:00:05Z" },
    ];
    const raw = (status: string) => ({
      metadata: { name: "p", namespace: "n" },
      spec: {},
      status: { phase: "Running", conditions: conditions(status) },
    });
    expect(leanPod(raw("True")).readySince).toBe(Date.parse("2026-12-01T12:00:05Z"));
    expect(leanPod(raw("False")).readySince).toBeUndefined();
  });

  it("handles a pending pod and a terminating host-network pod", () => {
    expect(
      leanPod({ metadata: { name: "p", namespace: "n" }, spec: {}, status: { phase: "Pending" } }),
    ).toMatchObject({
      podIPs: [],
      nodeName: undefined,
      phase: "Pending",
    });
    expect(
      leanPod({
        metadata: { name: "p", namespace: "n", deletionTimestamp: "2026-01-01T00:00:00Z" },
        spec: { hostNetwork: true },
        status: { podIP: "10.0.0.4" },
      }),
    ).toMatchObject({ hostNetwork: true, deleting: true, podIPs: ["10.0.0.4"] });
  });

  it("reads a node's providerID, InternalIP and readiness", () => {
    const node = leanNode({
      metadata: { name: "n1", uid: "u", labels: { "node.kubernetes.io/instance-type": "m5.large" } },
      spec: { providerID: "aws:///us-east-1a/i-0abc" },
      status: {
        addresses: [
          { type: "Hostname", address: "n1" },
          { type: "InternalIP", address: "10.0.0.4" },
        ],
        conditions: [{ type: "Ready", status: "True" }],
      },
    });
    expect(node).toEqual({
      name: "n1",
      uid: "u",
      labels: { "node.kubernetes.io/instance-type": "m5.large" },
      providerID: "aws:///us-east-1a/i-0abc",
      internalIP: "10.0.0.4",
      ready: true,
    });
  });

  it("keeps a custom resource's identity, generation, finalizers and deletion mark", () => {
    const c = leanCustom({
      metadata: {
        name: "p",
        namespace: "ns",
        uid: "u",
        generation: 4,
        resourceVersion: "77",
        finalizers: ["f"],
        deletionTimestamp: "t",
      },
      spec: { priority: 1 },
      status: { observedGeneration: 3 },
    });
    expect(c).toMatchObject({
      generation: 4,
      resourceVersion: "77",
      finalizers: ["f"],
      deleting: true,
      spec: { priority: 1 },
      status: { observedGeneration: 3 },
    });
  });
});
