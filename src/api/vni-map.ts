/**
 * The VNI map: what the operator publishes for the collector so it can name where each mirrored
 * packet came from. The operator chooses every session's VNI; the collector reads this document
 * (a ConfigMap key or a file) and never calls AWS.
 */
import { z } from "zod";
import { FilterRuleSchema } from "./resources.ts";
import { describeIssues } from "./validation.ts";

/**
 * What one policy selected on a session's ENI: the collector keeps a packet for the policy only
 * when it is to or from one of these addresses (or, for a whole-node source, crosses the ENI at
 * all) and the policy's rules accept it.
 */
export const VniSelectionSchema = z.object({
  /** `namespace/name`. */
  policy: z.string(),
  /** The policy's pods' addresses on the ENI (a subset of the entry's `pods`). */
  ips: z.array(z.string()).default([]),
  /** The policy mirrors the whole ENI (a node source): every address in `localAddresses`. */
  whole: z.boolean().optional(),
});

/** What the collector needs of a policy to attribute packets to it. */
export const VniPolicySchema = z.object({
  /** The TrafficMirrorTarget its copies go to; packets are attributed only within one target. */
  target: z.string(),
  /** The policy's filter rules, first match wins; none means all traffic. */
  rules: z.array(FilterRuleSchema).default([]),
  /** Whether traffic to the Amazon DNS server is mirrored. */
  mirrorDns: z.boolean().default(false),
});

/** One mirror session as the collector sees it. */
export const VniEntrySchema = z.object({
  /** The session's VXLAN network identifier (24 bits). */
  vni: z.number().int().min(0).max(0xffffff),
  /** `tms-…`, when the session exists in AWS. */
  sessionId: z.string().optional(),
  /** The policies served, as `namespace/name`. */
  policies: z.array(z.string()).min(1),
  /** The source ENI and what it belongs to. */
  networkInterfaceId: z.string(),
  /** Primary IP of the source ENI (outer source address of the copies). */
  sourceIp: z.string(),
  nodeName: z.string().optional(),
  instanceId: z.string().optional(),
  /** Mirrored pods on that ENI, as `namespace/name` with their IPs. */
  pods: z.array(z.object({ name: z.string(), ip: z.string() })).default([]),
  /**
   * Per policy served, what it selected on this ENI. Absent in maps of older operators: then a
   * session with one policy selects its `pods` (or the whole ENI when there are none), and a shared
   * session's packets cannot be told apart and are kept for nobody.
   */
  selections: z.array(VniSelectionSchema).optional(),
  /**
   * The session's AWS filter does not select pods (the target's `selectionMode: Eni`): it copies the
   * ENI's traffic that the rules accept, and only the collector's selection keeps pods apart.
   */
  selectionAtCollector: z.boolean().optional(),
  /** The ENI's addresses and prefixes (set when a selection is `whole`): which side is local. */
  localAddresses: z.array(z.string()).optional(),
});

/** The whole map. */
export const VniMapSchema = z.object({
  version: z.literal(1),
  /** When the operator last wrote it (RFC 3339). */
  generatedAt: z.string().optional(),
  sessions: z.array(VniEntrySchema),
  /** Every policy named in `sessions`, by `namespace/name`. */
  policies: z.record(z.string(), VniPolicySchema).optional(),
});

/** One mirror session as the collector sees it. */
export type VniEntry = z.infer<typeof VniEntrySchema>;
/** One policy's selection on a session's ENI. */
export type VniSelection = z.infer<typeof VniSelectionSchema>;
/** A policy as the collector sees it. */
export type VniPolicy = z.infer<typeof VniPolicySchema>;
/** The VNI map document. */
export type VniMap = z.infer<typeof VniMapSchema>;

/** ConfigMap key under which the operator publishes the map. */
export const VNI_MAP_CONFIGMAP_KEY = "vni-map.json";

/** Parses and validates a map document (a file's or a ConfigMap's); throws a message naming it and the problem. */
export function parseVniMapDocument(text: string, where: string): VniMap {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`reading the VNI map ${where}`, { cause: err });
  }
  const parsed = VniMapSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`the VNI map ${where} is not valid: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
