/**
 * The VNI map: what the operator publishes for the collector so it can name where each mirrored
 * packet came from. The operator chooses every session's VNI; the collector reads this document
 * (a ConfigMap key or a file) and never calls AWS.
 */
import { z } from "zod";

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
});

/** The whole map. */
export const VniMapSchema = z.object({
  version: z.literal(1),
  /** When the operator last wrote it (RFC 3339). */
  generatedAt: z.string().optional(),
  sessions: z.array(VniEntrySchema),
});

/** One mirror session as the collector sees it. */
export type VniEntry = z.infer<typeof VniEntrySchema>;
/** The VNI map document. */
export type VniMap = z.infer<typeof VniMapSchema>;

/** ConfigMap key under which the operator publishes the map. */
export const VNI_MAP_CONFIGMAP_KEY = "vni-map.json";
