/**
 * Operator configuration from the environment, validated at the boundary. This is the only place
 * that reads `process.env` for the operator (the chart sets these variables).
 */
import { z } from "zod";
import { describeIssues } from "../api/validation.ts";
import type { BucketSpec, RateLimits } from "../aws/rate-limit.ts";

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");

/** `host:port` or `:port`. */
const listenAddr = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, "must be host:port or :port")
  .transform((v) => {
    const i = v.lastIndexOf(":");
    const host = v.slice(0, i).replace(/^\[|\]$/g, "");
    return { host: host === "" ? "0.0.0.0" : host, port: Number(v.slice(i + 1)) };
  });

const positive = z.coerce.number().positive();

/** A share of an account bucket: more than 0, at most 1. */
const share = z.coerce.number().gt(0).max(1);

/** `Action=burst/rate` pairs, comma-separated: the account's bucket of single EC2 actions. */
const actionLimits = z
  .string()
  .regex(
    /^\s*([A-Za-z]+=\d+(\.\d+)?\/\d+(\.\d+)?\s*)(,\s*[A-Za-z]+=\d+(\.\d+)?\/\d+(\.\d+)?\s*)*$/,
    "must be Action=burst/rate pairs separated by commas, e.g. CreateTrafficMirrorSession=100/10",
  )
  .transform((v) =>
    Object.fromEntries(
      v.split(",").map((pair): [string, BucketSpec] => {
        const [action, size] = pair.trim().split("=") as [string, string];
        const [burst, rate] = size.split("/").map(Number) as [number, number];
        return [action, { burst, ratePerSecond: rate }];
      }),
    ),
  )
  .refine((m) => Object.values(m).every((b) => b.burst >= 1 && b.ratePerSecond > 0), {
    message: "every burst must be at least 1 and every rate above 0",
  });

/** The environment variables the operator reads, with their defaults. */
export const OperatorEnvSchema = z.object({
  TMO_CLUSTER_NAME: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "letters, digits, '-', '_' and '.' only"),
  AWS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "an AWS region such as us-east-1")
    .optional(),
  TMO_NAMESPACE: z.string().min(1).default("traffic-mirror-system"),
  TMO_POD_NAME: z.string().optional(),
  TMO_RESYNC_SECONDS: positive.default(300),
  TMO_CYCLE_BUDGET_SECONDS: positive.default(5),
  /** A filter edit that only stops mirroring departed pods waits until none left for this long (ADR 23). */
  TMO_DEPARTURE_GRACE_SECONDS: z.coerce.number().min(0).max(25).default(10),
  TMO_DRY_RUN: bool.default(false),
  TMO_METRICS_ADDR: listenAddr.prefault(":8080"),
  TMO_HEALTH_ADDR: listenAddr.prefault(":8081"),
  TMO_LEADER_ELECTION: bool.default(true),
  TMO_EC2_ENDPOINT: z.url().optional(),
  // The account's bucket of each mutating / each Describe action (AWS's defaults by category); the
  // operator takes its share of each (docs/aws-rate-limits.md).
  TMO_MUTATING_RATE: positive.default(5),
  TMO_MUTATING_BURST: positive.default(50),
  TMO_DESCRIBE_RATE: positive.default(20),
  TMO_DESCRIBE_BURST: positive.default(100),
  TMO_ACTION_RATE_LIMITS: actionLimits.optional(),
  TMO_RATE_SHARE_SHARED: share.default(0.5),
  TMO_RATE_SHARE_MIRROR: share.default(0.85),
  TMO_APPLY_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(4),
  // AWS allows 10,000 sessions per account and Region; a cluster sharing the account takes less.
  TMO_SESSION_BUDGET: z.coerce.number().int().min(0).max(10_000).default(10_000),
  /** The collectors run in kernel mode (the chart sets it): selectionMode Eni is refused. */
  TMO_COLLECTOR_KERNEL_MODE: bool.default(false),
  /** selectionMode Auto: how long an ENI's pods stay unchanged before its filter is tightened. */
  TMO_AUTO_TIGHTEN_AFTER_SECONDS: z.coerce.number().min(0).default(60),
  /** selectionMode Auto: at most this many ENIs tightened per cycle. */
  TMO_AUTO_TIGHTEN_PER_CYCLE: z.coerce.number().int().min(0).max(1000).default(10),
  TMO_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
});

/** The operator's validated configuration. */
export interface OperatorConfig {
  clusterName: string;
  region: string | undefined;
  namespace: string;
  identity: string;
  resyncMs: number;
  /** How long a cycle starts AWS changes before it reports and plans again (ADR 15). */
  cycleBudgetMs: number;
  /** How long an edit that only lets departed pods go may wait for an arrival (ADR 23). */
  departureGraceMs: number;
  dryRun: boolean;
  metrics: { host: string; port: number };
  health: { host: string; port: number };
  leaderElection: boolean;
  ec2Endpoint: string | undefined;
  /** The account's EC2 buckets and the operator's share of each. */
  rateLimits: RateLimits;
  applyConcurrency: number;
  /** Mirror sessions this cluster may hold in the account and Region. */
  sessionBudget: number;
  collectorKernelMode: boolean;
  autoTighten: { quietMs: number; perCycle: number };
  logLevel: string;
}

/** Reads the configuration; throws one error listing every bad variable. */
export function loadOperatorConfig(
  env: Record<string, string | undefined>,
  fallbackIdentity: string,
): OperatorConfig {
  const parsed = OperatorEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new Error(`invalid operator configuration: ${problems}`);
  }
  const e = parsed.data;
  return {
    clusterName: e.TMO_CLUSTER_NAME,
    region: e.AWS_REGION,
    namespace: e.TMO_NAMESPACE,
    identity: e.TMO_POD_NAME ?? fallbackIdentity,
    resyncMs: e.TMO_RESYNC_SECONDS * 1000,
    cycleBudgetMs: e.TMO_CYCLE_BUDGET_SECONDS * 1000,
    departureGraceMs: e.TMO_DEPARTURE_GRACE_SECONDS * 1000,
    dryRun: e.TMO_DRY_RUN,
    metrics: e.TMO_METRICS_ADDR,
    health: e.TMO_HEALTH_ADDR,
    leaderElection: e.TMO_LEADER_ELECTION,
    ec2Endpoint: e.TMO_EC2_ENDPOINT,
    rateLimits: {
      categories: {
        mutating: { burst: e.TMO_MUTATING_BURST, ratePerSecond: e.TMO_MUTATING_RATE },
        nonMutating: { burst: e.TMO_DESCRIBE_BURST, ratePerSecond: e.TMO_DESCRIBE_RATE },
      },
      ...(e.TMO_ACTION_RATE_LIMITS ? { actions: e.TMO_ACTION_RATE_LIMITS } : {}),
      shares: { shared: e.TMO_RATE_SHARE_SHARED, mirror: e.TMO_RATE_SHARE_MIRROR },
    },
    applyConcurrency: e.TMO_APPLY_CONCURRENCY,
    sessionBudget: e.TMO_SESSION_BUDGET,
    collectorKernelMode: e.TMO_COLLECTOR_KERNEL_MODE,
    autoTighten: { quietMs: e.TMO_AUTO_TIGHTEN_AFTER_SECONDS * 1000, perCycle: e.TMO_AUTO_TIGHTEN_PER_CYCLE },
    logLevel: e.TMO_LOG_LEVEL,
  };
}

const bytes = z.coerce.number().int().min(0);

/** The environment variables the collector reads, with their defaults. */
export const CollectorEnvSchema = z.object({
  TMO_COLLECTOR_ADDR: z.string().min(1).default("0.0.0.0"),
  TMO_COLLECTOR_PORT: z.coerce.number().int().min(0).max(65535).default(4789),
  TMO_COLLECTOR_RECV_BUFFER_BYTES: bytes.default(32 << 20),
  TMO_COLLECTOR_WORKERS: z.coerce.number().int().min(1).max(64).default(1),
  /** batch: the native recvmmsg addon (fail without it); dgram: Node's sockets; auto: batch where built. */
  TMO_COLLECTOR_RECEIVE: z.enum(["auto", "batch", "dgram"]).default("auto"),
  TMO_COLLECTOR_DIR: z.string().min(1).default("/var/lib/traffic-mirror/captures"),
  TMO_COLLECTOR_VNI_MAP_FILE: z.string().min(1).default("/etc/traffic-mirror/vni-map.json"),
  TMO_COLLECTOR_VNI_MAP_POLL_SECONDS: positive.default(2),
  /**
   * The operator's map ConfigMap, `name` (in TMO_NAMESPACE) or `namespace/name`: watched through
   * the apiserver instead of polling the file.
   */
  TMO_COLLECTOR_VNI_MAP_CONFIGMAP: z
    .string()
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/,
      "must be name or namespace/name",
    )
    .optional(),
  TMO_NAMESPACE: z.string().min(1).default("traffic-mirror-system"),
  TMO_COLLECTOR_ROTATE_BYTES: bytes.min(4096).default(100 << 20),
  TMO_COLLECTOR_ROTATE_SECONDS: positive.default(300),
  TMO_COLLECTOR_RETAIN_SECONDS: z.coerce.number().min(0).default(86_400),
  TMO_COLLECTOR_RETAIN_BYTES: bytes.default(10 * 2 ** 30),
  TMO_COLLECTOR_DISK_RETRY_SECONDS: positive.default(10),
  TMO_COLLECTOR_CAPTURE_UNKNOWN: bool.default(false),
  TMO_COLLECTOR_STREAM_ADDR: listenAddr.optional(),
  TMO_COLLECTOR_STREAM_ALL_POLICIES: bool.default(false),
  TMO_COLLECTOR_METRICS_ADDR: listenAddr.prefault(":9102"),
  TMO_COLLECTOR_MODE: z.enum(["userspace", "kernel"]).default("userspace"),
  TMO_NODE_NAME: z.string().optional(),
  TMO_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
});

/** The collector's validated configuration. */
export interface CollectorConfig {
  listen: { host: string; port: number };
  recvBufferBytes: number;
  workers: number;
  receive: "auto" | "batch" | "dgram";
  dir: string;
  vniMapFile: string;
  vniMapPollMs: number;
  /** The map ConfigMap to watch through the apiserver; when unset, `vniMapFile` is polled. */
  vniMapConfigMap: { namespace: string; name: string } | undefined;
  rotation: { maxFileBytes: number; maxFileMs: number; retryMs: number };
  retention: { maxAgeMs: number; maxTotalBytes: number };
  captureUnknown: boolean;
  stream: { host: string; port: number } | undefined;
  /** Plain PCAP-over-IP clients (no request line) get every policy's packets. */
  streamAllPolicies: boolean;
  metrics: { host: string; port: number };
  mode: "userspace" | "kernel";
  nodeName: string | undefined;
  logLevel: string;
}

function configMapRef(
  ref: string | undefined,
  namespace: string,
): { namespace: string; name: string } | undefined {
  if (!ref) return undefined;
  const slash = ref.indexOf("/");
  return slash < 0
    ? { namespace, name: ref }
    : { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

/** Reads the collector's configuration; throws one error listing every bad variable. */
export function loadCollectorConfig(env: Record<string, string | undefined>): CollectorConfig {
  const parsed = CollectorEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new Error(`invalid collector configuration: ${problems}`);
  }
  const e = parsed.data;
  return {
    listen: { host: e.TMO_COLLECTOR_ADDR, port: e.TMO_COLLECTOR_PORT },
    recvBufferBytes: e.TMO_COLLECTOR_RECV_BUFFER_BYTES,
    workers: e.TMO_COLLECTOR_WORKERS,
    receive: e.TMO_COLLECTOR_RECEIVE,
    dir: e.TMO_COLLECTOR_DIR,
    vniMapFile: e.TMO_COLLECTOR_VNI_MAP_FILE,
    vniMapPollMs: e.TMO_COLLECTOR_VNI_MAP_POLL_SECONDS * 1000,
    vniMapConfigMap: configMapRef(e.TMO_COLLECTOR_VNI_MAP_CONFIGMAP, e.TMO_NAMESPACE),
    rotation: {
      maxFileBytes: e.TMO_COLLECTOR_ROTATE_BYTES,
      maxFileMs: e.TMO_COLLECTOR_ROTATE_SECONDS * 1000,
      retryMs: e.TMO_COLLECTOR_DISK_RETRY_SECONDS * 1000,
    },
    retention: {
      maxAgeMs: e.TMO_COLLECTOR_RETAIN_SECONDS * 1000,
      maxTotalBytes: e.TMO_COLLECTOR_RETAIN_BYTES,
    },
    captureUnknown: e.TMO_COLLECTOR_CAPTURE_UNKNOWN,
    stream: e.TMO_COLLECTOR_STREAM_ADDR,
    streamAllPolicies: e.TMO_COLLECTOR_STREAM_ALL_POLICIES,
    metrics: e.TMO_COLLECTOR_METRICS_ADDR,
    mode: e.TMO_COLLECTOR_MODE,
    nodeName: e.TMO_NODE_NAME,
    logLevel: e.TMO_LOG_LEVEL,
  };
}
