// Takes apart a restart traced by `SCALE_TRACE=file node bench/scale/run.ts …`: per ENI the restart
// touched, its rule calls against what its pod events need applied as they come (per filter the
// pod is in: 0 calls for a replacement on the old address, 2 for one on the old pod's ENI, 2 on
// each side for one on another ENI), and the bursts of calls (calls on one ENI less than 1.5 s
// apart) by the pod events seen on the ENI since the burst before: D a departure, A an arrival;
// `=` the replacement took the old address, `s` another on the same ENI, `x` another ENI.
// Run: node bench/scale/trace.ts FILE [-v: list the events and calls of ENIs over the estimate]
import { readFileSync } from "node:fs";
import type { FilterRule, MirrorFilter } from "../../src/api/inventory.ts";
import { mirrorsInboundTo } from "../../test/ec2-sim/dataplane.ts";

interface TracedPod {
  ip?: string;
  eni?: string;
  runningAt?: number;
  deletedAt?: number;
}
interface Trace {
  t0: number;
  calls: { action: string; filterId?: string; at?: number }[];
  victims: TracedPod[];
  fresh: TracedPod[];
  eniOfFilter: Record<string, string>;
  before: Record<string, FilterRule[]>;
  after: Record<string, FilterRule[]>;
}
type Kind = "=" | "s" | "x";
interface Event {
  at: number;
  what: string;
  pod?: { kind: Kind; departure: boolean };
}

const [file, flag] = process.argv.slice(2);
if (!file) throw new Error("usage: trace.ts FILE [-v]");
const t = JSON.parse(readFileSync(file, "utf8")) as Trace;
const filtersOn = new Map<string, string[]>();
for (const [f, eni] of Object.entries(t.eniOfFilter)) {
  const on = filtersOn.get(eni) ?? [];
  on.push(f);
  filtersOn.set(eni, on);
}

/** How many filters on the pod's ENI mirror its inbound traffic. */
function filtersWith(rules: Trace["before"], p: TracedPod): number {
  if (!p.ip || !p.eni) return 0;
  const ip = p.ip;
  return (filtersOn.get(p.eni) ?? []).filter((id) => {
    const all = rules[id] ?? [];
    const f: MirrorFilter = {
      trafficMirrorFilterId: id,
      ingressRules: all.filter((r) => r.direction === "ingress"),
      egressRules: all.filter((r) => r.direction === "egress"),
      networkServices: [],
      tags: {},
    };
    return mirrorsInboundTo(f, ip);
  }).length;
}

const events = new Map<string, Event[]>();
const need = new Map<string, number>();
const add = (eni: string | undefined, e: Event, calls = 0): void => {
  if (!eni) return;
  const list = events.get(eni) ?? [];
  list.push(e);
  events.set(eni, list);
  need.set(eni, (need.get(eni) ?? 0) + calls);
};
t.victims.forEach((v, k) => {
  const r = t.fresh[k]!;
  if (!v.ip || !r.ip) return;
  const kind: Kind = v.ip === r.ip ? "=" : v.eni === r.eni ? "s" : "x";
  const [was, now] = [filtersWith(t.before, v), filtersWith(t.after, r)];
  const dep = kind === "x" ? 2 * was : 0;
  const arr = kind === "x" ? 2 * now : kind === "s" ? 2 * Math.max(was, now) : 0;
  add(
    v.eni,
    { at: v.deletedAt ?? 0, what: `departure ${v.ip} (${kind})`, pod: { kind, departure: true } },
    dep,
  );
  if (r.runningAt)
    add(r.eni, { at: r.runningAt, what: `arrival ${r.ip} (${kind})`, pod: { kind, departure: false } }, arr);
});
let calls = 0;
for (const c of t.calls) {
  if (!c.filterId || c.at === undefined) continue;
  calls++;
  add(t.eniOfFilter[c.filterId], { at: c.at, what: `${c.action} on ${c.filterId}` });
}

const bursts = new Map<string, { n: number; calls: number }>();
const over = new Map<number, number>();
for (const [eni, list] of events) {
  list.sort((a, b) => a.at - b.at);
  let last = -Infinity;
  let since: string[] = [];
  let burst: { key: string; calls: number } | undefined;
  const close = (): void => {
    if (!burst) return;
    const b = bursts.get(burst.key) ?? { n: 0, calls: 0 };
    bursts.set(burst.key, { n: b.n + 1, calls: b.calls + burst.calls });
    burst = undefined;
  };
  let n = 0;
  for (const e of list) {
    if (e.pod) {
      since.push(`${e.pod.departure ? "D" : "A"}${e.pod.kind}`);
      continue;
    }
    n++;
    if (!burst || e.at - last > 1500) {
      close();
      burst = { key: since.join("") || "-", calls: 0 };
      since = [];
    }
    burst.calls++;
    last = e.at;
  }
  close();
  const extra = n - (need.get(eni) ?? 0);
  over.set(extra, (over.get(extra) ?? 0) + 1);
  if (flag === "-v" && extra > 0) {
    console.log(`${eni}: ${n} calls, ${need.get(eni)} needed`);
    for (const e of list) console.log(`  ${((e.at - t.t0) / 1000).toFixed(2).padStart(8)} s  ${e.what}`);
  }
}
const needed = [...need.values()].reduce((a, b) => a + b, 0);
console.log(`rule calls: ${calls}`);
console.log(`needed applied as they come: ${needed} calls (${(calls / needed).toFixed(2)}×)`);
console.log(
  `ENIs by calls over what they need: ${[...over]
    .sort((a, b) => a[0] - b[0])
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ")}`,
);
console.log("bursts by the pod events since the burst before:");
for (const [k, v] of [...bursts].sort((a, b) => b[1].calls - a[1].calls))
  console.log(`  ${k.padEnd(14)} ${v.n} bursts, ${v.calls} calls (${(v.calls / v.n).toFixed(2)} a burst)`);
