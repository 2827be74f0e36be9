/** Condition types and reasons of the operator's resources: what status says and why. */

/** Condition types. `Ready` is derived from the others. */
export const ConditionType = {
  Ready: "Ready",
  SourcesResolved: "SourcesResolved",
  SessionsProgrammed: "SessionsProgrammed",
  WithinLimits: "WithinLimits",
} as const;

/** Why a source (pod or node) or a whole policy is not mirrored, or why a condition is as it is. */
export const Reason = {
  // Policy-level
  Suspended: "Suspended",
  /** The policy's time (spec.duration or spec.expiresAt) is up: its sessions are removed. */
  Expired: "Expired",
  TargetNotFound: "TargetNotFound",
  TargetNotReady: "TargetNotReady",
  NamespaceNotAllowed: "NamespaceNotAllowed",
  NodeSourcesNotAllowed: "NodeSourcesNotAllowed",
  InvalidSpec: "InvalidSpec",
  /** Being deleted, and what it made in AWS is not all gone yet (the finalizer stays). */
  Deleting: "Deleting",
  // Source-level
  PodNotRunning: "PodNotRunning",
  PodHasNoIp: "PodHasNoIp",
  HostNetworkPod: "HostNetworkPod",
  NodeNotFound: "NodeNotFound",
  MissingProviderId: "MissingProviderId",
  InstanceNotFound: "InstanceNotFound",
  UnsupportedInstanceType: "UnsupportedInstanceType",
  EniNotFound: "EniNotFound",
  UnsupportedEniType: "UnsupportedEniType",
  SourceIsTarget: "SourceIsTarget",
  EniFull: "EniFull",
  TargetFull: "TargetFull",
  FilterTooLarge: "FilterTooLarge",
  /** The account's sessions-per-Region quota went to higher-priority sessions. */
  QuotaFull: "QuotaFull",
  Shadowed: "Shadowed",
  // Positive
  Resolved: "Resolved",
  Programmed: "Programmed",
  /** Selected pods have not started yet (and nothing else is wrong): Argo CD shows Progressing. */
  Pending: "Pending",
  /** Sessions are being made or changed; a long converge says how far it is (`N of M`). */
  Programming: "Programming",
  Retrying: "Retrying",
  DryRun: "DryRun",
  WithinLimits: "WithinLimits",
} as const;

/** A reason value. */
export type ReasonValue = (typeof Reason)[keyof typeof Reason];

/** Reasons that mean "resolving the source failed" (the SourcesResolved condition). */
export const RESOLUTION_REASONS: ReadonlySet<string> = new Set([
  Reason.PodHasNoIp,
  Reason.HostNetworkPod,
  Reason.NodeNotFound,
  Reason.MissingProviderId,
  Reason.InstanceNotFound,
  Reason.UnsupportedInstanceType,
  Reason.EniNotFound,
  Reason.UnsupportedEniType,
  Reason.SourceIsTarget,
]);

/** Reasons that mean "an AWS limit was reached" (the WithinLimits condition). */
export const LIMIT_REASONS: ReadonlySet<string> = new Set([
  Reason.EniFull,
  Reason.TargetFull,
  Reason.FilterTooLarge,
  Reason.QuotaFull,
]);
