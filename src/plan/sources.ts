/** From a policy to its sources: pods or nodes, each located on the ENI that carries its traffic. */
import type { NetworkInterface } from "../api/inventory.ts";
import { mirrorSourceSupport } from "../api/instance-types.ts";
import { Reason } from "../api/reasons.ts";
import type { LeanNode, LeanPod } from "../k8s/lean.ts";
import { instanceIdFromProviderId, type InventoryIndex } from "./inventory-index.ts";
import { parseIp } from "./ipv4.ts";
import { compileSelector, matches } from "./selectors.ts";
import type { PolicyInput, SourceReport } from "./types.ts";

/** A source located on an ENI, for the one that asked (`owner`: the planner's policy record). */
export interface Located<O = unknown> {
  kind: SourceReport["kind"];
  /** `namespace/name` of a pod, or a node's name. */
  name: string;
  eni: NetworkInterface;
  /** The selected address, or "all" for a whole ENI. */
  ip: number | "all";
  /** The address as text; undefined for a whole ENI. */
  ipText: string | undefined;
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

/** Locates one pod; a report with a reason when it cannot be mirrored. */
export function locatePod<O>(pod: LeanPod, ctx: LocateCtx<O>): Located<O> | SourceReport {
  const name = `${pod.namespace}/${pod.name}`;
  const fail = (f: Failure): SourceReport => ({ kind: "Pod", name, ...f });
  const early = podFailure(pod, ctx);
  if (early) return fail(early);
  const addr = firstIpv4(pod);
  if (addr === undefined)
    return fail({
      reason: Reason.PodHasNoIp,
      message: pod.podIPs.length ? "only IPv6 addresses, not supported yet" : "no IP yet",
    });
  const found = pod.nodeName ? nodeOfPod(ctx, pod.nodeName) : undefined;
  if (!found)
    return fail({ reason: Reason.NodeNotFound, message: `node ${pod.nodeName ?? "(none)"} not found` });
  const inst = found.inst;
  if ("reason" in inst) return fail(inst);
  const eni = ctx.idx.eniHolding(addr.ip);
  // Membership by identity: comparing instance-id strings per pod cost more.
  if (!eni || !inst.enis.includes(eni)) {
    return fail({ reason: Reason.EniNotFound, message: `no ENI of ${inst.instanceId} holds ${addr.text}` });
  }
  const bad = checkEni(ctx, eni);
  if (bad) return fail(bad);
  return {
    kind: "Pod",
    name,
    eni,
    ip: addr.ip,
    ipText: addr.text,
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
