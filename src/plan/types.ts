/** The planner's input and output. */
import type { Ec2Inventory, MirrorTargetType } from "../api/inventory.ts";
import type { PolicySpec, TargetSpec } from "../api/resources.ts";
import type { VniMap } from "../api/vni-map.ts";
import type { LeanNode, LeanPod } from "../k8s/lean.ts";
import type { DesiredRule } from "./filters.ts";
import type { AutoEni } from "./model.ts";
import type { RuleEdit } from "./rule-edits.ts";

/** A TrafficMirrorPolicy as the planner sees it (spec already validated). */
export interface PolicyInput {
  namespace: string;
  name: string;
  generation: number;
  deleting: boolean;
  spec: PolicySpec;
  /** Set once a time-boxed policy's end has passed (the controller reads the clock, not the plan). */
  ended?: { at: string; by: "duration" | "expiresAt" };
}

/** A TrafficMirrorTarget as the planner sees it (spec already validated). */
export interface TargetInput {
  name: string;
  generation: number;
  deleting: boolean;
  spec: TargetSpec;
}

/** A namespace's labels, for targets that allow namespaces by selector. */
export interface NamespaceInput {
  name: string;
  labels: Record<string, string>;
}

/** Everything one plan reads. */
export interface PlanInput {
  clusterName: string;
  policies: readonly PolicyInput[];
  targets: readonly TargetInput[];
  namespaces: readonly NamespaceInput[];
  pods: readonly LeanPod[];
  nodes: readonly LeanNode[];
  inventory: Ec2Inventory;
  /**
   * Sessions this cluster may hold in the account and Region: AWS's quota (10,000 sessions, and
   * 10,000 filters) by default. Lower it when other clusters or tools share the account; sessions
   * of others seen on this cluster's ENIs are subtracted as well.
   */
  sessionBudget?: number;
  /**
   * The collectors run in kernel mode (one vxlan device per session, for an IDS): they cannot drop
   * unselected pods' packets, so collector targets with `selectionMode: Eni` are refused.
   */
  collectorKernelMode?: boolean;
  /**
   * ENIs whose groups of `selectionMode: Auto` targets may get pod-precise filters now (the
   * controller picks ENIs whose pods have been quiet, a few per cycle, to spend the API budget
   * slowly). Elsewhere an Auto group keeps a pod-precise filter only while its pods do not change.
   */
  tightenEnis?: ReadonlySet<string>;
}

/** Where a session's copies go: a target the plan makes (by key) or one that exists (by id). */
export type TargetRef = { key: string } | { id: string };

/** An AWS target the operator should own. */
export interface DesiredTarget {
  key: string;
  owners: string[];
  type: MirrorTargetType;
  networkInterfaceId?: string;
  networkLoadBalancerArn?: string;
  gatewayLoadBalancerEndpointId?: string;
  description: string;
}

/** An AWS filter the operator should own. */
export interface DesiredFilter {
  key: string;
  rules: DesiredRule[];
  networkServices: "amazon-dns"[];
  description: string;
}

/** An AWS session the operator should own. */
export interface DesiredSession {
  key: string;
  networkInterfaceId: string;
  target: TargetRef;
  filterKey: string;
  sessionNumber: number;
  packetLength?: number;
  virtualNetworkId: number;
  /** Policies served, `namespace/name`. */
  owners: string[];
  nodeName?: string;
  instanceId?: string;
  /** Mirrored pods (`namespace/name` and IP), empty for a whole-node session. */
  pods: { name: string; ip: string }[];
  description: string;
}

/** Changes to a session that exists. */
export interface SessionChange {
  sessionId: string;
  key: string;
  target?: TargetRef;
  filterKey?: string;
  sessionNumber?: number;
  packetLength?: number | null;
  virtualNetworkId?: number;
}

/**
 * An owned filter whose rules or services drifted from its key's content, and the fewest calls
 * that fix it, planned from the inventory's copy of the filter (applied without reading it again).
 */
export interface FilterEdit {
  filterId: string;
  key: string;
  /** In order: deletes, then modifies, then creates (`planRuleEdits`). */
  rules: RuleEdit[];
  addNetworkServices: "amazon-dns"[];
  removeNetworkServices: "amazon-dns"[];
  /** A digest of the filter's rule ids before the edit, part of the created rules' ClientTokens. */
  state: string;
}

/** What to do in AWS, in the order `apply` does it. */
export interface PlanDiff {
  deleteSessions: { sessionId: string; key: string }[];
  createTargets: DesiredTarget[];
  createFilters: DesiredFilter[];
  /** Owned filters whose rules drifted from their key's content: their rules are edited in place. */
  editFilters: FilterEdit[];
  modifySessions: SessionChange[];
  createSessions: DesiredSession[];
  deleteFilters: { filterId: string; key: string }[];
  deleteTargets: { targetId: string; key: string }[];
}

/** A pod or node that a policy selected, and what became of it. */
export interface SourceReport {
  kind: "Pod" | "Node";
  name: string;
  /** Set when mirrored. */
  sessionKey?: string;
  networkInterfaceId?: string;
  /** Set when not mirrored. */
  reason?: string;
  message?: string;
}

/** What the plan says about one policy. */
export interface PolicyReport {
  /** `namespace/name`. */
  policy: string;
  /** A problem with the whole policy (suspended, target missing, not allowed …). */
  blocked?: { reason: string; message: string };
  sources: SourceReport[];
  sessionKeys: string[];
  /** Sessions of other policies, on the same ENI and ahead in order, that take this policy's packets. */
  shadowedBy: { networkInterfaceId: string; policies: string[] }[];
}

/** What the plan says about one target. */
export interface TargetReport {
  name: string;
  problem?: { reason: string; message: string };
  awsTargets: {
    key?: string;
    id?: string;
    networkInterfaceId?: string;
    sessions: number;
    capacity: number;
  }[];
  policies: string[];
}

/** The planner's answer. */
export interface Plan {
  desired: { targets: DesiredTarget[]; filters: DesiredFilter[]; sessions: DesiredSession[] };
  diff: PlanDiff;
  policies: Map<string, PolicyReport>;
  targets: Map<string, TargetReport>;
  vniMap: VniMap;
  /** ENIs with groups of `selectionMode: Auto` targets, and their state (absent when there are none). */
  auto?: Map<string, AutoEni>;
}
