/** Status of policies and targets from a plan and what applying it did. */
import { ConditionType, LIMIT_REASONS, Reason, RESOLUTION_REASONS } from "../api/reasons.ts";
import type { PolicyStatus, TargetStatus } from "../api/resources.ts";
import { deriveReady, mergeConditions, type Condition, type ConditionUpdate } from "../k8s/conditions.ts";
import type { InventoryIndex } from "../plan/inventory-index.ts";
import { isIpv6Text } from "../plan/ipv6.ts";
import type { DesiredSession, PolicyReport, TargetReport } from "../plan/types.ts";

/** How applying went, for the SessionsProgrammed condition. */
export interface ProgrammingOutcome {
  dryRun: boolean;
  /** Keys of sessions whose change failed this cycle. */
  failedKeys: ReadonlySet<string>;
  /** A failure not tied to a session (a filter or target step). */
  otherFailures: number;
  /** Session ids by key, after apply. */
  sessionIds: ReadonlyMap<string, string>;
  /** Keys of sessions whose changes wait for a later cycle (the cycle's time ran out). */
  pendingKeys?: ReadonlySet<string>;
}

const LIST_LIMIT = 50;

function count(
  report: PolicyReport,
  pred: (reason: string) => boolean,
): { n: number; first?: { reason: string; message: string } } {
  const hits = report.sources.filter((s) => s.reason && pred(s.reason));
  const first = hits[0];
  return {
    n: hits.length,
    first: first ? { reason: first.reason!, message: `${first.name}: ${first.message}` } : undefined,
  };
}

function programmed(report: PolicyReport, o: ProgrammingOutcome, generation: number): ConditionUpdate {
  const base = { type: ConditionType.SessionsProgrammed, observedGeneration: generation };
  if (o.dryRun)
    return {
      ...base,
      status: "Unknown",
      reason: Reason.DryRun,
      message: "dry-run mode: nothing is changed in AWS",
    };
  const failed = report.sessionKeys.filter((k) => o.failedKeys.has(k)).length;
  if (failed > 0 || (o.otherFailures > 0 && report.sessionKeys.some((k) => !o.sessionIds.has(k)))) {
    return {
      ...base,
      status: "False",
      reason: Reason.Retrying,
      message: `${failed || "some"} session changes failed; retrying`,
    };
  }
  const pending = o.pendingKeys ? report.sessionKeys.filter((k) => o.pendingKeys!.has(k)).length : 0;
  if (pending > 0) {
    const total = report.sessionKeys.length;
    return {
      ...base,
      status: "False",
      reason: Reason.Programming,
      message: `${total - pending} of ${total} sessions in place`,
    };
  }
  return {
    ...base,
    status: "True",
    reason: Reason.Programmed,
    message: `${report.sessionKeys.length} sessions in place`,
  };
}

function conditionsFor(report: PolicyReport, o: ProgrammingOutcome, generation: number): ConditionUpdate[] {
  if (report.blocked) {
    const c = (type: string): ConditionUpdate => ({
      type,
      status: "False",
      reason: report.blocked!.reason,
      message: report.blocked!.message,
      observedGeneration: generation,
    });
    return [
      c(ConditionType.SourcesResolved),
      c(ConditionType.SessionsProgrammed),
      c(ConditionType.WithinLimits),
    ];
  }
  const unresolved = count(report, (r) => RESOLUTION_REASONS.has(r));
  const starting = count(report, (r) => r === Reason.PodNotRunning);
  const limited = count(report, (r) => LIMIT_REASONS.has(r));
  const resolved: ConditionUpdate = unresolved.first
    ? {
        type: ConditionType.SourcesResolved,
        status: "False",
        reason: unresolved.first.reason,
        message: `${unresolved.n} sources cannot be mirrored; first: ${unresolved.first.message}`,
        observedGeneration: generation,
      }
    : starting.first
      ? {
          // Pods on their way (a rollout, a scale-up): mirrored once they run, nothing to fix.
          type: ConditionType.SourcesResolved,
          status: "False",
          reason: Reason.Pending,
          message: `${starting.n} selected pods are not running yet; first: ${starting.first.message}`,
          observedGeneration: generation,
        }
      : {
          type: ConditionType.SourcesResolved,
          status: "True",
          reason: Reason.Resolved,
          message: `${report.sources.length} sources resolved to ENIs`,
          observedGeneration: generation,
        };
  const within: ConditionUpdate = limited.first
    ? {
        type: ConditionType.WithinLimits,
        status: "False",
        reason: limited.first.reason,
        message: `${limited.n} sources left out by AWS limits; first: ${limited.first.message}`,
        observedGeneration: generation,
      }
    : {
        type: ConditionType.WithinLimits,
        status: "True",
        reason: Reason.WithinLimits,
        message: "within AWS's per-ENI, per-filter and per-target limits",
        observedGeneration: generation,
      };
  return [resolved, programmed(report, o, generation), within];
}

/** The status a policy should have. */
export function policyStatus(input: {
  report: PolicyReport;
  generation: number;
  stored: Condition[];
  sessions: ReadonlyMap<string, DesiredSession>;
  outcome: ProgrammingOutcome;
  now: string;
  /** When a time-boxed policy's mirroring ends (ms since the epoch). */
  endMs?: number;
}): PolicyStatus {
  const { report, generation, outcome } = input;
  const computed = conditionsFor(report, outcome, generation);
  const all = [...computed, deriveReady(computed, generation)];
  const mirrored = report.sources.filter((s) => s.sessionKey);
  const sessions = report.sessionKeys.map((k) => input.sessions.get(k)!).filter(Boolean);
  const shadowNote = report.shadowedBy.length
    ? [
        {
          type: "Shadowed",
          status: "True" as const,
          reason: Reason.Shadowed,
          message: `sessions of ${[...new Set(report.shadowedBy.flatMap((s) => s.policies))].join(", ")} come first on ${report.shadowedBy.length} ENIs and take overlapping packets`,
          observedGeneration: generation,
        },
      ]
    : [
        {
          type: "Shadowed",
          status: "False" as const,
          reason: "NotShadowed",
          message: "",
          observedGeneration: generation,
        },
      ];
  return {
    observedGeneration: generation,
    conditions: mergeConditions(input.stored, [...all, ...shadowNote], input.now),
    selectedPods: report.sources.filter((s) => s.kind === "Pod").length,
    selectedNodes: new Set(report.sources.filter((s) => s.kind === "Node").map((s) => s.name)).size,
    mirroredSources: mirrored.length,
    mirroredEnis: new Set(mirrored.map((s) => s.networkInterfaceId)).size,
    sessionCount: sessions.length,
    sessions: sessions.slice(0, LIST_LIMIT).map((s) => ({
      networkInterfaceId: s.networkInterfaceId,
      nodeName: s.nodeName,
      sessionId: input.outcome.sessionIds.get(s.key),
      sessionNumber: s.sessionNumber,
      virtualNetworkId: s.virtualNetworkId,
      sources: sourcesIn(s),
    })),
    unmirrored: report.sources
      .filter((s) => s.reason)
      .slice(0, LIST_LIMIT)
      .map((s) => ({ kind: s.kind, name: s.name, reason: s.reason!, message: s.message ?? "" })),
    ...(input.endMs !== undefined ? { expiresAt: new Date(input.endMs).toISOString() } : {}),
  };
}

/**
 * How many sources a session mirrors: its pod entries (1 for a whole ENI), a dual-stack pod's
 * second address not counted again (the plan lists each of its addresses).
 */
export function sourcesIn(s: Pick<DesiredSession, "pods">): number {
  if (s.pods.length === 0) return 1;
  let extra = 0;
  for (const p of s.pods)
    if (isIpv6Text(p.ip) && s.pods.some((q) => q.name === p.name && !isIpv6Text(q.ip))) extra++;
  return s.pods.length - extra;
}

/** The status a target should have. */
export function targetStatus(input: {
  report: TargetReport;
  generation: number;
  stored: Condition[];
  idx: InventoryIndex;
  created: ReadonlyMap<string, string>;
  now: string;
}): TargetStatus {
  const { report, generation } = input;
  const ready: ConditionUpdate = report.problem
    ? {
        type: ConditionType.Ready,
        status: "False",
        reason: report.problem.reason,
        message: report.problem.message,
        observedGeneration: generation,
      }
    : {
        type: ConditionType.Ready,
        status: "True",
        reason: "Ready",
        message: `${report.awsTargets.length} AWS targets`,
        observedGeneration: generation,
      };
  return {
    observedGeneration: generation,
    conditions: mergeConditions(input.stored, [ready], input.now),
    awsTargets: report.awsTargets.slice(0, 100).map((t) => ({
      trafficMirrorTargetId:
        t.id ??
        (t.key
          ? (input.created.get(t.key) ?? input.idx.ownedTargets.get(t.key)?.trafficMirrorTargetId)
          : undefined),
      networkInterfaceId: t.networkInterfaceId,
      sources: t.sessions,
    })),
    policies: report.policies.length,
  };
}
