// Selection at the collector against AWS's own semantics: for a single pod, the collector keeps a
// packet exactly when the filter the planner builds for that pod (evaluated the way the emulator
// evaluates AWS filters: rule numbers, first match, direction, amazon-dns) accepts it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MirrorFilter } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { buildFilterRules, type DesiredRule } from "../plan/filters.ts";
import { formatIp, parseIp } from "../plan/ipv4.ts";
import { parseIp6 } from "../plan/ipv6.ts";
import { mirrorFilterAccepts } from "../../test/ec2-sim/dataplane.ts";
import { buildFrame, type SyntheticPacket } from "../../test/ec2-sim/packets.ts";
import { compileSelection, newInnerHeader, readInnerHeader, selects, type InnerHeader } from "./selection.ts";

const POD = "10.0.1.20";
const MACS = { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" };

function header(p: SyntheticPacket, cut?: number): InnerHeader | undefined {
  const f = buildFrame(p, MACS);
  const h = newInnerHeader();
  return readInnerHeader(f, 0, cut ?? f.length, h) ? h : undefined;
}

function podSelection(rules: PolicyFilterRule[], mirrorDns = false) {
  return compileSelection({
    policy: "shop/web",
    ips: [POD],
    whole: false,
    localAddresses: [],
    rules,
    mirrorDns,
  });
}

const tcp80: PolicyFilterRule = {
  direction: "both",
  action: "accept",
  protocol: "TCP",
  localPorts: { from: 80, to: 80 },
};

describe("selects", () => {
  it("keeps the pod's traffic in both directions and nobody else's", () => {
    const s = podSelection([]);
    expect(selects(s, header({ src: "10.9.0.1", dst: POD, srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(selects(s, header({ src: POD, dst: "10.9.0.1", srcPort: 80, dstPort: 5 })!)).toBe(true);
    expect(selects(s, header({ src: "10.9.0.1", dst: "10.0.1.21", srcPort: 5, dstPort: 80 })!)).toBe(false);
  });

  it("applies the rules from the pod's side: local and remote ports, direction, first match", () => {
    const s = podSelection([
      { direction: "both", action: "reject", protocol: "TCP", remoteCidr: "10.9.9.0/24" },
      tcp80,
    ]);
    expect(selects(s, header({ src: "10.9.0.1", dst: POD, srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(selects(s, header({ src: POD, dst: "10.9.0.1", srcPort: 80, dstPort: 5 })!)).toBe(true);
    // Port 80 on the remote side is not the pod's port 80.
    expect(selects(s, header({ src: POD, dst: "10.9.0.1", srcPort: 5, dstPort: 80 })!)).toBe(false);
    expect(selects(s, header({ src: "10.9.9.7", dst: POD, srcPort: 5, dstPort: 80 })!)).toBe(false);
    const ingressOnly = podSelection([{ ...tcp80, direction: "ingress" }]);
    expect(selects(ingressOnly, header({ src: POD, dst: "10.9.0.1", srcPort: 80, dstPort: 5 })!)).toBe(false);
  });

  it("keeps DNS to the Amazon DNS server only for a policy that mirrors DNS", () => {
    const q = header({ src: POD, dst: "169.254.169.253", protocol: 17, srcPort: 40000, dstPort: 53 })!;
    expect(selects(podSelection([]), q)).toBe(false);
    expect(selects(podSelection([], true), q)).toBe(true);
  });

  it("selects the whole ENI by its addresses and prefixes, with the direction they give", () => {
    const s = compileSelection({
      policy: "ops/node",
      ips: [],
      whole: true,
      localAddresses: ["10.0.1.10", "10.0.1.32/28"],
      rules: [{ ...tcp80, direction: "ingress" }],
      mirrorDns: false,
    });
    expect(selects(s, header({ src: "10.9.0.1", dst: "10.0.1.40", srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(selects(s, header({ src: "10.9.0.1", dst: "10.0.1.10", srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(selects(s, header({ src: "10.9.0.1", dst: "10.0.1.48", srcPort: 5, dstPort: 80 })!)).toBe(false);
  });

  it("reads the addresses behind an 802.1Q tag", () => {
    const f = buildFrame({ src: "10.9.0.1", dst: POD, srcPort: 5, dstPort: 80 }, MACS);
    const tagged = Buffer.concat([f.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x64]), f.subarray(12)]);
    const h = newInnerHeader();
    expect(readInnerHeader(tagged, 0, tagged.length, h)).toBe(true);
    expect([formatIp(h.src), formatIp(h.dst), h.dstPort]).toEqual(["10.9.0.1", POD, 80]);
  });

  it("reads no addresses from a frame cut before them, and no ports from one cut before those", () => {
    const p: SyntheticPacket = { src: "10.9.0.1", dst: POD, srcPort: 5, dstPort: 80 };
    expect(header(p, 14 + 19)).toBeUndefined();
    const noPorts = header(p, 14 + 20 + 3)!;
    expect(noPorts.hasPorts).toBe(false);
    expect(selects(podSelection([]), noPorts)).toBe(true);
    expect(selects(podSelection([tcp80]), noPorts)).toBe(false);
  });
});

const port = fc.integer({ min: 0, max: 65535 });
const portRange = fc
  .tuple(fc.constantFrom(0, 53, 80, 443, 8080, 40000, 65535), fc.integer({ min: 0, max: 2000 }))
  .map(([from, span]) => ({ from, to: Math.min(65535, from + span) }));
/** Random policy rules of these protocols and remote CIDRs. */
function rulesArb(
  protocols: PolicyFilterRule["protocol"][],
  cidrs: string[],
): fc.Arbitrary<PolicyFilterRule> {
  return fc
    .record({
      direction: fc.constantFrom("ingress", "egress", "both"),
      action: fc.constantFrom("accept", "reject"),
      protocol: fc.constantFrom(...protocols),
      remoteCidr: fc.option(fc.constantFrom(...cidrs), { nil: undefined }),
      localPorts: fc.option(portRange, { nil: undefined }),
      remotePorts: fc.option(portRange, { nil: undefined }),
    })
    .map((r) => {
      const ports = r.protocol === "TCP" || r.protocol === "UDP";
      const out: PolicyFilterRule = { direction: r.direction, action: r.action, protocol: r.protocol };
      if (r.remoteCidr) out.remoteCidr = r.remoteCidr;
      if (ports && r.localPorts) out.localPorts = r.localPorts;
      if (ports && r.remotePorts) out.remotePorts = r.remotePorts;
      return out;
    });
}
const ruleArb = rulesArb(
  ["All", "TCP", "UDP", "ICMP"],
  ["10.9.0.0/16", "10.9.0.1/32", "0.0.0.0/0", "169.254.0.0/16"],
);
/** Random packets between `pod` and these remotes (ICMP and ICMPv6 without ports), with their direction. */
function packetsArb(pod: string, remotes: string[], protocols: number[]) {
  return fc
    .record({
      inbound: fc.boolean(),
      remote: fc.constantFrom(...remotes),
      protocol: fc.constantFrom(...protocols),
      localPort: fc.oneof(port, fc.constantFrom(53, 80, 443)),
      remotePort: fc.oneof(port, fc.constantFrom(53, 80, 443)),
    })
    .map((x) => {
      const p: SyntheticPacket = x.inbound
        ? { src: x.remote, dst: pod, protocol: x.protocol, srcPort: x.remotePort, dstPort: x.localPort }
        : { src: pod, dst: x.remote, protocol: x.protocol, srcPort: x.localPort, dstPort: x.remotePort };
      if (x.protocol === 1 || x.protocol === 58) {
        delete p.srcPort;
        delete p.dstPort;
      }
      return { p, direction: x.inbound ? ("ingress" as const) : ("egress" as const) };
    });
}
const packetArb = packetsArb(POD, ["10.9.0.1", "10.9.3.4", "192.168.1.1", "169.254.169.253"], [6, 17, 1]);

/** An AWS filter of these rules, with the amazon-dns service when DNS is mirrored. */
function filterOf(rules: DesiredRule[], mirrorDns: boolean): MirrorFilter {
  return {
    trafficMirrorFilterId: "tmf-1",
    ingressRules: rules.filter((r) => r.direction === "ingress"),
    egressRules: rules.filter((r) => r.direction === "egress"),
    networkServices: mirrorDns ? ["amazon-dns"] : [],
    tags: {},
  };
}

describe("selects, against AWS's filter semantics", () => {
  it("keeps a packet exactly when the pod's own AWS filter would mirror it", () => {
    const pod = parseIp(POD)!;
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 4 }), fc.boolean(), packetArb, (rules, mirrorDns, pkt) => {
        const aws = buildFilterRules({
          selected: [pod],
          unselected: [],
          userRules: rules,
          allowRejectForm: false,
        });
        fc.pre(aws !== undefined);
        const awsSays = mirrorFilterAccepts(filterOf(aws, mirrorDns), pkt.p, pkt.direction);
        const h = header(pkt.p)!;
        expect(formatIp(pkt.direction === "ingress" ? h.dst : h.src)).toBe(POD);
        expect(selects(podSelection(rules, mirrorDns), h)).toBe(awsSays);
      }),
      { numRuns: 3000 },
    );
  });
});

const POD6 = "2600:1f14:abc:de00:7::14";
const rule6Arb = rulesArb(
  ["All", "TCP", "UDP", "ICMPv6"],
  ["2001:db8::/32", "2001:db8::1/128", "::/0", "fd00:ec2::/64", "10.9.0.0/16"],
);
const packet6Arb = packetsArb(
  POD6,
  ["2001:db8::1", "2001:db8:5::9", "2600:1f14:abc:de01::3", "fd00:ec2::253"],
  [6, 17, 58],
);

describe("selects IPv6 packets, against AWS's filter semantics", () => {
  it("keeps an IPv6 packet exactly when the pod's own AWS filter (IPv6 rules) would mirror it", () => {
    fc.assert(
      fc.property(fc.array(rule6Arb, { maxLength: 4 }), fc.boolean(), packet6Arb, (rules, mirrorDns, pkt) => {
        const aws = buildFilterRules({
          selected: [],
          unselected: [],
          userRules: rules,
          allowRejectForm: false,
          ipv6: { selected: [parseIp6(POD6)!], unselected: [] },
        });
        fc.pre(aws !== undefined);
        const awsSays = mirrorFilterAccepts(filterOf(aws, mirrorDns), pkt.p, pkt.direction);
        const h = header(pkt.p)!;
        expect(h.v6).toBe(true);
        const s = compileSelection({
          policy: "shop/web",
          ips: [POD6],
          whole: false,
          localAddresses: [],
          rules,
          mirrorDns,
        });
        expect(selects(s, h)).toBe(awsSays);
      }),
      { numRuns: 3000 },
    );
  });

  it("tells a dual-stack pod's two addresses from its neighbours', and reads past IPv6 extension headers", () => {
    const s = compileSelection({
      policy: "shop/web",
      ips: [POD, POD6],
      whole: false,
      localAddresses: [],
      rules: [tcp80],
      mirrorDns: false,
    });
    expect(selects(s, header({ src: "2001:db8::1", dst: POD6, srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(selects(s, header({ src: "10.9.0.1", dst: POD, srcPort: 5, dstPort: 80 })!)).toBe(true);
    expect(
      selects(s, header({ src: "2001:db8::1", dst: "2600:1f14:abc:de00:7::15", srcPort: 5, dstPort: 80 })!),
    ).toBe(false);
    expect(selects(s, header({ src: "2001:db8::1", dst: POD6, srcPort: 5, dstPort: 81 })!)).toBe(false);
    // A hop-by-hop options header (8 bytes) before TCP: the ports are still found.
    const f = buildFrame({ src: "2001:db8::1", dst: POD6, srcPort: 5, dstPort: 80 }, MACS);
    const l3 = 14;
    const hbh = Buffer.from([6, 0, 1, 4, 0, 0, 0, 0]);
    const withHbh = Buffer.concat([f.subarray(0, l3 + 40), hbh, f.subarray(l3 + 40)]);
    withHbh[l3 + 6] = 0; // next header: hop-by-hop
    withHbh.writeUInt16BE(withHbh.readUInt16BE(l3 + 4) + 8, l3 + 4);
    const h = newInnerHeader();
    expect(readInnerHeader(withHbh, 0, withHbh.length, h)).toBe(true);
    expect([h.protocol, h.dstPort, selects(s, h)]).toEqual([6, 80, true]);
  });

  it("keeps a whole ENI's IPv6 traffic by its /80 and address, not others'", () => {
    const s = compileSelection({
      policy: "ops/nodes",
      ips: [],
      whole: true,
      localAddresses: ["10.0.0.4", "2600:1f14:abc:de00::4", "2600:1f14:abc:de00:7::/80"],
      rules: [],
      mirrorDns: false,
    });
    expect(
      selects(s, header({ src: "2001:db8::1", dst: "2600:1f14:abc:de00:7::99", srcPort: 5, dstPort: 80 })!),
    ).toBe(true);
    expect(
      selects(s, header({ src: "2600:1f14:abc:de00::4", dst: "2001:db8::1", srcPort: 5, dstPort: 80 })!),
    ).toBe(true);
    expect(
      selects(s, header({ src: "2001:db8::1", dst: "2600:1f14:abc:de00:8::1", srcPort: 5, dstPort: 80 })!),
    ).toBe(false);
  });
});
