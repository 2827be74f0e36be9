// The generated CRDs on the real apiserver: the samples are accepted, and each invalid object is
// refused for the right reason, with a message a person understands.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { REPO_ROOT } from "../../src/api/crd-gen.ts";
import { API_VERSION } from "../../src/api/resources.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { installCrds } from "../harness/crds.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const ns = "crd-validation";

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string } };

function pathOf(o: Obj): string {
  const plural = o.kind === "TrafficMirrorPolicy" ? "trafficmirrorpolicies" : "trafficmirrortargets";
  const nsPart = o.kind === "TrafficMirrorPolicy" ? `/namespaces/${o.metadata.namespace ?? ns}` : "";
  return `/apis/${API_VERSION}${nsPart}/${plural}`;
}

async function create(o: Obj): Promise<void> {
  await rest.request({
    method: "POST",
    path: pathOf(o),
    body: o,
    what: `creating ${o.kind} ${o.metadata.name}`,
  });
}

const policy = (spec: Record<string, unknown>, name = "p"): Obj => ({
  apiVersion: API_VERSION,
  kind: "TrafficMirrorPolicy",
  metadata: { name, namespace: ns },
  spec: { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "t" }, ...spec },
});
const target = (spec: Record<string, unknown>, name = "t"): Obj => ({
  apiVersion: API_VERSION,
  kind: "TrafficMirrorTarget",
  metadata: { name },
  spec: { collector: { nodeSelector: { role: "collector" } }, ...spec },
});
const rule = (r: Record<string, unknown>) => ({ filter: { rules: [r] } });
const ONE_DEST = /exactly one destination must be set/;

/** [description, object, expected message] — each is invalid for exactly the stated reason. */
const invalid: [string, Obj, RegExp][] = [
  ["policy with both selectors", policy({ nodeSelector: {} }), /exactly one of podSelector or nodeSelector/],
  [
    "policy with no selector",
    policy({ podSelector: undefined }),
    /exactly one of podSelector or nodeSelector/,
  ],
  ["policy without targetRef", policy({ targetRef: undefined }), /targetRef: Required value/],
  ["targetRef without name", policy({ targetRef: {} }), /targetRef.name: Required value/],
  [
    "targetRef name with capitals",
    policy({ targetRef: { name: "Collector" } }),
    /targetRef.name in body should match/,
  ],
  [
    "packetLength 0",
    policy({ packetLength: 0 }),
    /packetLength in body should be greater than or equal to 1/,
  ],
  [
    "packetLength 8501",
    policy({ packetLength: 8501 }),
    /packetLength in body should be less than or equal to 8500/,
  ],
  [
    "packetLength not a number",
    policy({ packetLength: "big" }),
    /packetLength in body must be of type integer/,
  ],
  ["priority -1", policy({ priority: -1 }), /priority in body should be greater than or equal to 0/],
  ["priority 1001", policy({ priority: 1001 }), /priority in body should be less than or equal to 1000/],
  ["priority fractional", policy({ priority: 1.5 }), /priority in body must be of type integer/],
  ["suspend not boolean", policy({ suspend: "yes" }), /suspend in body must be of type boolean/],
  ["unknown direction", policy(rule({ direction: "sideways" })), /direction: Unsupported value: "sideways"/],
  ["unknown action", policy(rule({ action: "drop" })), /action: Unsupported value: "drop"/],
  ["unknown protocol", policy(rule({ protocol: "SCTP" })), /protocol: Unsupported value: "SCTP"/],
  [
    "ports with ICMP",
    policy(rule({ protocol: "ICMP", localPorts: { from: 1, to: 2 } })),
    /ports can only be given for TCP or UDP/,
  ],
  [
    "ports with All",
    policy(rule({ remotePorts: { from: 1, to: 2 } })),
    /ports can only be given for TCP or UDP/,
  ],
  [
    "port range reversed",
    policy(rule({ protocol: "TCP", localPorts: { from: 90, to: 80 } })),
    /from must not be greater than to/,
  ],
  [
    "port above 65535",
    policy(rule({ protocol: "UDP", remotePorts: { from: 1, to: 70000 } })),
    /to in body should be less than or equal to 65535/,
  ],
  [
    "negative port",
    policy(rule({ protocol: "TCP", localPorts: { from: -1, to: 5 } })),
    /from in body should be greater than or equal to 0/,
  ],
  ["CIDR prefix 33", policy(rule({ remoteCidr: "10.0.0.0/33" })), /must be a CIDR block/],
  ["CIDR without prefix", policy(rule({ remoteCidr: "10.0.0.1" })), /must be a CIDR block/],
  ["CIDR garbage", policy(rule({ remoteCidr: "ten-dot-zero" })), /must be a CIDR block/],
  [
    "eleven filter rules",
    policy({ filter: { rules: Array.from({ length: 11 }, () => ({})) } }),
    /rules: Too many: 11: must have at most 10 items/,
  ],
  [
    "mirrorDns not boolean",
    policy({ filter: { mirrorDns: 1 } }),
    /mirrorDns in body must be of type boolean/,
  ],
  [
    "In without values",
    policy({ podSelector: { matchExpressions: [{ key: "app", operator: "In" }] } }),
    /In and NotIn need values/,
  ],
  [
    "Exists with values",
    policy({ podSelector: { matchExpressions: [{ key: "app", operator: "Exists", values: ["x"] }] } }),
    /Exists and DoesNotExist take none/,
  ],
  [
    "unknown selector operator",
    policy({ podSelector: { matchExpressions: [{ key: "app", operator: "Like", values: ["x"] }] } }),
    /operator: Unsupported value: "Like"/,
  ],
  [
    "policy without spec",
    { apiVersion: API_VERSION, kind: "TrafficMirrorPolicy", metadata: { name: "nospec", namespace: ns } },
    /spec: Required value/,
  ],
  ["target with no destination", target({ collector: undefined }), ONE_DEST],
  ["target with two destinations", target({ networkInterfaceId: "eni-0123456789abcdef0" }), ONE_DEST],
  [
    "target with malformed NLB ARN",
    target({ collector: undefined, networkLoadBalancerArn: "arn:aws:ec2:::nope" }),
    /networkLoadBalancerArn in body should match/,
  ],
  [
    "target with malformed GWLB endpoint",
    target({ collector: undefined, gatewayLoadBalancerEndpointId: "vpc-123" }),
    /gatewayLoadBalancerEndpointId in body should match/,
  ],
  [
    "target with malformed ENI id",
    target({ collector: undefined, networkInterfaceId: "eni-XYZ" }),
    /networkInterfaceId in body should match/,
  ],
  [
    "target with malformed target id",
    target({ collector: undefined, trafficMirrorTargetId: "tmt-" }),
    /trafficMirrorTargetId in body should match/,
  ],
  ["collector without nodeSelector", target({ collector: {} }), /collector.nodeSelector: Required value/],
  [
    "Selector without selector",
    target({ allowedNamespaces: { from: "Selector" } }),
    /from: Selector needs a selector/,
  ],
  ["List without names", target({ allowedNamespaces: { from: "List" } }), /from: List needs names/],
  [
    "allowedNamespaces.from unknown",
    target({ allowedNamespaces: { from: "Some" } }),
    /from: Unsupported value: "Some"/,
  ],
  [
    "namespace name invalid",
    target({ allowedNamespaces: { from: "List", names: ["Not_A_Namespace"] } }),
    /names\[0\] in body should match/,
  ],
  [
    "allowNodeSources not boolean",
    target({ allowNodeSources: "true" }),
    /allowNodeSources in body must be of type boolean/,
  ],
];

describe("CRD validation at the apiserver", () => {
  beforeAll(async () => {
    await rest.request({
      method: "POST",
      path: "/api/v1/namespaces",
      body: { metadata: { name: ns } },
      what: "creating namespace",
    });
    await installCrds(rest);
  });

  it("accepts every sample in config/samples", async () => {
    const dir = join(REPO_ROOT, "config", "samples");
    const objs = readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS() as Obj));
    expect(objs.length).toBeGreaterThanOrEqual(4);
    for (const o of objs) {
      if (o.metadata.namespace) o.metadata.namespace = ns;
      o.metadata.name = `sample-${o.metadata.name}`;
      await create(o);
    }
  });

  it("applies defaults the operator relies on", async () => {
    await create(policy({}, "defaults"));
    const p = await rest.get<{ spec: { priority: number; suspend: boolean } }>(
      `${pathOf(policy({}))}/defaults`,
      "reading",
    );
    expect(p.spec).toMatchObject({ priority: 100, suspend: false });
  });

  it(`refuses ${invalid.length} invalid objects, each for its reason`, async () => {
    expect(invalid.length).toBeGreaterThanOrEqual(30);
    const wrong: string[] = [];
    for (const [i, [what, obj, expected]] of invalid.entries()) {
      obj.metadata.name = `invalid-${i}`;
      try {
        await create(obj);
        wrong.push(`${what}: was accepted`);
      } catch (err) {
        const msg = (err as Error).message;
        if (!/\b422\b/.test(msg) || !expected.test(msg)) wrong.push(`${what}: ${msg.slice(0, 300)}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
