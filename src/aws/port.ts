/**
 * `MirrorApi`: the narrow port of only the EC2 calls the operator makes, in the project's own
 * types. The adapter on `@aws-sdk/client-ec2` is `ec2-adapter.ts`; paging and batching live there.
 */
import type {
  FilterRule,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../api/inventory.ts";
import type { FilterEdit } from "../plan/types.ts";

/** A target to create. */
export interface CreateTargetInput {
  key: string;
  owners: string[];
  networkInterfaceId?: string;
  networkLoadBalancerArn?: string;
  gatewayLoadBalancerEndpointId?: string;
  description: string;
}

/** A filter to create, with its rules and network services. */
export interface CreateFilterInput {
  key: string;
  rules: Omit<FilterRule, "trafficMirrorFilterRuleId">[];
  networkServices: "amazon-dns"[];
  description: string;
}

/** A session to create, with ids resolved. */
export interface CreateSessionInput {
  key: string;
  owners: string[];
  networkInterfaceId: string;
  trafficMirrorTargetId: string;
  trafficMirrorFilterId: string;
  sessionNumber: number;
  packetLength?: number;
  virtualNetworkId: number;
  description: string;
}

/** Changes to a session, with ids resolved; `packetLength: null` removes it. */
export interface ModifySessionInput {
  trafficMirrorTargetId?: string;
  trafficMirrorFilterId?: string;
  sessionNumber?: number;
  packetLength?: number | null;
  virtualNetworkId?: number;
}

/** The EC2 calls the operator makes. */
export interface MirrorApi {
  describeInstances(instanceIds: readonly string[]): Promise<Instance[]>;
  describeNetworkInterfaces(instanceIds: readonly string[]): Promise<NetworkInterface[]>;
  /** Sessions on these ENIs, whoever owns them. */
  describeSessionsOnInterfaces(eniIds: readonly string[]): Promise<MirrorSession[]>;
  /** Targets, filters and sessions tagged for this cluster. */
  describeOwned(): Promise<{ targets: MirrorTarget[]; filters: MirrorFilter[]; sessions: MirrorSession[] }>;
  /** Targets by id (for existing targets named in specs and targets of foreign sessions). */
  describeTargets(ids: readonly string[]): Promise<MirrorTarget[]>;
  createTarget(t: CreateTargetInput): Promise<MirrorTarget>;
  deleteTarget(id: string): Promise<void>;
  /** Returns the filter as made: its rules with their ids. */
  createFilter(f: CreateFilterInput): Promise<MirrorFilter>;
  /**
   * Runs a planned edit of a filter's rules and services, in order, without reading the filter.
   * Returns the rules it created, with their ids.
   */
  editFilter(e: FilterEdit): Promise<FilterRule[]>;
  deleteFilter(id: string): Promise<void>;
  createSession(s: CreateSessionInput): Promise<MirrorSession>;
  modifySession(id: string, changes: ModifySessionInput): Promise<void>;
  deleteSession(id: string): Promise<void>;
}
