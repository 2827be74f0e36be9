/**
 * The VNI map: what the operator publishes for the collector so it can name where each mirrored
 * packet came from. The operator chooses every session's VNI; the collector reads this document
 * (a ConfigMap key or a file) and never calls AWS.
 */
import { gunzipSync, gzipSync } from "node:zlib";
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

/**
 * `binaryData` key under which the operator publishes the map: compact JSON, gzip-compressed (a
 * cluster's map is several MiB as JSON and a ConfigMap holds 1 MiB; see ADR 0024).
 */
export const VNI_MAP_CONFIGMAP_KEY = "vni-map.json.gz";

/** `data` key of a map written by an older operator (plain JSON); read, never written. */
export const VNI_MAP_LEGACY_CONFIGMAP_KEY = "vni-map.json";

/** What a ConfigMap holds that the map is read from. */
export interface VniMapConfigMap {
  data?: Record<string, string> | null;
  binaryData?: Record<string, string> | null;
}

/** The map as the operator writes it: base64 of the gzip of its compact JSON. */
export function encodeVniMap(map: VniMap): string {
  return encodeVniMapJson(JSON.stringify(map));
}

/** `encodeVniMap` of a map already serialised (compact). */
export function encodeVniMapJson(json: string): string {
  return gzipSync(json).toString("base64");
}

/**
 * The map's part of a ConfigMap, as written (the gzip key, else an older operator's JSON key);
 * undefined when it holds neither. Two writes of the same map give the same payload.
 */
export function vniMapPayload(cm: VniMapConfigMap): VniMapConfigMap | undefined {
  const gz = cm.binaryData?.[VNI_MAP_CONFIGMAP_KEY];
  if (gz !== undefined) return { binaryData: { [VNI_MAP_CONFIGMAP_KEY]: gz } };
  const text = cm.data?.[VNI_MAP_LEGACY_CONFIGMAP_KEY];
  return text === undefined ? undefined : { data: { [VNI_MAP_LEGACY_CONFIGMAP_KEY]: text } };
}

/**
 * Reads the map from a ConfigMap (the gzip key, else an older operator's JSON key); undefined when
 * it holds neither. Throws a message naming `where` and the problem when the map cannot be read.
 */
export function readVniMapConfigMap(cm: VniMapConfigMap, where: string): VniMap | undefined {
  const gz = cm.binaryData?.[VNI_MAP_CONFIGMAP_KEY];
  if (gz !== undefined)
    return parseGzippedVniMap(Buffer.from(gz, "base64"), `${where} (key ${VNI_MAP_CONFIGMAP_KEY})`);
  const text = cm.data?.[VNI_MAP_LEGACY_CONFIGMAP_KEY];
  return text === undefined
    ? undefined
    : parseVniMapDocument(text, `${where} (key ${VNI_MAP_LEGACY_CONFIGMAP_KEY})`);
}

/**
 * Parses a map's bytes: gzip-compressed (recognised by its magic number, as a mounted ConfigMap's
 * `binaryData` key is) or plain JSON; throws a message naming `where` and the problem.
 */
export function parseVniMapBytes(bytes: Buffer, where: string): VniMap {
  return isGzip(bytes)
    ? parseGzippedVniMap(bytes, where)
    : parseVniMapDocument(bytes.toString("utf8"), where);
}

function isGzip(bytes: Buffer): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function parseGzippedVniMap(bytes: Buffer, where: string): VniMap {
  let text: string;
  try {
    if (!isGzip(bytes)) throw new Error("no gzip header");
    text = gunzipSync(bytes).toString("utf8");
  } catch (err) {
    throw new Error(`the VNI map ${where} is not valid gzip: ${(err as Error).message}`, { cause: err });
  }
  return parseVniMapDocument(text, where);
}

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
