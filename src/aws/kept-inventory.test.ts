/* eslint-disable @typescript-eslint/require-await -- the in-memory account is async only to match the port */
import { describe, expect, it } from "vitest";
import type {
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../api/inventory.ts";
import { ownershipTags, TAG_CLUSTER } from "../api/tags.ts";
import type { LeanNode, LeanPod } from "../k8s/lean.ts";
import { KeptInventory, type DescribeReason } from "./kept-inventory.ts";
import type { MirrorApi } from "./port.ts";

/** An account in memory behind the port, counting Describe requests by method. */
class FakeAccount implements MirrorApi {
  instances = new Map<string, Instance>();
  enis = new Map<string, NetworkInterface>();
  targets = new Map<string, MirrorTarget>();
  filters = new Map<string, MirrorFilter>();
  sessions = new Map<string, MirrorSession>();
  describes: string[] = [];
  fail: { code: string } | undefined;
  #seq = 0;

  addNode(n: number, ips: string[] = [], prefixes: string[] = []): LeanNode {
    const instanceId = `i-${n.toString(16).padStart(8, "0")}`;
    this.instances.set(instanceId, { instanceId, instanceType: "m5.large", availabilityZone: "us-east-1a" });
    const eniId = `eni-${n.toString(16).padStart(8, "0")}`;
    this.enis.set(eniId, {
      networkInterfaceId: eniId,
      instanceId,
      deviceIndex: 0,
      interfaceType: "interface",
      availabilityZone: "us-east-1a",
      subnetId: "subnet-1",
      vpcId: "vpc-1",
      description: "",
      primaryIp: `10.0.${n}.1`,
      privateIps: [`10.0.${n}.1`, ...ips],
      ipv4Prefixes: prefixes,
      tags: {},
    });
    return {
      name: `node-${n}`,
      uid: `n${n}`,
      labels: {},
      providerID: `aws:///us-east-1a/${instanceId}`,
      internalIP: `10.0.${n}.1`,
      ready: true,
    };
  }

  async describeInstances(ids: readonly string[]) {
    this.describes.push("DescribeInstances");
    return ids.flatMap((id) => this.instances.get(id) ?? []);
  }
  async describeNetworkInterfaces(ids: readonly string[]) {
    this.describes.push("DescribeNetworkInterfaces");
    // Copies, as an answer over the wire would be.
    return structuredClone([...this.enis.values()].filter((e) => ids.includes(e.instanceId ?? "")));
  }
  async describeSessionsOnInterfaces(ids: readonly string[]) {
    this.describes.push("DescribeTrafficMirrorSessions");
    return [...this.sessions.values()].filter((s) => ids.includes(s.networkInterfaceId));
  }
  async describeOwned() {
    this.describes.push("DescribeOwned");
    const mine = <T extends { tags: Record<string, string> }>(xs: Iterable<T>) =>
      [...xs].filter((x) => x.tags[TAG_CLUSTER] === "c");
    return {
      targets: mine(this.targets.values()),
      filters: mine(this.filters.values()),
      sessions: mine(this.sessions.values()),
    };
  }
  async describeTargets(ids: readonly string[]) {
    this.describes.push("DescribeTrafficMirrorTargets");
    return ids.flatMap((id) => this.targets.get(id) ?? []);
  }
  #check(): void {
    if (!this.fail) return;
    const cause = Object.assign(new Error(this.fail.code), { name: this.fail.code });
    this.fail = undefined;
    throw new Error("writing", { cause });
  }
  async createTarget(t: Parameters<MirrorApi["createTarget"]>[0]) {
    this.#check();
    const x: MirrorTarget = {
      trafficMirrorTargetId: `tmt-${++this.#seq}`,
      type: "network-load-balancer",
      networkLoadBalancerArn: t.networkLoadBalancerArn,
      tags: ownershipTags("c", t.key, t.owners),
    };
    this.targets.set(x.trafficMirrorTargetId, x);
    return x;
  }
  async deleteTarget(id: string) {
    this.#check();
    this.targets.delete(id);
  }
  async createFilter(f: Parameters<MirrorApi["createFilter"]>[0]) {
    this.#check();
    const rules = f.rules.map((r) => ({ ...r, trafficMirrorFilterRuleId: `tmfr-${++this.#seq}` }));
    const x: MirrorFilter = {
      trafficMirrorFilterId: `tmf-${++this.#seq}`,
      ingressRules: rules.filter((r) => r.direction === "ingress"),
      egressRules: rules.filter((r) => r.direction === "egress"),
      networkServices: f.networkServices,
      tags: ownershipTags("c", f.key),
    };
    this.filters.set(x.trafficMirrorFilterId, x);
    return x;
  }
  async editFilter(e: Parameters<MirrorApi["editFilter"]>[0]) {
    this.#check();
    const f = this.filters.get(e.filterId)!;
    let rules = [...f.ingressRules, ...f.egressRules];
    const made = [];
    for (const x of e.rules) {
      if (x.op === "delete") rules = rules.filter((r) => r.trafficMirrorFilterRuleId !== x.ruleId);
      else if (x.op === "modify")
        rules = rules.map((r) =>
          r.trafficMirrorFilterRuleId === x.ruleId ? { ...x.rule, trafficMirrorFilterRuleId: x.ruleId } : r,
        );
      else made.push({ ...x.rule, trafficMirrorFilterRuleId: `tmfr-${++this.#seq}` });
    }
    rules.push(...made);
    this.filters.set(e.filterId, {
      ...f,
      ingressRules: rules.filter((r) => r.direction === "ingress"),
      egressRules: rules.filter((r) => r.direction === "egress"),
      networkServices: [
        ...f.networkServices.filter((x) => !e.removeNetworkServices.includes(x)),
        ...e.addNetworkServices,
      ],
    });
    return made;
  }
  async deleteFilter(id: string) {
    this.#check();
    this.filters.delete(id);
  }
  async createSession(s: Parameters<MirrorApi["createSession"]>[0]) {
    this.#check();
    const x: MirrorSession = {
      trafficMirrorSessionId: `tms-${++this.#seq}`,
      networkInterfaceId: s.networkInterfaceId,
      trafficMirrorTargetId: s.trafficMirrorTargetId,
      trafficMirrorFilterId: s.trafficMirrorFilterId,
      sessionNumber: s.sessionNumber,
      virtualNetworkId: s.virtualNetworkId,
      tags: ownershipTags("c", s.key, s.owners),
    };
    this.sessions.set(x.trafficMirrorSessionId, x);
    return x;
  }
  async modifySession(id: string, c: Parameters<MirrorApi["modifySession"]>[1]) {
    this.#check();
    const s = this.sessions.get(id)!;
    this.sessions.set(id, { ...s, ...(c.sessionNumber ? { sessionNumber: c.sessionNumber } : {}) });
  }
  async deleteSession(id: string) {
    this.#check();
    this.sessions.delete(id);
  }
}

const pod = (name: string, node: LeanNode, ip: string): LeanPod => ({
  namespace: "ns",
  name,
  uid: name,
  labels: {},
  nodeName: node.name,
  podIPs: [ip],
  hostNetwork: false,
  phase: "Running",
  deleting: false,
});

function setup(o: { resyncMs?: number; graceMs?: number } = {}) {
  const account = new FakeAccount();
  let now = 0;
  const reasons: DescribeReason[] = [];
  const kept = new KeptInventory({
    api: account,
    cluster: "c",
    resyncMs: o.resyncMs ?? 300_000,
    graceMs: o.graceMs ?? 30_000,
    now: () => now,
    observe: (r) => reasons.push(r),
  });
  return {
    account,
    kept,
    reasons,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const sessionInput = (eni: string, filterId: string) => ({
  key: `session-${eni}-aaaaaaaaaaaa`,
  owners: ["ns/p"],
  networkInterfaceId: eni,
  trafficMirrorTargetId: "tmt-x",
  trafficMirrorFilterId: filterId,
  sessionNumber: 1,
  virtualNetworkId: 7,
  description: "",
});

describe("KeptInventory", () => {
  it("reads everything once, then nothing while nothing changes, and returns the same object", async () => {
    const { account, kept, reasons } = setup();
    const nodes = [account.addNode(1), account.addNode(2)];
    const first = await kept.read({ nodes, pods: [] });
    expect(first.instances).toHaveLength(2);
    expect(first.networkInterfaces).toHaveLength(2);
    const calls = account.describes.length;
    expect(reasons.every((r) => r === "resync")).toBe(true);
    const second = await kept.read({ nodes, pods: [] });
    expect(account.describes).toHaveLength(calls);
    expect(second).toBe(first);
  });

  it("takes its own writes from EC2's answers: new records are new objects, the rest keep theirs", async () => {
    const { account, kept } = setup();
    const nodes = [account.addNode(1), account.addNode(2)];
    const before = await kept.read({ nodes, pods: [] });
    const calls = account.describes.length;
    const f = await kept.api.createFilter({
      key: "filter-eni-00000001-aaaaaaaaaaaa",
      rules: [
        {
          direction: "ingress",
          ruleNumber: 1,
          action: "accept",
          sourceCidrBlock: "0.0.0.0/0",
          destinationCidrBlock: "10.0.1.5/32",
        },
      ],
      networkServices: [],
      description: "",
    });
    const s = await kept.api.createSession(sessionInput("eni-00000001", f.trafficMirrorFilterId));
    const after = await kept.read({ nodes, pods: [] });
    expect(account.describes).toHaveLength(calls);
    expect(after).not.toBe(before);
    expect(after.sessions.map((x) => x.trafficMirrorSessionId)).toEqual([s.trafficMirrorSessionId]);
    expect(after.filters[0]!.ingressRules[0]!.trafficMirrorFilterRuleId).toMatch(/^tmfr-/);
    expect(after.networkInterfaces[0]).toBe(before.networkInterfaces[0]);
    expect(after.instances[1]).toBe(before.instances[1]);

    // A modify makes a new session object; a filter edit applies its deletes, modifies and creates.
    const ruleId = after.filters[0]!.ingressRules[0]!.trafficMirrorFilterRuleId!;
    await kept.api.modifySession(s.trafficMirrorSessionId, { sessionNumber: 2 });
    await kept.api.editFilter({
      filterId: f.trafficMirrorFilterId,
      key: "filter-eni-00000001-bbbbbbbbbbbb",
      rules: [
        { op: "delete", ruleId, direction: "ingress", ruleNumber: 1 },
        {
          op: "create",
          rule: {
            direction: "egress",
            ruleNumber: 1,
            action: "accept",
            sourceCidrBlock: "10.0.1.6/32",
            destinationCidrBlock: "0.0.0.0/0",
          },
        },
      ],
      addNetworkServices: ["amazon-dns"],
      removeNetworkServices: [],
      state: "x",
    });
    const edited = await kept.read({ nodes, pods: [] });
    expect(edited.sessions[0]).not.toBe(after.sessions[0]);
    expect(edited.sessions[0]!.sessionNumber).toBe(2);
    expect(edited.filters[0]!.ingressRules).toEqual([]);
    expect(edited.filters[0]!.egressRules.map((r) => r.sourceCidrBlock)).toEqual(["10.0.1.6/32"]);
    expect(edited.filters[0]!.networkServices).toEqual(["amazon-dns"]);
    // What the kept inventory holds is what a full read finds, and the full read keeps identity.
    expect(edited.filters).toEqual([...account.filters.values()]);
    const fresh = new KeptInventory({ api: account, cluster: "c", resyncMs: 1 });
    expect(await fresh.read({ nodes, pods: [] })).toEqual(edited);
    expect(account.describes).toHaveLength(calls + 5);
  });

  it("reads a new node's instance and ENIs, and forgets a node that is gone", async () => {
    const { account, kept, reasons } = setup();
    const n1 = account.addNode(1);
    await kept.read({ nodes: [n1], pods: [] });
    account.describes = [];
    reasons.length = 0;
    const n2 = account.addNode(2);
    const inv = await kept.read({ nodes: [n1, n2], pods: [] });
    expect(account.describes).toEqual([
      "DescribeInstances",
      "DescribeNetworkInterfaces",
      "DescribeTrafficMirrorSessions",
    ]);
    expect(reasons).toEqual(["targeted", "targeted", "targeted"]);
    expect(inv.networkInterfaces.map((e) => e.networkInterfaceId)).toEqual(["eni-00000001", "eni-00000002"]);
    account.describes = [];
    const gone = await kept.read({ nodes: [n2], pods: [] });
    expect(account.describes).toEqual([]);
    expect(gone.instances.map((i) => i.instanceId)).toEqual(["i-00000002"]);
    expect(gone.networkInterfaces.map((e) => e.networkInterfaceId)).toEqual(["eni-00000002"]);
  });

  it("reads everything after a targeted read failed half way", async () => {
    const { account, kept, reasons } = setup();
    const n1 = account.addNode(1);
    await kept.read({ nodes: [n1], pods: [] });
    const n2 = account.addNode(2);
    const describe = account.describeNetworkInterfaces.bind(account);
    account.describeNetworkInterfaces = () => Promise.reject(new Error("503"));
    await expect(kept.read({ nodes: [n1, n2], pods: [] })).rejects.toThrow("503");
    account.describeNetworkInterfaces = describe;
    reasons.length = 0;
    const inv = await kept.read({ nodes: [n1, n2], pods: [] });
    expect(new Set(reasons)).toEqual(new Set(["invalidated"]));
    expect(inv.networkInterfaces).toHaveLength(2);
  });

  it("reads a node's ENIs again, once, for pods whose IPs it does not know", async () => {
    const { account, kept } = setup();
    const n1 = account.addNode(1, ["10.0.1.10"], ["10.0.1.32/28"]);
    const n2 = account.addNode(2);
    await kept.read({ nodes: [n1, n2], pods: [] });
    account.describes = [];
    // On known addresses (a secondary IP, inside a prefix): nothing to read.
    await kept.read({
      nodes: [n1, n2],
      pods: [pod("a", n1, "10.0.1.10"), pod("b", n1, "10.0.1.40")],
    });
    expect(account.describes).toEqual([]);
    // Two new pods on addresses the CNI just assigned: one read of that node's ENIs.
    account.enis.get("eni-00000001")!.privateIps.push("10.0.1.11", "10.0.1.12");
    const pods = [pod("c", n1, "10.0.1.11"), pod("d", n1, "10.0.1.12"), pod("e", n1, "10.0.1.99")];
    const inv = await kept.read({ nodes: [n1, n2], pods });
    expect(account.describes).toEqual(["DescribeNetworkInterfaces"]);
    expect(inv.networkInterfaces[0]!.privateIps).toContain("10.0.1.12");
    // An address another node's ENI held before: it is that node's no longer.
    account.enis.get("eni-00000002")!.privateIps.push("10.0.2.20");
    const moved = await kept.read({ nodes: [n1, n2], pods: [pod("g", n2, "10.0.2.20")] });
    account.enis.get("eni-00000002")!.privateIps.pop();
    account.enis.get("eni-00000001")!.privateIps.push("10.0.2.20");
    const back = await kept.read({ nodes: [n1, n2], pods: [pod("h", n1, "10.0.2.20")] });
    expect(moved.networkInterfaces[1]!.privateIps).toContain("10.0.2.20");
    expect(back.networkInterfaces[0]!.privateIps).toContain("10.0.2.20");
    expect(back.networkInterfaces[1]!.privateIps).not.toContain("10.0.2.20");
    // An address still on none of its ENIs is not asked about again before a resync.
    account.describes = [];
    await kept.read({ nodes: [n1, n2], pods: [...pods, pod("f", n1, "10.0.1.99")] });
    expect(account.describes).toEqual([]);
  });

  it("on an IPv6 cluster, knows a pod by its node's /80 or IPv6 addresses, and reads the ENIs for one outside them", async () => {
    const { account, kept } = setup();
    const n1 = account.addNode(1);
    const n2 = account.addNode(2);
    const eni1 = account.enis.get("eni-00000001")!;
    eni1.ipv6Addresses = ["2600:1f14:abc:de00::4"];
    eni1.ipv6Prefixes = ["2600:1f14:abc:de00:3::/80"];
    account.enis.get("eni-00000002")!.ipv6Prefixes = ["2600:1f14:abc:de00:5::/80"];
    await kept.read({ nodes: [n1, n2], pods: [] });
    account.describes = [];
    // In the /80 (written another way than EC2 writes it), and the node's own address: nothing to read.
    await kept.read({
      nodes: [n1, n2],
      pods: [pod("a", n1, "2600:1f14:abc:de00:3:0:0:9"), pod("b", n1, "2600:1f14:abc:de00::4")],
    });
    expect(account.describes).toEqual([]);
    // The CNI gave node 1 a second /80 (and node 2's went away): one read of node 1's ENIs, which
    // also releases the /80 from node 2's ENI in the kept copy.
    eni1.ipv6Prefixes = [...eni1.ipv6Prefixes, "2600:1f14:abc:de00:5::/80"];
    account.enis.get("eni-00000002")!.ipv6Prefixes = [];
    const inv = await kept.read({ nodes: [n1, n2], pods: [pod("c", n1, "2600:1f14:abc:de00:5::1")] });
    expect(account.describes).toEqual(["DescribeNetworkInterfaces"]);
    expect(inv.networkInterfaces[0]!.ipv6Prefixes).toContain("2600:1f14:abc:de00:5::/80");
    expect(inv.networkInterfaces[1]!.ipv6Prefixes).toEqual([]);
  });

  it("reads everything again after a write fails other than by throttling, and on the resync period", async () => {
    const { account, kept, reasons, advance } = setup({ resyncMs: 60_000 });
    const nodes = [account.addNode(1)];
    await kept.read({ nodes, pods: [] });
    account.fail = { code: "RequestLimitExceeded" };
    await expect(kept.api.deleteSession("tms-1")).rejects.toThrow();
    expect(kept.invalidated).toBeUndefined();
    account.fail = { code: "TrafficMirrorSessionsPerInterfaceLimitExceeded" };
    await expect(kept.api.createSession(sessionInput("eni-00000001", "tmf-1"))).rejects.toThrow();
    expect(kept.invalidated).toContain("TrafficMirrorSessionsPerInterfaceLimitExceeded");
    reasons.length = 0;
    await kept.read({ nodes, pods: [] });
    expect(new Set(reasons)).toEqual(new Set(["invalidated"]));
    reasons.length = 0;
    advance(59_000);
    await kept.read({ nodes, pods: [] });
    expect(reasons).toEqual([]);
    advance(1_000);
    await kept.read({ nodes, pods: [] });
    expect(new Set(reasons)).toEqual(new Set(["resync"]));
    // Sessions of others on the cluster's ENIs appear at a resync.
    account.sessions.set("tms-other", {
      ...(await account.createSession(sessionInput("eni-00000001", "tmf-o"))),
      trafficMirrorSessionId: "tms-other",
      tags: {},
    });
    const inv = await kept.read({ nodes, pods: [], resync: true });
    expect(inv.sessions.map((s) => s.trafficMirrorSessionId)).toContain("tms-other");
  });

  it("keeps its recent writes over a full read that does not show them yet, then reads again", async () => {
    const { account, kept, advance } = setup({ resyncMs: 300_000, graceMs: 10_000 });
    const nodes = [account.addNode(1)];
    await kept.read({ nodes, pods: [] });
    const s = await kept.api.createSession(sessionInput("eni-00000001", "tmf-1"));
    // EC2 does not show it yet (eventual consistency) when an error makes the next read a full one.
    account.sessions.delete(s.trafficMirrorSessionId);
    kept.invalidate("test");
    const inv = await kept.read({ nodes, pods: [] });
    expect(inv.sessions.map((x) => x.trafficMirrorSessionId)).toEqual([s.trafficMirrorSessionId]);
    // Once the grace has passed, a full read says what is there.
    account.describes = [];
    advance(10_000);
    const later = await kept.read({ nodes, pods: [] });
    expect(account.describes).toContain("DescribeOwned");
    expect(later.sessions).toEqual([]);
  });
});
