import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MirrorFilter } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import { mirrorFilterAccepts } from "../../test/ec2-sim/dataplane.ts";
import type { SyntheticPacket } from "../../test/ec2-sim/packets.ts";
import { addressesOf, layoutArb, requestOf } from "../../test/fixtures/eni-layouts.ts";
import { buildFilterRules, MAX_RULES_PER_FILTER, type DesiredRule } from "./filters.ts";
import { formatIp, normalizeRanges, parseIp } from "./ipv4.ts";
import { formatBlock6, formatIp6, normalizeRanges6, parseCidr6, parseIp6, windowsOf } from "./ipv6.ts";

const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));

describe("IPv6 text", () => {
  it("formats as the WHATWG URL serialiser does (RFC 5952), and parses every spelling back", () => {
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), fc.boolean(), (groups, upper) => {
        const n = groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
        const long = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
        const text = formatIp6(n);
        expect(text).toBe(new URL(`http://[${long}]/`).hostname.slice(1, -1));
        expect(parseIp6(upper ? long.toUpperCase() : long)).toBe(n);
        expect(parseIp6(text)).toBe(n);
      }),
      { numRuns: 2000 },
    );
  });

  it("rejects what is not an address or a CIDR", () => {
    for (const junk of [
      "",
      ":",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "12345::",
      "g::",
      "::1.2.3.4",
    ])
      expect(parseIp6(junk), junk).toBeUndefined();
    for (const junk of ["::/129", "::", "::/", "::/a", "10.0.0.0/8"])
      expect(parseCidr6(junk), junk).toBeUndefined();
    expect(formatBlock6(parseCidr6("2600:1f14:abc:de00:1:2::/80")!)).toBe("2600:1f14:abc:de00:1::/80");
  });
});

/** A /80 prefix as EKS delegates one, and the node's own address outside it in the same /64. */
const PREFIX = parseCidr6("2600:1f14:abc:de00:7::/80")!.base;
const NODE = parseIp6("2600:1f14:abc:de00::4")!;

/**
 * An IPv4 layout (eni-layouts) moved into the /80: the same addresses as offsets, the rest of
 * the /80 held (pods get addresses from all of it), and the node's own address held too.
 */
function ipv6Request(l: { held: number; selected: number }, offset: bigint) {
  const selected = addressesOf(l.selected, 0).map((a) => PREFIX + offset + BigInt(a));
  const inPrefix: [bigint, bigint][] = [[PREFIX, PREFIX + (1n << 48n) - 1n]];
  // Held minus selected: the whole /80 and the node address, with the selected ones cut out.
  const unselected: [bigint, bigint][] = [[NODE, NODE]];
  let start = inPrefix[0]![0];
  for (const a of selected) {
    if (a > start) unselected.push([start, a - 1n]);
    start = a + 1n;
  }
  unselected.push([start, inPrefix[0]![1]]);
  return { selected, unselected: normalizeRanges6(unselected) };
}

const remote6 = fc.constantFrom("2600:1f14:abc:de01::9", "2001:db8::1", "fd00:ec2::253");
const userRule6: fc.Arbitrary<PolicyFilterRule> = fc
  .record({
    direction: fc.constantFrom("ingress", "egress", "both"),
    action: fc.constantFrom("accept", "reject"),
    protocol: fc.constantFrom("All", "TCP", "UDP", "ICMPv6"),
    remoteCidr: fc.option(fc.constantFrom("2001:db8::/32", "::/0", "10.9.0.0/16"), { nil: undefined }),
    localPorts: fc.option(fc.constantFrom({ from: 80, to: 80 }, { from: 80, to: 90 }), { nil: undefined }),
  })
  .map((r) => {
    const rule: PolicyFilterRule = { direction: r.direction, action: r.action, protocol: r.protocol };
    if (r.remoteCidr) rule.remoteCidr = r.remoteCidr;
    if (r.localPorts && (r.protocol === "TCP" || r.protocol === "UDP")) rule.localPorts = r.localPorts;
    return rule;
  });

/** Whether the policy's rules mirror a packet (first match; none: no), judged from the pod's side. */
function policyMirrors(rules: readonly PolicyFilterRule[], p: SyntheticPacket, inbound: boolean): boolean {
  if (rules.length === 0) return true;
  const remote = inbound ? p.src : p.dst;
  const localPort = (inbound ? p.dstPort : p.srcPort) ?? 0;
  const numbers: Record<string, number | undefined> = { TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58 };
  const inRemote = (cidr: string | undefined): boolean => {
    if (cidr === undefined) return true;
    const b6 = parseCidr6(cidr);
    const n6 = parseIp6(remote);
    if (b6 && n6 !== undefined) return n6 >= b6.base && n6 < b6.base + (1n << BigInt(128 - b6.len));
    return false; // an IPv4 remote CIDR never matches an IPv6 packet
  };
  const first = rules.find(
    (r) =>
      r.direction !== (inbound ? "egress" : "ingress") &&
      (r.protocol === "All" || numbers[r.protocol] === (p.protocol ?? 6)) &&
      inRemote(r.remoteCidr) &&
      (r.localPorts === undefined || (localPort >= r.localPorts.from && localPort <= r.localPorts.to)),
  );
  return first?.action === "accept";
}

function asFilter(rules: readonly DesiredRule[]): MirrorFilter {
  return {
    trafficMirrorFilterId: "tmf-1",
    ingressRules: rules.filter((r) => r.direction === "ingress"),
    egressRules: rules.filter((r) => r.direction === "egress"),
    networkServices: [],
    tags: {},
  };
}

function expectDistinctNumbers(rules: readonly DesiredRule[]): void {
  for (const d of ["ingress", "egress"] as const) {
    const numbers = rules.filter((r) => r.direction === d).map((r) => r.ruleNumber);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const n of numbers) expect(n >= 1 && n <= 32766).toBe(true);
  }
}

describe("buildFilterRules on an IPv6 ENI", () => {
  const base4 = parseIp("10.0.64.0")!;

  it("needs exactly as many rules as the same layout in IPv4, and mirrors exactly the selected addresses as the emulator evaluates it (property)", () => {
    fc.assert(
      fc.property(
        layoutArb,
        // Aligned as the IPv4 twin's /27 is, so both are cut into the same blocks.
        fc.bigInt({ min: 0n, max: (1n << 43n) - 2n }).map((k) => k * 32n),
        fc.array(userRule6, { maxLength: 3 }),
        fc.record({ remote: remote6, protocol: fc.constantFrom(6, 17, 58) }),
        (l, offset, userRules, { remote, protocol }) => {
          const six = ipv6Request(l, offset);
          fc.pre(six.selected.length > 0);
          const rules = buildFilterRules({
            selected: [],
            unselected: [],
            userRules,
            allowRejectForm: false,
            ipv6: six,
          });
          // The IPv4 twin: the same addresses in a /27 whose neighbours are all held and unselected
          // (as the rest of the /80 is), with the same policy rules made IPv4.
          const { selected } = requestOf(l, base4);
          const twinUnselected = requestOf({ held: 0xffffffff, selected: l.selected }, base4).unselected;
          // Policy rules of the other family make no IPv6 rules, so the twin has none of them.
          const as4 = userRules
            .filter((r) => r.remoteCidr === undefined || r.remoteCidr.includes(":"))
            .map((r) => (r.remoteCidr === undefined ? r : { ...r, remoteCidr: "10.9.0.0/16" }));
          fc.pre(as4.length > 0 || userRules.length === 0);
          const twin = buildFilterRules({
            selected,
            unselected: normalizeRanges([[0, base4 - 1], ...twinUnselected, [base4 + 32, 2 ** 32 - 1]]),
            userRules: as4,
            allowRejectForm: false,
          });
          expect(rules?.length).toBe(twin?.length);
          if (!rules) return;
          expect(rules.length).toBeLessThanOrEqual(MAX_RULES_PER_FILTER);
          expectDistinctNumbers(rules);
          for (const r of rules)
            expect(r.sourceCidrBlock.includes(":") && r.destinationCidrBlock.includes(":")).toBe(true);
          const filter = asFilter(rules);
          const picked = new Set(six.selected);
          const probes = [
            NODE,
            PREFIX,
            PREFIX + (1n << 48n) - 1n,
            ...addressesOf(l.held, 0).map((a) => PREFIX + offset + BigInt(a)),
          ];
          for (const a of probes) {
            const local = formatIp6(a);
            const ports = protocol === 58 ? {} : { srcPort: 40000, dstPort: 80 };
            const inbound: SyntheticPacket = { src: remote, dst: local, protocol, ...ports };
            const out: SyntheticPacket = {
              src: local,
              dst: remote,
              protocol,
              ...(protocol === 58 ? {} : { srcPort: 80, dstPort: 40000 }),
            };
            expect(mirrorFilterAccepts(filter, inbound, "ingress")).toBe(
              picked.has(a) && policyMirrors(userRules, inbound, true),
            );
            expect(mirrorFilterAccepts(filter, out, "egress")).toBe(
              picked.has(a) && policyMirrors(userRules, out, false),
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  }, 30_000);

  it("selects pods in two /80s of one ENI apart (windows wider than a number counts), and the node's address only when selected", () => {
    const other = parseCidr6("2600:1f14:abc:de00:9000::/80")!.base;
    const selected = [PREFIX + 4n, PREFIX + 5n, other + 1n, NODE].sort((a, b) => (a < b ? -1 : 1));
    const held: [bigint, bigint][] = [
      [NODE, NODE],
      [PREFIX, PREFIX + (1n << 48n) - 1n],
      [other, other + (1n << 48n) - 1n],
    ];
    const unselected: [bigint, bigint][] = [];
    for (const [s, e] of held) {
      let start = s;
      for (const a of selected.filter((x) => x >= s && x <= e)) {
        if (a > start) unselected.push([start, a - 1n]);
        start = a + 1n;
      }
      if (start <= e) unselected.push([start, e]);
    }
    expect(windowsOf(selected, unselected).length).toBeGreaterThan(1);
    const rules = buildFilterRules({
      selected: [],
      unselected: [],
      userRules: [],
      allowRejectForm: false,
      ipv6: { selected, unselected },
    })!;
    // Three blocks, two rules each: ::4 and ::5 of the first /80 are one /127.
    expect(
      rules
        .map((r) => r.destinationCidrBlock)
        .filter((c) => c !== "::/0")
        .sort(),
    ).toEqual(
      [
        "2600:1f14:abc:de00:7::4/127",
        "2600:1f14:abc:de00:9000::1/128",
        // The node's address, in the largest block that holds no other held address: the ENI holds
        // nothing else below the /80, so covering more admits nothing (as in IPv4).
        "2600:1f14:abc:de00::/78",
      ].sort(),
    );
    const filter = asFilter(rules);
    for (const a of [
      NODE,
      PREFIX + 4n,
      PREFIX + 5n,
      PREFIX + 6n,
      PREFIX + 7n,
      other,
      other + 1n,
      other + 2n,
    ]) {
      const p: SyntheticPacket = {
        src: "2001:db8::1",
        dst: formatIp6(a),
        protocol: 17,
        srcPort: 1,
        dstPort: 2,
      };
      expect(mirrorFilterAccepts(filter, p, "ingress"), formatIp6(a)).toBe(selected.includes(a));
    }
  });
});

describe("buildFilterRules on a dual-stack ENI", () => {
  it("selects both addresses of each pod, each family with its own rules and no number twice in a direction (property)", () => {
    const base4 = parseIp("10.0.64.0")!;
    fc.assert(
      fc.property(layoutArb, layoutArb, fc.array(userRule6, { maxLength: 2 }), (l4, l6, userRules) => {
        const four = requestOf(l4, base4);
        const six = ipv6Request(l6, 16n);
        fc.pre(four.selected.length + six.selected.length > 0);
        const rules = buildFilterRules({ ...four, userRules, allowRejectForm: false, ipv6: six });
        const only4 =
          four.selected.length > 0 ? buildFilterRules({ ...four, userRules, allowRejectForm: false }) : [];
        const only6 =
          six.selected.length > 0
            ? buildFilterRules({ selected: [], unselected: [], userRules, allowRejectForm: false, ipv6: six })
            : [];
        const sum = only4 && only6 ? only4.length + only6.length : undefined;
        expect(rules?.length).toBe(sum !== undefined && sum <= MAX_RULES_PER_FILTER ? sum : undefined);
        if (!rules) return;
        expectDistinctNumbers(rules);
        const filter = asFilter(rules);
        for (const a of addressesOf(l4.held, base4)) {
          const p: SyntheticPacket = {
            src: "10.9.0.1",
            dst: formatIp(a),
            protocol: 6,
            srcPort: 40000,
            dstPort: 80,
          };
          const want = four.selected.includes(a) && policyMirrors4(userRules, p);
          expect(mirrorFilterAccepts(filter, p, "ingress")).toBe(want);
        }
        for (const a of addressesOf(l6.held, 0).map((x) => PREFIX + 16n + BigInt(x))) {
          const p: SyntheticPacket = {
            src: "2001:db8::1",
            dst: formatIp6(a),
            protocol: 6,
            srcPort: 40000,
            dstPort: 80,
          };
          expect(mirrorFilterAccepts(filter, p, "ingress")).toBe(
            six.selected.includes(a) && policyMirrors(userRules, p, true),
          );
        }
      }),
      { numRuns: 400 },
    );
  }, 30_000);

  it("mirrors both families of a whole ENI: 0.0.0.0/0 and ::/0", () => {
    const rules = buildFilterRules({
      selected: "all",
      unselected: [],
      userRules: [],
      allowRejectForm: false,
      ipv6: { selected: [], unselected: [] },
    })!;
    expect(rules.map((r) => `${r.direction} ${r.sourceCidrBlock} ${r.destinationCidrBlock}`).sort()).toEqual([
      "egress 0.0.0.0/0 0.0.0.0/0",
      "egress ::/0 ::/0",
      "ingress 0.0.0.0/0 0.0.0.0/0",
      "ingress ::/0 ::/0",
    ]);
    expectDistinctNumbers(rules);
  });
});

/** `policyMirrors` for an inbound IPv4 packet from 10.9.0.1 (inside 10.9.0.0/16, outside every IPv6 CIDR). */
function policyMirrors4(rules: readonly PolicyFilterRule[], p: SyntheticPacket): boolean {
  if (rules.length === 0) return true;
  const numbers: Record<string, number | undefined> = { TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58 };
  const first = rules.find(
    (r) =>
      r.direction !== "egress" &&
      (r.protocol === "All" || numbers[r.protocol] === p.protocol) &&
      (r.remoteCidr === undefined || r.remoteCidr === "10.9.0.0/16") &&
      (r.localPorts === undefined || (p.dstPort! >= r.localPorts.from && p.dstPort! <= r.localPorts.to)),
  );
  return first?.action === "accept";
}
