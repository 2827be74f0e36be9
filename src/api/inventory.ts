/**
 * The EC2 inventory in the project's own types: what the `MirrorApi` port returns and what the
 * planner reads. Field names follow EC2's, in camelCase; only the fields the operator uses.
 */

/** An EC2 instance backing a Kubernetes node. */
export interface Instance {
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  subnetId?: string;
  vpcId?: string;
}

/** EC2's `InterfaceType`; only `interface` is a documented mirror source. */
export type NetworkInterfaceType = "interface" | "trunk" | "branch" | "efa" | (string & {});

/** An elastic network interface with the addresses it holds. */
export interface NetworkInterface {
  networkInterfaceId: string;
  /** The instance it is attached to, if any. */
  instanceId?: string;
  /** 0 for the primary ENI of an instance. */
  deviceIndex?: number;
  interfaceType: NetworkInterfaceType;
  availabilityZone: string;
  subnetId: string;
  vpcId: string;
  description: string;
  /** The primary private IPv4 address (the outer source IP of mirrored copies). */
  primaryIp: string;
  /** Every private IPv4 address on the ENI, primary first. */
  privateIps: string[];
  /** IPv4 prefixes delegated to the ENI (prefix delegation), e.g. `10.0.1.16/28`. */
  ipv4Prefixes: string[];
  /** IPv6 addresses of the ENI (EC2's `Ipv6Addresses`); absent or empty when it has none. */
  ipv6Addresses?: string[];
  /**
   * IPv6 prefixes delegated to the ENI (EC2's `Ipv6Prefixes`, always /80), e.g.
   * `2600:1f14:abc:de00:1234::/80`: on an EKS IPv6 cluster the pods' addresses come from these.
   */
  ipv6Prefixes?: string[];
  tags: Record<string, string>;
}

/** Kinds of Traffic Mirror target. */
export type MirrorTargetType =
  "network-interface" | "network-load-balancer" | "gateway-load-balancer-endpoint";

/** A Traffic Mirror target (`tmt-…`). */
export interface MirrorTarget {
  trafficMirrorTargetId: string;
  type: MirrorTargetType;
  networkInterfaceId?: string;
  networkLoadBalancerArn?: string;
  gatewayLoadBalancerEndpointId?: string;
  description?: string;
  ownerId?: string;
  tags: Record<string, string>;
}

/** A port range of a filter rule (inclusive). */
export interface PortRange {
  fromPort: number;
  toPort: number;
}

/** Direction of a filter rule, from the source ENI's point of view. */
export type TrafficDirection = "ingress" | "egress";

/** One Traffic Mirror filter rule (`tmfr-…`). */
export interface FilterRule {
  /** Absent on a desired rule that does not exist yet. */
  trafficMirrorFilterRuleId?: string;
  direction: TrafficDirection;
  /** Unique per direction within a filter; lowest is evaluated first. */
  ruleNumber: number;
  action: "accept" | "reject";
  /** IANA protocol number; absent means all protocols. */
  protocol?: number;
  sourceCidrBlock: string;
  destinationCidrBlock: string;
  sourcePortRange?: PortRange;
  destinationPortRange?: PortRange;
  description?: string;
}

/** A Traffic Mirror filter (`tmf-…`) with its rules. */
export interface MirrorFilter {
  trafficMirrorFilterId: string;
  ingressRules: FilterRule[];
  egressRules: FilterRule[];
  /** `amazon-dns` when DNS traffic is mirrored. */
  networkServices: "amazon-dns"[];
  description?: string;
  tags: Record<string, string>;
}

/** A Traffic Mirror session (`tms-…`). */
export interface MirrorSession {
  trafficMirrorSessionId: string;
  /** The source ENI. */
  networkInterfaceId: string;
  trafficMirrorTargetId: string;
  trafficMirrorFilterId: string;
  /** 1–32766; 1 is evaluated first. Unique per source ENI. */
  sessionNumber: number;
  /** Bytes kept of each packet; absent means the whole packet. */
  packetLength?: number;
  /** The VXLAN VNI the copies carry. */
  virtualNetworkId: number;
  description?: string;
  ownerId?: string;
  tags: Record<string, string>;
}

/** Everything the planner needs to know about EC2. */
export interface Ec2Inventory {
  instances: Instance[];
  networkInterfaces: NetworkInterface[];
  targets: MirrorTarget[];
  filters: MirrorFilter[];
  /** All sessions on the ENIs in `networkInterfaces`, owned by the operator or not. */
  sessions: MirrorSession[];
}
