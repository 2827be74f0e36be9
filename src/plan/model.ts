/** The planner's working records, shared by its phases (not part of its output). */
import type { MirrorFilter, MirrorSession, NetworkInterface } from "../api/inventory.ts";
import type { PolicyFilterRule } from "../api/resources.ts";
import type { InventoryIndex } from "./inventory-index.ts";
import type { Located } from "./sources.ts";
import type { ResolvedTarget } from "./targets.ts";
import type { DesiredFilter, DesiredSession, PolicyInput, PolicyReport } from "./types.ts";

/** AWS's limit of sessions per source ENI. */
export const MAX_SESSIONS_PER_ENI = 3;

/** The highest `priority` a policy can have (the CRD's bound). */
export const MAX_PRIORITY = 1000;

/** AWS's quota of mirror sessions (and of filters) per account and Region; not adjustable. */
export const MAX_SESSIONS_PER_ACCOUNT = 10_000;

/** A policy with what the hot loops would otherwise recompute per pod. */
export interface RankedPolicy {
  policy: PolicyInput;
  id: string;
  /** Position in priority order; equal for policies `byPriority` cannot tell apart. */
  rank: number;
  /** The report its sources go to (the last one registered under its id, as a map lookup gave). */
  report: PolicyReport;
}

/** A located source of a policy (`owner`). */
export type Member = Located<RankedPolicy>;

/** Sources on one ENI that can share one session. */
export interface Group {
  groupKey: string;
  sessionKey: string;
  /** `shortHash(groupKey)`, the tail of the session and pod filter keys. */
  hash: string;
  eni: NetworkInterface;
  target: ResolvedTarget;
  priority: number;
  packetLength?: number;
  mirrorDns: boolean;
  userRules: PolicyFilterRule[];
  whole: boolean;
  /**
   * The AWS filter takes the ENI's traffic that the rules accept, without addresses: a node
   * source, or pods of a collector target that selects at the collector (`selectionMode: Eni`).
   */
  eniWide: boolean;
  /**
   * `selectionMode: Auto`: `eniWide` is decided when the filter is fitted (pod-precise where the
   * session already is and the pods have not changed, or where the operator asks to tighten).
   */
  auto: boolean;
  /** `hash53(groupKey)`, computed once per policy rather than once per group. */
  keyHash: number;
  /** A number per distinct group key in this plan: comparing long keys per pod was a hot spot. */
  gid: number;
  members: Member[];
}

/** Per-policy constants of its groups. */
export interface GroupKeys {
  target: ResolvedTarget;
  groupKey: string;
  hash: string;
  keyHash: number;
  gid: number;
}

/** An ENI's groups, and their `gid`s in a list beside them (read per pod, without the groups). */
export interface EniGroups {
  gids: number[];
  groups: Group[];
}

export interface Outcome {
  sessions: DesiredSession[];
  /** The owned session each of `sessions` matches, if any (looked up once, used thrice). */
  existing: (MirrorSession | undefined)[];
  /** The owned filter with each session's filter key, if any. */
  existingFilterOfSession: (MirrorFilter | undefined)[];
  /** The owned filter with each of `podFilters`' keys, if any. */
  podFilterExisting: (MirrorFilter | undefined)[];
  /** The group each of `sessions` serves. */
  groups: Group[];
  /** Pod filters: their keys embed the ENI, so only groups on one ENI could share one. */
  podFilters: DesiredFilter[];
  /** The group each of `podFilters` belongs to. */
  podFilterGroups: Group[];
  /** Where each ENI's sessions and pod filters begin in `sessions` and `podFilters`. */
  sessionRuns: number[];
  podFilterRuns: number[];
  /** Per ENI with `Auto` groups: whether one is ENI-wide now, and its groups' members (a signature). */
  auto: Map<string, AutoEni>;
  /** Whole-node filters, keyed by content and shared, with the owned filter of that key. */
  wholeFilters: Map<string, { filter: DesiredFilter; existing: MirrorFilter | undefined }>;
  /** Each use of a whole-node filter by a session's group, with its ENI (a filter may be used many times). */
  sharedUses: { eni: string; key: string }[];
}

/** What the plan says of an ENI whose groups select in `Auto` mode. */
export interface AutoEni {
  /** Some group's filter is ENI-wide (selection at the collector) rather than pod-precise. */
  loose: boolean;
  /** The groups' selected addresses: a change means the ENI's pods are changing. */
  members: string;
}

export interface ProgramCtx {
  idx: InventoryIndex;
  /** ENIs whose `Auto` groups may be tightened to pod-precise filters in this plan. */
  tighten: ReadonlySet<string>;
  /** The account's session quota, how many sessions seen are others', and what to say when full. */
  quota: { limit: number; others: number; message: string };
  reports: Map<string, PolicyReport>;
  /** Owned target id to its key (the first in the index's order), built on first use. */
  keyOfTarget: () => Map<string, string>;
  out: Outcome;
}
