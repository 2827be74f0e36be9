/** The operator's Prometheus metrics, on a registry of its own (tests make one each). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Every metric the operator exports. */
export interface OperatorMetrics {
  registry: Registry;
  cycleDuration: Histogram<"outcome">;
  cycles: Counter<"outcome">;
  planDuration: Histogram<"kind">;
  heldFilterEdits: Gauge;
  planSize: Gauge<"kind">;
  planChanges: Gauge<"action">;
  ec2Calls: Counter<"action" | "outcome">;
  inventoryDescribes: Counter<"reason">;
  throttles: Counter<"action">;
  rateLimitWait: Histogram<"action">;
  sessions: Gauge<"state">;
  queueDepth: Gauge;
  watchRestarts: Gauge<"resource">;
  cachedObjects: Gauge<"resource">;
  leader: Gauge;
  policySources: Gauge<"policy" | "state">;
  policyUnmirrored: Gauge<"policy" | "reason">;
  policyReady: Gauge<"policy">;
  coverage: Histogram<"target_kind">;
}

/**
 * prom-client's default gauges whose names end in `_total`, which Prometheus keeps for counters
 * (`promtool check metrics` flags them). Their per-type gauges without the suffix stay: the sum
 * over `type` is the same number.
 */
const GAUGES_NAMED_AS_COUNTERS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** Registers prom-client's default process and Node.js metrics under `prefix`, without those three. */
export function registerDefaultMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of GAUGES_NAMED_AS_COUNTERS) registry.removeSingleMetric(`${prefix}${name}`);
}

/** Makes the metrics on a new registry. */
export function makeOperatorMetrics(opts: { defaultMetrics?: boolean } = {}): OperatorMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) registerDefaultMetrics(registry, "tmo_operator_");
  const registers = [registry];
  return {
    registry,
    cycleDuration: new Histogram({
      name: "tmo_reconcile_duration_seconds",
      help: "Duration of one plan-and-apply cycle",
      labelNames: ["outcome"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    cycles: new Counter({
      name: "tmo_reconcile_cycles_total",
      help: "Cycles run",
      labelNames: ["outcome"],
      registers,
    }),
    planDuration: new Histogram({
      name: "tmo_plan_duration_seconds",
      help: "Duration of planning a cycle, by kind (incremental or full)",
      labelNames: ["kind"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    planSize: new Gauge({
      name: "tmo_plan_objects",
      help: "Desired AWS objects in the last plan, by kind",
      labelNames: ["kind"],
      registers,
    }),
    planChanges: new Gauge({
      name: "tmo_plan_changes",
      help: "Changes the last plan asked for, by action",
      labelNames: ["action"],
      registers,
    }),
    ec2Calls: new Counter({
      name: "tmo_ec2_calls_total",
      help: "EC2 API calls by action and outcome",
      labelNames: ["action", "outcome"],
      registers,
    }),
    inventoryDescribes: new Counter({
      name: "tmo_inventory_describes_total",
      help: "Describe requests of the kept EC2 inventory (each one or more EC2 calls), by reason: resync, targeted, invalidated",
      labelNames: ["reason"],
      registers,
    }),
    throttles: new Counter({
      name: "tmo_ec2_throttled_total",
      help: "EC2 calls answered RequestLimitExceeded",
      labelNames: ["action"],
      registers,
    }),
    rateLimitWait: new Histogram({
      name: "tmo_ec2_rate_limit_wait_seconds",
      help: "Time an EC2 call waited for a token of its action's client-side bucket",
      labelNames: ["action"],
      buckets: [0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    sessions: new Gauge({
      name: "tmo_sessions",
      help: "Mirror sessions by state",
      labelNames: ["state"],
      registers,
    }),
    heldFilterEdits: new Gauge({
      name: "tmo_filter_edits_held",
      help: "Filter edits that only stop mirroring departed pods, waiting for an arrival on their ENI",
      registers,
    }),
    queueDepth: new Gauge({
      name: "tmo_queue_depth",
      help: "Trigger reasons waiting for the next cycle",
      registers,
    }),
    watchRestarts: new Gauge({
      name: "tmo_watch_restarts",
      help: "Watch restarts since start, by resource",
      labelNames: ["resource"],
      registers,
    }),
    cachedObjects: new Gauge({
      name: "tmo_cached_objects",
      help: "Objects in the watch caches, by resource",
      labelNames: ["resource"],
      registers,
    }),
    leader: new Gauge({ name: "tmo_leader", help: "1 when this replica is the leader", registers }),
    policySources: new Gauge({
      name: "tmo_policy_sources",
      help: "Sources (pods, or node ENIs) of each policy: selected, mirrored, unmirrored (with a reason) and pending (neither yet)",
      labelNames: ["policy", "state"],
      registers,
    }),
    policyUnmirrored: new Gauge({
      name: "tmo_policy_unmirrored_sources",
      help: "Sources of each policy that are not mirrored, by reason",
      labelNames: ["policy", "reason"],
      registers,
    }),
    policyReady: new Gauge({
      name: "tmo_policy_ready",
      help: "1 when the policy's Ready condition is True",
      labelNames: ["policy"],
      registers,
    }),
    coverage: new Histogram({
      name: "tmo_pod_coverage_seconds",
      help: "From a pod becoming Ready to its policy's session (and, for collector targets, the VNI map selecting it) being in place",
      labelNames: ["target_kind"],
      buckets: [0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 600],
      registers,
    }),
  };
}
