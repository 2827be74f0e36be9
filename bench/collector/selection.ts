// The collector's per-packet selection (read the inner header, test each attribution), this
// checkout's against another's, in one process: rounds alternate (and which goes first), so a busy
// machine slows both alike. Frames: IPv4 TCP copies of a session whose policy selected 8 of 12 pods on the ENI, with
// an HTTP rule; and, for this checkout, the same as IPv6. Prints ns per packet, medians.
// Run: node bench/collector/selection.ts OTHER_CHECKOUT [packets per round] [rounds]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { PolicyFilterRule } from "../../src/api/resources.ts";
import * as mine from "../../src/collector/selection.ts";
import { buildFrame, type SyntheticPacket } from "../../test/ec2-sim/packets.ts";

const other = process.argv[2];
if (!other) throw new Error("usage: selection.ts OTHER_CHECKOUT [packets] [rounds]");
const PACKETS = Number(process.argv[3] ?? 2_000_000);
const ROUNDS = Number(process.argv[4] ?? 9);
const theirs = (await import(
  pathToFileURL(resolve(other, "src/collector/selection.ts")).href
)) as typeof mine;

const http: PolicyFilterRule = {
  direction: "both",
  action: "accept",
  protocol: "TCP",
  localPorts: { from: 80, to: 80 },
};
const MACS = { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" };

function frames(pods: string[], client: string): Buffer[] {
  return pods.flatMap((pod, k) => {
    const inbound: SyntheticPacket = {
      src: client,
      dst: pod,
      srcPort: 40000 + k,
      dstPort: k % 3 === 0 ? 443 : 80,
    };
    const outbound: SyntheticPacket = { src: pod, dst: client, srcPort: 80, dstPort: 40000 + k };
    return [buildFrame(inbound, MACS), buildFrame(outbound, MACS)];
  });
}

const v4 = Array.from({ length: 12 }, (_, k) => `10.0.64.${k + 1}`);
const v6 = Array.from({ length: 12 }, (_, k) => `2600:1f14:abc:de00:7::${(k + 1).toString(16)}`);

/** Nanoseconds per packet of one module on some frames. */
function run(m: typeof mine, pods: string[], input: Buffer[]): number {
  const s = m.compileSelection({
    policy: "shop/web",
    ips: pods.slice(0, 8),
    whole: false,
    localAddresses: [],
    rules: [http],
    mirrorDns: false,
  });
  // This checkout's header record; an older checkout ignores its IPv6 fields.
  const h = mine.newInnerHeader();
  let kept = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PACKETS; i++) {
    const f = input[i % input.length]!;
    if (m.readInnerHeader(f, 0, f.length, h) && m.selects(s, h)) kept++;
  }
  const ns = Number(process.hrtime.bigint() - t0) / PACKETS;
  if (kept === 0) throw new Error("nothing kept: the benchmark's frames are wrong");
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const f4 = frames(v4, "10.9.0.1");
const f6 = frames(v6, "2001:db8::1");
const times = { theirs4: [] as number[], mine4: [] as number[], mine6: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  // Which goes first alternates: the second of a pair ran measurably slower, whichever it was.
  if (r % 2 === 0) {
    times.theirs4.push(run(theirs, v4, f4));
    times.mine4.push(run(mine, v4, f4));
  } else {
    times.mine4.push(run(mine, v4, f4));
    times.theirs4.push(run(theirs, v4, f4));
  }
  times.mine6.push(run(mine, v6, f6));
}
const [a, b, c] = [median(times.theirs4), median(times.mine4), median(times.mine6)];
console.log(
  `IPv4 copies: other ${a.toFixed(1)} ns/packet, this ${b.toFixed(1)} ns/packet, ratio ${(b / a).toFixed(3)}; IPv6 copies, this: ${c.toFixed(1)} ns/packet; medians of ${ROUNDS} rounds of ${PACKETS} packets`,
);
