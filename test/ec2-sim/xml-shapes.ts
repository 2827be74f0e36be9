/** EC2's XML shapes of the resources, as the SDK's schemas name them. */
import type {
  FilterRule,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../../src/api/inventory.ts";
import type { XmlObject } from "./query.ts";

const tagSet = (tags: Record<string, string>): XmlObject[] =>
  Object.entries(tags).map(([key, value]) => ({ key, value }));

/** A target. */
export function targetXml(t: MirrorTarget): XmlObject {
  return {
    trafficMirrorTargetId: t.trafficMirrorTargetId,
    networkInterfaceId: t.networkInterfaceId,
    networkLoadBalancerArn: t.networkLoadBalancerArn,
    gatewayLoadBalancerEndpointId: t.gatewayLoadBalancerEndpointId,
    type: t.type,
    description: t.description,
    ownerId: t.ownerId,
    tagSet: tagSet(t.tags),
  };
}

/** A filter rule. */
export function ruleXml(r: FilterRule, filterId: string): XmlObject {
  const range = (p?: { fromPort: number; toPort: number }) =>
    p ? { fromPort: p.fromPort, toPort: p.toPort } : undefined;
  return {
    trafficMirrorFilterRuleId: r.trafficMirrorFilterRuleId,
    trafficMirrorFilterId: filterId,
    trafficDirection: r.direction,
    ruleNumber: r.ruleNumber,
    ruleAction: r.action,
    protocol: r.protocol,
    destinationPortRange: range(r.destinationPortRange),
    sourcePortRange: range(r.sourcePortRange),
    destinationCidrBlock: r.destinationCidrBlock,
    sourceCidrBlock: r.sourceCidrBlock,
    description: r.description,
  };
}

/** A filter with its rules. */
export function filterXml(f: MirrorFilter): XmlObject {
  return {
    trafficMirrorFilterId: f.trafficMirrorFilterId,
    ingressFilterRuleSet: f.ingressRules.map((r) => ruleXml(r, f.trafficMirrorFilterId)),
    egressFilterRuleSet: f.egressRules.map((r) => ruleXml(r, f.trafficMirrorFilterId)),
    networkServiceSet: f.networkServices,
    description: f.description,
    tagSet: tagSet(f.tags),
  };
}

/** A session. */
export function sessionXml(s: MirrorSession): XmlObject {
  return {
    trafficMirrorSessionId: s.trafficMirrorSessionId,
    trafficMirrorTargetId: s.trafficMirrorTargetId,
    trafficMirrorFilterId: s.trafficMirrorFilterId,
    networkInterfaceId: s.networkInterfaceId,
    ownerId: s.ownerId,
    packetLength: s.packetLength,
    sessionNumber: s.sessionNumber,
    virtualNetworkId: s.virtualNetworkId,
    description: s.description,
    tagSet: tagSet(s.tags),
  };
}

/** An instance inside a reservation. */
export function instanceXml(i: Instance): XmlObject {
  return {
    instanceId: i.instanceId,
    instanceType: i.instanceType,
    placement: { availabilityZone: i.availabilityZone },
    subnetId: i.subnetId,
    vpcId: i.vpcId,
  };
}

/** An ENI. */
export function eniXml(e: NetworkInterface): XmlObject {
  return {
    networkInterfaceId: e.networkInterfaceId,
    interfaceType: e.interfaceType,
    availabilityZone: e.availabilityZone,
    subnetId: e.subnetId,
    vpcId: e.vpcId,
    description: e.description,
    privateIpAddress: e.primaryIp,
    attachment: e.instanceId
      ? { instanceId: e.instanceId, deviceIndex: e.deviceIndex ?? 0, status: "attached" }
      : undefined,
    privateIpAddressesSet: e.privateIps.map((ip) => ({ privateIpAddress: ip, primary: ip === e.primaryIp })),
    ipv4PrefixSet: e.ipv4Prefixes.map((p) => ({ ipv4Prefix: p })),
    ipv6AddressesSet: (e.ipv6Addresses ?? []).map((a) => ({ ipv6Address: a, isPrimaryIpv6: false })),
    ipv6PrefixSet: (e.ipv6Prefixes ?? []).map((p) => ({ ipv6Prefix: p })),
    tagSet: tagSet(e.tags),
  };
}
