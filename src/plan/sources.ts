/** From a policy to its sources: pods or nodes, each located on the ENI that carries its traffic. */
import type { NetworkInterface } from "../api/inventory.ts";
import { mirrorSourceSupport } from "../api/instance-types.ts";
import { Reason } from "../api/reasons.ts";
import type { LeanNode, LeanPod } from "../k8s/lean.ts";
import { instanceIdFromProviderId, type InventoryIndex } from "./inventory-index.ts";
import { parseIp } from "./ipv4.ts";
import { isIpv6Text, parseIp6 } from "./ipv6.ts";
import { compileSelector, matches } from "./selectors.ts";
import type { PolicyInput, SourceReport } from "./types.ts";

/** A source located on an ENI, for the one that asked (`owner`: the planner's policy record). */
export interface Located<O = unknown> {
  kind: SourceReport["kind"];
  /** `namespace/name` of a pod, or a node's name. */
  name: string;
  eni: NetworkInterface;
  /** The selected IPv4 address, "all" for a whole ENI, undefined for a pod with only IPv6. */
  ip: number | "all" | undefined;
  /** The address as text (the IPv4 one, or the IPv6 one of a pod with only IPv6); undefined for a whole ENI. */
  ipText: string | undefined;
  /** The selected IPv6 address, if the pod has one on the same ENI. */
  ip6: bigint | undefined;
  /** `ip6` as text. */
  ip6Text: string | undefined;
  nodeName: string;
  instanceId: string;
  owner: O;
}

/** What locating needs. */
export interface LocateCtx<O = unknown> {
  /** Carried into every `Located`, so the caller needs no wrapper per source. */
  owner: O;
  idx: InventoryIndex;
  nodesByName: Map<string, LeanNode>;
  /** ENIs that are targets (never sources). */
  targetEnis: Set<string>;
  allowNodeSources: boolean;
  /** Per-node lookups, shared across policies within one plan. */
  nodeCache?: Map<string, Instance | Failure>;
  /** Pod `nodeName` to its node and that node's lookup, shared likewise. */
  podNodeCache?: Map<string, { node: LeanNode; inst: Instance | Failure } | null>;
}

/** A node's EC2 instance and its ENIs (membership in `enis` is `eni.instanceId === instanceId`). */
interface Instance {
  instanceId: string;
  enis: readonly NetworkInterface[];
}

/** Why a source cannot be located. */
export type Failure = { reason: string; message: string };

function instanceOf(ctx: LocateCtx, node: LeanNode): Instance | Failure {
  const cached = ctx.nodeCache?.get(node.name);
  if (cached) return cached;
  const found = lookUpInstance(ctx, node);
  ctx.nodeCache?.set(node.name, found);
  return found;
}

function lookUpInstance(ctx: LocateCtx, node: LeanNode): Instance | Failure {
  const instanceId = instanceIdFromProviderId(node.providerID);
  if (!instanceId) {
    return {
      reason: Reason.MissingProviderId,
      message: `node ${node.name} has no EC2 providerID (aws:///zone/i-…)`,
    };
  }
  const instance = ctx.idx.instance(instanceId);
  if (!instance)
    return {
      reason: Reason.InstanceNotFound,
      message: `instance ${instanceId} of node ${node.name} was not found in EC2`,
    };
  const support = mirrorSourceSupport(instance.instanceType);
  if (!support.supported)
    return { reason: Reason.UnsupportedInstanceType, message: support.message ?? instance.instanceType };
  return { instanceId, enis: ctx.idx.enisOf(instanceId) };
}

function checkEni(ctx: LocateCtx, eni: NetworkInterface): Failure | undefined {
  if (eni.interfaceType !== "interface") {
    return {
      reason: Reason.UnsupportedEniType,
      message: `${eni.networkInterfaceId} is a ${eni.interfaceType} ENI (security groups for pods); only ENIs of type interface can be mirror sources`,
    };
  }
  if (ctx.targetEnis.has(eni.networkInterfaceId)) {
    return {
      reason: Reason.SourceIsTarget,
      message: `${eni.networkInterfaceId} is a mirror target and cannot also be a source`,
    };
  }
  return undefined;
}

function podFailure(pod: LeanPod, ctx: LocateCtx): Failure | undefined {
  if (pod.phase !== "Running") return { reason: Reason.PodNotRunning, message: `pod is ${pod.phase}` };
  if (pod.hostNetwork && !ctx.allowNodeSources) {
    return {
      reason: Reason.HostNetworkPod,
      message:
        "the pod uses the host network, so mirroring it mirrors its node; the target does not allow node sources",
    };
  }
  return undefined;
}

function nodeOfPod(
  ctx: LocateCtx,
  nodeName: string,
): { node: LeanNode; inst: Instance | Failure } | undefined {
  const cached = ctx.podNodeCache?.get(nodeName);
  if (cached !== undefined) return cached ?? undefined;
  const node = ctx.nodesByName.get(nodeName);
  const found = node ? { node, inst: instanceOf(ctx, node) } : null;
  ctx.podNodeCache?.set(nodeName, found);
  return found ?? undefined;
}

/** The first IPv4 address of a pod, as text and number. */
function firstIpv4(pod: LeanPod): { text: string; ip: number } | undefined {
  for (const text of pod.podIPs) {
    const ip = parseIp(text);
    if (ip !== undefined) return { text, ip };
  }
  return undefined;
}

/** The first IPv6 address of a pod, as text (as EC2 writes it: the planner compares texts) and number. */
function firstIpv6(pod: LeanPod): { text: string; ip: bigint } | undefined {
  for (const text of pod.podIPs) {
    const ip = isIpv6Text(text) ? parseIp6(text) : undefined;
    if (ip !== undefined) return { text, ip };
  }
  return undefined;
}

/**
 * The ENI holding a pod's address (its IPv4 one if it has one, else its IPv6 one): where its
 * traffic is mirrored.
 */
export function eniOfPod(idx: InventoryIndex, pod: LeanPod): NetworkInterface | undefined {
  const v4 = firstIpv4(pod);
  if (v4) return idx.eniHolding(v4.ip);
  const v6 = firstIpv6(pod);
  return v6 && idx.eniHolding6(v6.ip);
}

/** A pod's addresses: its first IPv4 one and its first IPv6 one, either possibly absent. */
interface PodAddresses {
  v4: { text: string; ip: number } | undefined;
  v6: { text: string; ip: bigint } | undefined;
}

function addressesOf(pod: LeanPod): PodAddresses | Failure {
  const v4 = firstIpv4(pod);
  // A pod with one address (nearly all) is not searched twice.
  const v6 = v4 === undefined || pod.podIPs.length > 1 ? firstIpv6(pod) : undefined;
  if (v4 === undefined && v6 === undefined)
    return {
      reason: Reason.PodHasNoIp,
      message: pod.podIPs.length ? `no IPv4 or IPv6 address in ${pod.podIPs.join(", ")}` : "no IP yet",
    };
  return { v4, v6 };
}

/** Locates one pod; a report with a reason when it cannot be mirrored. */
export function locatePod<O>(pod: LeanPod, ctx: LocateCtx<O>): Located<O> | SourceReport {
  const name = `${pod.namespace}/${pod.name}`;
  const fail = (f: Failure): SourceReport => ({ kind: "Pod", name, ...f });
  const early = podFailure(pod, ctx);
  if (early) return fail(early);
  const addrs = addressesOf(pod);
  if ("reason" in addrs) return fail(addrs);
  const { v4: addr, v6 } = addrs;
  const found = pod.nodeName ? nodeOfPod(ctx, pod.nodeName) : undefined;
  if (!found)
    return fail({ reason: Reason.NodeNotFound, message: `node ${pod.nodeName ?? "(none)"} not found` });
  const inst = found.inst;
  if ("reason" in inst) return fail(inst);
  const eni = addr ? ctx.idx.eniHolding(addr.ip) : ctx.idx.eniHolding6(v6!.ip);
  // Membership by identity: comparing instance-id strings per pod cost more.
  if (!eni || !inst.enis.includes(eni)) {
    const text = (addr ?? v6)!.text;
    return fail({ reason: Reason.EniNotFound, message: `no ENI of ${inst.instanceId} holds ${text}` });
  }
  const bad = checkEni(ctx, eni);
  if (bad) return fail(bad);
  // A dual-stack pod's IPv6 address is mirrored with its IPv4 one when the same ENI holds both.
  const six = v6 && (addr === undefined || ctx.idx.eniHolding6(v6.ip) === eni) ? v6 : undefined;
  return {
    kind: "Pod",
    name,
    eni,
    ip: addr?.ip,
    ipText: (addr ?? v6)!.text,
    ip6: six?.ip,
    ip6Text: six?.text,
    nodeName: found.node.name,
    instanceId: inst.instanceId,
    owner: ctx.owner,
  };
}

/** Locates a whole node: one entry per ENI of its instance. */
export function locateNode<O>(node: LeanNode, ctx: LocateCtx<O>): (Located<O> | SourceReport)[] {
  const report: SourceReport = { kind: "Node", name: node.name };
  const inst = instanceOf(ctx, node);
  if ("reason" in inst) return [{ ...report, ...inst }];
  const enis = inst.enis;
  if (enis.length === 0)
    return [{ ...report, reason: Reason.EniNotFound, message: `${inst.instanceId} has no ENIs` }];
  return enis.map((eni): Located<O> | SourceReport => {
    const bad = checkEni(ctx, eni);
    if (bad) return { ...report, ...bad };
    // The same keys in the same order as a located pod: one object shape for both.
    return {
      kind: "Node",
      name: node.name,
      eni,
      ip: "all",
      ipText: undefined,
      ip6: undefined,
      ip6Text: undefined,
      nodeName: node.name,
      instanceId: inst.instanceId,
      owner: ctx.owner,
    };
  });
}

const TERMINAL: ReadonlySet<string> = new Set(["Succeeded", "Failed"]);

/** The pods or nodes a policy selects. */
export function selectSources(
  p: PolicyInput,
  pods: readonly LeanPod[],
  nodes: readonly LeanNode[],
): { pods: LeanPod[]; nodes: LeanNode[] } {
  if (p.spec.nodeSelector)
    return { pods: [], nodes: nodes.filter((n) => matches(p.spec.nodeSelector, n.labels)) };
  return { pods: pods.filter(podSelector(p)), nodes: [] };
}

/** Whether a pod policy selects a pod. */
export function podSelector(p: PolicyInput): (pod: LeanPod) => boolean {
  const selects = compileSelector(p.spec.podSelector);
  // A pod that is going or has finished (a completed Job's) carries no traffic: not selected, as
  // a Service's endpoints leave it out.
  return (x) => x.namespace === p.namespace && !x.deleting && !TERMINAL.has(x.phase) && selects(x.labels);
}
