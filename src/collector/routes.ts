/**
 * Routes: the VNI map the operator publishes, turned into what the receive path needs per VNI —
 * the policies a packet of that session may belong to (every policy with a session on the same ENI
 * to the same target, since AWS delivers a packet only through the first session that accepts it),
 * each with its compiled selection and its own interface label — so the hot path does one
 * `Map.get` per datagram and no string work.
 */
import { readFileSync } from "node:fs";
import { parseVniMapBytes, type VniEntry, type VniMap, type VniSelection } from "../api/vni-map.ts";
import type { InterfaceLabel } from "./files.ts";
import { compileSelection, type CompiledSelection } from "./selection.ts";

/** Counters of one policy (summed over its sessions). */
export interface PolicyCounters {
  /** Packets kept for the policy (its selection matched). */
  packets: number;
  bytes: number;
  /** Packets that came through the policy's sessions and that no policy's selection kept. */
  unselectedPackets: number;
  unselectedBytes: number;
}

/** A policy a session's packets may belong to. */
export interface Attribution {
  /** `namespace/name`. */
  policy: string;
  selection: CompiledSelection;
  /**
   * The session's interface as this policy's files name it (only this policy's pods), as the
   * function the file sets take (made once, not per packet).
   */
  labelOf: () => InterfaceLabel;
}

/** Where packets of one VNI go. */
export interface Route {
  vni: number;
  entry: VniEntry;
  /** Policy keys (`namespace/name`) the session serves, sorted. */
  policies: string[];
  /** Policies a packet of this session may be kept for, sorted by key. */
  attributions: Attribution[];
}

/** Reads and validates a VNI map file (plain JSON, or gzip as the ConfigMap holds it); throws a message naming the file and the problem. */
export function readVniMapFile(path: string): VniMap {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new Error(`reading the VNI map ${path}`, { cause: err });
  }
  return parseVniMapBytes(bytes, path);
}

/**
 * How Wireshark will name a session's interface: ENI and VNI, then the policies and pods. With
 * `forPolicy`, as that policy's files show it: only that policy and its own pods, and the session
 * id only when the session is the policy's.
 */
export function labelOf(
  e: VniEntry,
  forPolicy?: { policy: string; ips: ReadonlySet<string> },
): InterfaceLabel {
  const shown = forPolicy ? e.pods.filter((p) => forPolicy.ips.has(p.ip)) : e.pods;
  // A dual-stack pod is listed once, with both its addresses.
  const byPod = new Map<string, string[]>();
  for (const p of shown) byPod.set(p.name, [...(byPod.get(p.name) ?? []), p.ip]);
  const pods = [...byPod].map(([name, ips]) => `${name} ${ips.join(" ")}`).join(", ");
  const own = !forPolicy || e.policies.includes(forPolicy.policy);
  const parts = [
    `policy ${forPolicy ? forPolicy.policy : e.policies.join(", ")}`,
    e.sessionId && own ? `session ${e.sessionId}` : "",
    e.nodeName ? `node ${e.nodeName}` : "",
    e.instanceId ? `instance ${e.instanceId}` : "",
    `source ${e.sourceIp}`,
    pods ? `pods ${pods}` : "",
  ];
  return {
    name: `${e.networkInterfaceId} vni ${e.vni}`,
    description: parts.filter(Boolean).join("; "),
  };
}

/** The label of a VNI that is not in the map. */
export function unknownLabel(vni: number): InterfaceLabel {
  return { name: `unknown vni ${vni}`, description: "VNI not in the operator's map" };
}

/**
 * An entry's selections. A map of an older operator has none: a session serving one policy selects
 * its pods (the whole ENI when it lists none); a shared one cannot be told apart, so nothing.
 */
function selectionsOf(e: VniEntry): VniSelection[] {
  if (e.selections) return e.selections;
  if (e.policies.length !== 1) return [];
  const policy = e.policies[0]!;
  return e.pods.length > 0 ? [{ policy, ips: e.pods.map((p) => p.ip) }] : [{ policy, ips: [], whole: true }];
}

/** Where a session's copies are attributed: its ENI and, when the map says, its policies' target. */
function scopeOf(e: VniEntry, map: VniMap): string {
  const targets = [...new Set(e.policies.map((p) => map.policies?.[p]?.target ?? ""))];
  // Without a known single target the session is a scope of its own: no attribution across sessions.
  const target = targets.length === 1 && targets[0] ? targets[0] : `vni ${e.vni}`;
  return JSON.stringify([e.networkInterfaceId, target]);
}

/** Builds the route table of a map; the last entry wins if a VNI repeats. */
export function buildRoutes(map: VniMap): Map<number, Route> {
  // Sessions on one ENI to one target: a packet through any of them may be any of their policies'.
  const scopes = new Map<string, VniEntry[]>();
  for (const entry of map.sessions) {
    const k = scopeOf(entry, map);
    const list = scopes.get(k);
    if (list) list.push(entry);
    else scopes.set(k, [entry]);
  }
  const routes = new Map<number, Route>();
  for (const entries of scopes.values()) {
    const attributions = attributionsOf(entries, map);
    for (const entry of entries) {
      routes.set(entry.vni, {
        vni: entry.vni,
        entry,
        policies: [...entry.policies].sort(),
        attributions: attributions.map((a) => a(entry)),
      });
    }
  }
  return routes;
}

/** Each policy selecting on these sessions, as a maker of its attribution for one of them. */
function attributionsOf(entries: readonly VniEntry[], map: VniMap): ((e: VniEntry) => Attribution)[] {
  const byPolicy = new Map<string, { ips: Set<string>; whole: boolean; local: string[] }>();
  for (const e of entries)
    for (const s of selectionsOf(e)) {
      let acc = byPolicy.get(s.policy);
      if (!acc) byPolicy.set(s.policy, (acc = { ips: new Set(), whole: false, local: [] }));
      for (const ip of s.ips) acc.ips.add(ip);
      if (s.whole) {
        acc.whole = true;
        // A map that does not say which addresses are the ENI's: every address may be local.
        acc.local.push(...(e.localAddresses ?? ["0.0.0.0/0", "::/0"]));
      }
    }
  return [...byPolicy.keys()].sort().map((policy) => {
    const acc = byPolicy.get(policy)!;
    const p = map.policies?.[policy];
    const selection = compileSelection({
      policy,
      ips: [...acc.ips],
      whole: acc.whole,
      localAddresses: acc.local,
      rules: p?.rules ?? [],
      mirrorDns: p?.mirrorDns ?? true,
    });
    return (e: VniEntry): Attribution => {
      const label = labelOf(e, { policy, ips: acc.ips });
      return { policy, selection, labelOf: () => label };
    };
  });
}

/** A policy key as a relative path: `namespace/name`, with anything odd replaced. */
export function policyDir(policy: string): string {
  const [ns = "", name = ""] = policy.split("/", 2);
  const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_") || "_";
  return `${safe(ns)}/${safe(name)}`;
}
