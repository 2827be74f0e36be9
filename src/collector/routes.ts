/**
 * Routes: the VNI map the operator publishes, turned into what the receive path needs per VNI —
 * the file sets of the policies the session serves and its per-policy counters — so the hot path
 * does one `Map.get` per datagram and no string work.
 */
import { readFileSync } from "node:fs";
import { VniMapSchema, type VniEntry, type VniMap } from "../api/vni-map.ts";
import type { InterfaceLabel } from "./files.ts";
import { describeIssues } from "../api/validation.ts";

/** Counters of one policy (summed over its sessions). */
export interface PolicyCounters {
  packets: number;
  bytes: number;
}

/** Where packets of one VNI go. */
export interface Route {
  vni: number;
  entry: VniEntry;
  label: InterfaceLabel;
  /** Policy keys (`namespace/name`), sorted. */
  policies: string[];
}

/** Reads and validates a VNI map file; throws a message naming the file and the problem. */
export function readVniMapFile(path: string): VniMap {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`reading the VNI map ${path}`, { cause: err });
  }
  const parsed = VniMapSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new Error(`the VNI map ${path} is not valid: ${problems}`);
  }
  return parsed.data;
}

/** How Wireshark will name a session's interface: ENI and VNI, then the policies and pods. */
export function labelOf(e: VniEntry): InterfaceLabel {
  const pods = e.pods.map((p) => `${p.name} ${p.ip}`).join(", ");
  const parts = [
    `policy ${e.policies.join(", ")}`,
    e.sessionId ? `session ${e.sessionId}` : "",
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

/** Builds the route table of a map; the last entry wins if a VNI repeats. */
export function buildRoutes(map: VniMap): Map<number, Route> {
  const routes = new Map<number, Route>();
  for (const entry of map.sessions) {
    routes.set(entry.vni, {
      vni: entry.vni,
      entry,
      label: labelOf(entry),
      policies: [...entry.policies].sort(),
    });
  }
  return routes;
}

/** A policy key as a relative path: `namespace/name`, with anything odd replaced. */
export function policyDir(policy: string): string {
  const [ns = "", name = ""] = policy.split("/", 2);
  const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_") || "_";
  return `${safe(ns)}/${safe(name)}`;
}
