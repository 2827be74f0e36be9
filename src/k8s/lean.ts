/**
 * Lean copies of the objects the operator watches: only the fields the planner and the status
 * writer use, so that 100,000 pods fit comfortably in memory.
 */
import type { RawObject } from "./reflector.ts";

/** A pod as the planner sees it. */
export interface LeanPod {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  nodeName: string | undefined;
  /** IPv4 and IPv6 pod IPs (empty until assigned). */
  podIPs: string[];
  hostNetwork: boolean;
  phase: string;
  /** Being deleted: no longer a mirror source. */
  deleting: boolean;
  /** When its Ready condition last became True (ms since the epoch; seconds precision), if it is. */
  readySince?: number;
}

/** A node as the planner sees it. */
export interface LeanNode {
  name: string;
  uid: string;
  labels: Record<string, string>;
  /** `aws:///<zone>/<instance-id>` on EKS. */
  providerID: string | undefined;
  internalIP: string | undefined;
  ready: boolean;
}

/** A namespace as the planner sees it: its labels (targets may allow namespaces by selector). */
export interface LeanNamespace {
  name: string;
  labels: Record<string, string>;
}

/** A custom resource kept whole but for managed fields (they are small and few). */
export interface LeanCustom<Spec = unknown, Status = unknown> {
  namespace: string | undefined;
  name: string;
  uid: string;
  generation: number;
  resourceVersion: string;
  finalizers: string[];
  deleting: boolean;
  /** metadata.creationTimestamp (a time-boxed policy's duration counts from it). */
  createdAt: string | undefined;
  labels: Record<string, string>;
  spec: Spec;
  status: Status | undefined;
}

interface Meta {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  generation?: number;
  resourceVersion?: string;
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

function meta(o: RawObject): Meta {
  return o.metadata ?? {};
}

/** Copies a string map so the raw object can be dropped. */
function copyLabels(labels: Record<string, string> | undefined): Record<string, string> {
  return labels ? { ...labels } : {};
}

/** The lean copy of a pod. */
export function leanPod(o: RawObject): LeanPod {
  const m = meta(o);
  const spec = (o.spec ?? {}) as { nodeName?: string; hostNetwork?: boolean };
  const status = (o.status ?? {}) as {
    phase?: string;
    podIP?: string;
    podIPs?: { ip: string }[];
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
  };
  const ips = status.podIPs?.map((p) => p.ip) ?? (status.podIP ? [status.podIP] : []);
  const ready = status.conditions?.find((c) => c.type === "Ready" && c.status === "True");
  const readySince = ready?.lastTransitionTime ? Date.parse(ready.lastTransitionTime) : NaN;
  return {
    namespace: m.namespace ?? "",
    name: m.name ?? "",
    uid: m.uid ?? "",
    labels: copyLabels(m.labels),
    nodeName: spec.nodeName,
    podIPs: ips,
    hostNetwork: spec.hostNetwork === true,
    phase: status.phase ?? "Unknown",
    deleting: m.deletionTimestamp !== undefined,
    ...(Number.isFinite(readySince) ? { readySince } : {}),
  };
}

/** The lean copy of a node. */
export function leanNode(o: RawObject): LeanNode {
  const m = meta(o);
  const spec = (o.spec ?? {}) as { providerID?: string };
  const status = (o.status ?? {}) as {
    addresses?: { type: string; address: string }[];
    conditions?: { type: string; status: string }[];
  };
  return {
    name: m.name ?? "",
    uid: m.uid ?? "",
    labels: copyLabels(m.labels),
    providerID: spec.providerID,
    internalIP: status.addresses?.find((a) => a.type === "InternalIP")?.address,
    ready: status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
  };
}

/** The lean copy of a namespace. */
export function leanNamespace(o: RawObject): LeanNamespace {
  const m = meta(o);
  return { name: m.name ?? "", labels: copyLabels(m.labels) };
}

/** The lean copy of one of the operator's custom resources (spec validated later, by the caller). */
export function leanCustom<Spec, Status>(o: RawObject): LeanCustom<Spec, Status> {
  const m = meta(o);
  return {
    namespace: m.namespace,
    name: m.name ?? "",
    uid: m.uid ?? "",
    generation: m.generation ?? 0,
    resourceVersion: m.resourceVersion ?? "",
    finalizers: [...(m.finalizers ?? [])],
    deleting: m.deletionTimestamp !== undefined,
    createdAt: m.creationTimestamp,
    labels: copyLabels(m.labels),
    spec: o.spec as Spec,
    status: o.status as Status | undefined,
  };
}
