/** From TrafficMirrorTarget resources to the AWS targets copies can go to, with their capacity. */
import { eniTargetCapacity } from "../api/instance-types.ts";
import { Reason } from "../api/reasons.ts";
import type { LeanNode } from "../k8s/lean.ts";
import { byString } from "./hash.ts";
import { instanceIdFromProviderId, type InventoryIndex } from "./inventory-index.ts";
import { matchesMap } from "./selectors.ts";
import type { DesiredTarget, TargetInput, TargetRef } from "./types.ts";

/** One AWS target a TrafficMirrorTarget resolves to. */
export interface AwsTargetSlot {
  ref: TargetRef;
  /** Set when the plan makes it. */
  desired?: DesiredTarget;
  networkInterfaceId?: string;
  zone?: string;
  capacity: number;
  /** Sessions already counted against it (others' sessions, then this plan's). */
  used: number;
}

/** A resolved TrafficMirrorTarget. */
export interface ResolvedTarget {
  input: TargetInput;
  slots: AwsTargetSlot[];
  problem?: { reason: string; message: string };
}

/** Sessions others made that already use an AWS target. */
function foreignLoad(idx: InventoryIndex, id: string | undefined): number {
  return id ? idx.foreignSessionsOnTarget(id).length : 0;
}

interface Ctx {
  idx: InventoryIndex;
  nodes: readonly LeanNode[];
  /** See `PlanInput.collectorKernelMode`. */
  collectorKernelMode?: boolean;
}

function slot(
  ctx: Ctx,
  desired: DesiredTarget,
  extra: Partial<AwsTargetSlot> & { capacity: number },
): AwsTargetSlot {
  const existing = ctx.idx.ownedTargets.get(desired.key);
  return {
    ref: { key: desired.key },
    desired,
    used: foreignLoad(ctx.idx, existing?.trafficMirrorTargetId),
    ...extra,
  };
}

function collectorSlots(ctx: Ctx, t: TargetInput, selector: Record<string, string>): AwsTargetSlot[] {
  const slots: AwsTargetSlot[] = [];
  for (const node of ctx.nodes) {
    if (!matchesMap(selector, node.labels)) continue;
    const instanceId = instanceIdFromProviderId(node.providerID);
    const instance = instanceId ? ctx.idx.instance(instanceId) : undefined;
    const eni = instance ? ctx.idx.enisOf(instance.instanceId)[0] : undefined;
    if (!instance || !eni) continue;
    const desired: DesiredTarget = {
      key: `target-${t.name}-${eni.networkInterfaceId}`,
      owners: [t.name],
      type: "network-interface",
      networkInterfaceId: eni.networkInterfaceId,
      description: `traffic-mirror-operator collector on ${node.name}`,
    };
    slots.push(
      slot(ctx, desired, {
        networkInterfaceId: eni.networkInterfaceId,
        zone: instance.availabilityZone,
        capacity: eniTargetCapacity(instance.instanceType),
      }),
    );
  }
  return slots.sort((a, b) => byString(a.networkInterfaceId ?? "", b.networkInterfaceId ?? ""));
}

function singleSlot(ctx: Ctx, t: TargetInput): AwsTargetSlot | undefined {
  const s = t.spec;
  const base = {
    key: `target-${t.name}`,
    owners: [t.name],
    description: `traffic-mirror-operator target ${t.name}`,
  };
  if (s.networkLoadBalancerArn) {
    return slot(
      ctx,
      { ...base, type: "network-load-balancer", networkLoadBalancerArn: s.networkLoadBalancerArn },
      { capacity: Infinity },
    );
  }
  if (s.gatewayLoadBalancerEndpointId) {
    return slot(
      ctx,
      {
        ...base,
        type: "gateway-load-balancer-endpoint",
        gatewayLoadBalancerEndpointId: s.gatewayLoadBalancerEndpointId,
      },
      { capacity: Infinity },
    );
  }
  if (s.networkInterfaceId) {
    const eni = ctx.idx.eni(s.networkInterfaceId);
    const type = eni?.instanceId ? ctx.idx.instance(eni.instanceId)?.instanceType : undefined;
    return slot(
      ctx,
      { ...base, type: "network-interface", networkInterfaceId: s.networkInterfaceId },
      {
        networkInterfaceId: s.networkInterfaceId,
        zone: eni?.availabilityZone,
        capacity: eniTargetCapacity(type),
      },
    );
  }
  if (s.trafficMirrorTargetId) {
    const existing = ctx.idx.target(s.trafficMirrorTargetId);
    const capacity = existing?.type === "network-interface" ? 10 : Infinity;
    return {
      ref: { id: s.trafficMirrorTargetId },
      networkInterfaceId: existing?.networkInterfaceId,
      capacity,
      used: foreignLoad(ctx.idx, s.trafficMirrorTargetId),
    };
  }
  return undefined;
}

/** Resolves every target resource that is not being deleted. */
export function resolveTargets(targets: readonly TargetInput[], ctx: Ctx): Map<string, ResolvedTarget> {
  const out = new Map<string, ResolvedTarget>();
  for (const t of [...targets].sort((a, b) => byString(a.name, b.name))) {
    if (t.deleting) continue;
    if (t.spec.collector) {
      const slots = collectorSlots(ctx, t, t.spec.collector.nodeSelector);
      const problem =
        slots.length === 0
          ? {
              reason: Reason.TargetNotReady,
              message: "no node matching the collector nodeSelector has a known EC2 instance and ENI",
            }
          : ctx.collectorKernelMode && t.spec.collector.selectionMode !== "Pod"
            ? {
                reason: Reason.TargetNotReady,
                message: `selectionMode ${t.spec.collector.selectionMode} needs the collector in userspace mode: in kernel mode its vxlan devices would get every pod's packets on the ENI; use selectionMode Pod`,
              }
            : undefined;
      out.set(t.name, { input: t, slots, problem });
      continue;
    }
    const s = singleSlot(ctx, t);
    out.set(t.name, {
      input: t,
      slots: s ? [s] : [],
      problem: s ? undefined : { reason: Reason.InvalidSpec, message: "no destination set" },
    });
  }
  return out;
}

/**
 * Picks the AWS target for a session: the one it already uses if still valid, else the least
 * loaded in the same zone, else the least loaded anywhere. Undefined when all are full.
 */
export function pickSlot(
  slots: readonly AwsTargetSlot[],
  zone: string | undefined,
  current?: TargetRef,
): AwsTargetSlot | undefined {
  // Runs once per session: plain loops, no copies. "Least loaded" is the first slot, in slot
  // order, that no other free slot beats (what a stable sort would put first).
  if (current) for (const s of slots) if (s.used < s.capacity && sameRef(s.ref, current)) return s;
  let sameZone: AwsTargetSlot | undefined;
  let any: AwsTargetSlot | undefined;
  for (const s of slots) {
    if (s.used >= s.capacity) continue;
    if (!any || lighter(s, any)) any = s;
    if (s.zone !== undefined && s.zone === zone && (!sameZone || lighter(s, sameZone))) sameZone = s;
  }
  return sameZone ?? any;
}

/** Whether two refs name the same AWS target. */
export function sameRef(a: TargetRef, b: TargetRef): boolean {
  return ("key" in a && "key" in b && a.key === b.key) || ("id" in a && "id" in b && a.id === b.id);
}

function lighter(a: AwsTargetSlot, b: AwsTargetSlot): boolean {
  const ra = a.used / a.capacity;
  const rb = b.used / b.capacity;
  return ra < rb || (ra === rb && a.used < b.used);
}
