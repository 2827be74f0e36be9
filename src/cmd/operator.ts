/** `operator`: the controller. Reads its configuration from the environment (see config.ts). */
import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { makeEc2Client } from "../aws/client.ts";
import { Ec2MirrorApi } from "../aws/ec2-adapter.ts";
import { startProbeServer } from "../controller/http.ts";
import { makeOperatorMetrics } from "../controller/metrics.ts";
import { makeReconcileCycle } from "../controller/reconcile.ts";
import { OperatorRuntime } from "../controller/runtime.ts";
import { EventRecorder } from "../k8s/objects.ts";
import { KubeRest } from "../k8s/rest.ts";
import { loadOperatorConfig } from "./config.ts";

/** Runs the operator until SIGTERM/SIGINT; resolves to the exit code. */
export async function run(_argv: string[]): Promise<number> {
  const config = loadOperatorConfig(process.env, hostname());
  const log = pino({ level: config.logLevel, base: { component: "operator", cluster: config.clusterName } });
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const rest = new KubeRest(kc);
  const metrics = makeOperatorMetrics({ defaultMetrics: true });
  const client = makeEc2Client({
    region: config.region,
    endpoint: config.ec2Endpoint,
    // An emulator takes any static key; AWS gets the SDK's default credential chain.
    ...(config.ec2Endpoint ? { credentials: { accessKeyId: "emulator", secretAccessKey: "emulator" } } : {}),
  });
  const api = new Ec2MirrorApi({
    client,
    cluster: config.clusterName,
    limits: config.rateLimits,
    observe: (action, outcome) => {
      metrics.ec2Calls.inc({ action, outcome });
      if (outcome === "throttled") metrics.throttles.inc({ action });
    },
    observeWait: (action, seconds) => metrics.rateLimitWait.observe({ action }, seconds),
  });
  const events = new EventRecorder({
    rest,
    log,
    controller: "trafficmirror.twtech.io/operator",
    instance: config.identity,
  });
  const runtime = new OperatorRuntime({
    kc,
    rest,
    log,
    metrics,
    resyncMs: config.resyncMs,
    leaderElection: config.leaderElection
      ? { namespace: config.namespace, identity: config.identity }
      : undefined,
    cycle: makeReconcileCycle({
      api,
      rest,
      cluster: config.clusterName,
      namespace: config.namespace,
      dryRun: config.dryRun,
      concurrency: config.applyConcurrency,
      sessionBudget: config.sessionBudget,
      collectorKernelMode: config.collectorKernelMode,
      autoTighten: config.autoTighten,
      resyncMs: config.resyncMs,
      cycleBudgetMs: config.cycleBudgetMs,
      departureGraceMs: config.departureGraceMs,
      metrics,
      events,
    }),
  });
  const probes = await startProbeServer({
    ...config.health,
    healthy: () => true,
    ready: () => runtime.healthy(),
  });
  const metricsServer = await startProbeServer({ ...config.metrics, registry: metrics.registry });
  log.info(
    { dryRun: config.dryRun, leaderElection: config.leaderElection, identity: config.identity },
    "Operator started",
  );
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  const lost = runtime.leadershipLost().then(() => "leadership lost");
  void runtime.start().catch((err: unknown) => log.error({ err }, "Runtime failed to start"));
  const why = await Promise.race([stopped, lost]);
  log.info({ why }, "Stopping");
  await runtime.stop();
  await probes.close();
  await metricsServer.close();
  return why === "leadership lost" ? 1 : 0;
}
