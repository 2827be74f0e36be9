// Status, finalizer, Event and ConfigMap writes against the real apiserver.
import { ApiextensionsV1Api, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeAll, describe, expect, inject, it } from "vitest";
import {
  EventRecorder,
  objectPath,
  setFinalizer,
  writeConfigMapKey,
  writeStatus,
  type ObjectRef,
} from "../../src/k8s/objects.ts";
import { KubeRest } from "../../src/k8s/rest.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const ns = "objects-test";
const group = "objects.tmo.test";
const ref: ObjectRef = { group, version: "v1", plural: "gadgets", namespace: ns, name: "g1", kind: "Gadget" };

interface Gadget {
  metadata: { resourceVersion: string; finalizers?: string[]; uid: string; deletionTimestamp?: string };
  status?: Record<string, unknown>;
}

describe("object writes", () => {
  beforeAll(async () => {
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    // Raw JSON: the typed client drops x-kubernetes-preserve-unknown-fields.
    await rest.request({
      method: "POST",
      path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
      what: "creating CRD",
      body: {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: `gadgets.${group}` },
        spec: {
          group,
          scope: "Namespaced",
          names: { plural: "gadgets", singular: "gadget", kind: "Gadget" },
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              subresources: { status: {} },
              schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
            },
          ],
        },
      },
    });
    for (let i = 0; i < 100; i++) {
      const crd = await ext.readCustomResourceDefinition({ name: `gadgets.${group}` });
      if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      await sleep(100);
    }
    await rest.request({
      method: "POST",
      path: `/apis/${group}/v1/namespaces/${ns}/gadgets`,
      body: { apiVersion: `${group}/v1`, kind: "Gadget", metadata: { name: "g1" }, spec: { size: 1 } },
      what: "creating gadget",
    });
  });

  it("writes status only when it changed, through the status subresource", async () => {
    const desired = { observedGeneration: 1, conditions: [{ type: "Ready", status: "True" }] };
    expect(await writeStatus({ rest, ref, current: undefined, desired })).toBe(true);
    const g = await rest.get<Gadget & { spec: unknown }>(objectPath(ref), "reading");
    expect(g.status).toEqual(desired);
    expect(g.spec).toEqual({ size: 1 });
    const rvBefore = g.metadata.resourceVersion;
    expect(await writeStatus({ rest, ref, current: g.status, desired: { ...desired } })).toBe(false);
    const again = await rest.get<Gadget>(objectPath(ref), "reading");
    expect(again.metadata.resourceVersion).toBe(rvBefore);
  });

  it("adds and removes a finalizer, and refuses to act on a stale view", async () => {
    const fin = "trafficmirror.twtech.io/cleanup";
    const g = await rest.get<Gadget>(objectPath(ref), "reading");
    const base = { rest, ref, finalizer: fin };
    expect(
      await setFinalizer({
        ...base,
        finalizers: [],
        resourceVersion: g.metadata.resourceVersion,
        present: true,
      }),
    ).toBe(true);
    const g2 = await rest.get<Gadget>(objectPath(ref), "reading");
    expect(g2.metadata.finalizers).toEqual([fin]);
    // Computed from the old resourceVersion: a conflict, so nothing is written.
    expect(
      await setFinalizer({
        ...base,
        finalizers: [fin],
        resourceVersion: g.metadata.resourceVersion,
        present: false,
      }),
    ).toBe(false);
    expect((await rest.get<Gadget>(objectPath(ref), "reading")).metadata.finalizers).toEqual([fin]);
    expect(
      await setFinalizer({
        ...base,
        finalizers: [fin],
        resourceVersion: g2.metadata.resourceVersion,
        present: false,
      }),
    ).toBe(true);
    expect((await rest.get<Gadget>(objectPath(ref), "reading")).metadata.finalizers).toBeUndefined();
  });

  it("records an Event once per reason and note within the dedupe window", async () => {
    const g = await rest.get<Gadget>(objectPath(ref), "reading");
    const rec = new EventRecorder({
      rest,
      log: pino({ level: "silent" }),
      controller: "tmo/test",
      instance: "t-1",
    });
    const e = {
      ref: { ...ref, uid: g.metadata.uid },
      type: "Warning" as const,
      reason: "EniFull",
      note: "3 sessions on eni-1",
      action: "Plan",
    };
    await rec.record(e);
    await rec.record(e);
    await rec.record({ ...e, note: "3 sessions on eni-2" });
    const list = await rest.get<{ items: { reason: string; note: string; regarding: { name: string } }[] }>(
      `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
      "listing events",
    );
    const notes = list.items
      .filter((i) => i.regarding.name === "g1")
      .map((i) => i.note)
      .sort();
    expect(notes).toEqual(["3 sessions on eni-1", "3 sessions on eni-2"]);
  });

  it("creates a ConfigMap key, then updates it only when the value changes", async () => {
    const args = { rest, namespace: ns, name: "traffic-mirror-vni-map", key: "vni-map.json" };
    expect(await writeConfigMapKey({ ...args, value: '{"v":1}' })).toBe(true);
    expect(await writeConfigMapKey({ ...args, value: '{"v":1}' })).toBe(false);
    expect(await writeConfigMapKey({ ...args, value: '{"v":2}' })).toBe(true);
    const cm = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: args.name, namespace: ns });
    expect(cm.data?.["vni-map.json"]).toBe('{"v":2}');
  });

  it("writes a binary key and removes the key it replaces in the same write, then only on change", async () => {
    const name = "binary-key";
    await writeConfigMapKey({ rest, namespace: ns, name, key: "doc.json", value: '{"v":1}' });
    const args = { rest, namespace: ns, name, key: "doc.json.gz", binary: true, replaces: ["doc.json"] };
    const one = Buffer.from("one").toString("base64");
    expect(await writeConfigMapKey({ ...args, value: one })).toBe(true);
    const core = kc.makeApiClient(CoreV1Api);
    const cm = await core.readNamespacedConfigMap({ name, namespace: ns });
    expect(cm.data?.["doc.json"]).toBeUndefined();
    expect(cm.binaryData?.["doc.json.gz"]).toBe(one);
    expect(await writeConfigMapKey({ ...args, value: one })).toBe(false);
    const rv = (await core.readNamespacedConfigMap({ name, namespace: ns })).metadata?.resourceVersion;
    expect(rv).toBe(cm.metadata?.resourceVersion);
    // Made from nothing, the binary key is all there is.
    expect(await writeConfigMapKey({ ...args, name: "binary-new", value: one })).toBe(true);
    const made = await core.readNamespacedConfigMap({ name: "binary-new", namespace: ns });
    expect([made.data, made.binaryData]).toEqual([undefined, { "doc.json.gz": one }]);
  });
});
