import { describe, expect, it } from "vitest";
import { loadCollectorConfig, loadOperatorConfig } from "./config.ts";

describe("loadOperatorConfig", () => {
  it("applies defaults that match AWS's throttling buckets", () => {
    const c = loadOperatorConfig({ TMO_CLUSTER_NAME: "prod" }, "host-1");
    expect(c).toMatchObject({
      clusterName: "prod",
      identity: "host-1",
      resyncMs: 300_000,
      cycleBudgetMs: 5_000,
      departureGraceMs: 10_000,
      dryRun: false,
      leaderElection: true,
      metrics: { host: "0.0.0.0", port: 8080 },
      health: { host: "0.0.0.0", port: 8081 },
      rateLimits: {
        categories: {
          mutating: { ratePerSecond: 5, burst: 50 },
          nonMutating: { ratePerSecond: 20, burst: 100 },
        },
        shares: { shared: 0.5, mirror: 0.85 },
      },
      sessionBudget: 10_000,
    });
  });

  it("parses every variable", () => {
    const c = loadOperatorConfig(
      {
        TMO_CLUSTER_NAME: "c",
        AWS_REGION: "eu-west-2",
        TMO_POD_NAME: "op-0",
        TMO_DRY_RUN: "true",
        TMO_METRICS_ADDR: "127.0.0.1:9090",
        TMO_HEALTH_ADDR: "[::1]:9091",
        TMO_EC2_ENDPOINT: "http://127.0.0.1:4566",
        TMO_APPLY_CONCURRENCY: "8",
        TMO_RESYNC_SECONDS: "30",
        TMO_CYCLE_BUDGET_SECONDS: "2",
        TMO_DEPARTURE_GRACE_SECONDS: "0",
        TMO_SESSION_BUDGET: "2500",
      },
      "x",
    );
    expect(c).toMatchObject({
      region: "eu-west-2",
      identity: "op-0",
      dryRun: true,
      metrics: { host: "127.0.0.1", port: 9090 },
      health: { host: "::1", port: 9091 },
      ec2Endpoint: "http://127.0.0.1:4566",
      applyConcurrency: 8,
      resyncMs: 30_000,
      cycleBudgetMs: 2_000,
      departureGraceMs: 0,
      sessionBudget: 2500,
    });
  });

  it("names every bad variable in one error", () => {
    const bad = {
      TMO_CLUSTER_NAME: "",
      TMO_DRY_RUN: "maybe",
      AWS_REGION: "mars",
      TMO_APPLY_CONCURRENCY: "0",
      TMO_SESSION_BUDGET: "20000",
      // At or past the VPC CNI's 30 s cooldown a departed address may already be another pod's.
      TMO_DEPARTURE_GRACE_SECONDS: "30",
    };
    let error: Error | undefined;
    try {
      loadOperatorConfig(bad, "x");
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).toMatch(/^invalid operator configuration: /);
    for (const v of Object.keys(bad)) expect(error?.message).toContain(v);
  });

  it("reads the rate shares and per-action buckets, and refuses a share above 1 or a malformed pair", () => {
    const c = loadOperatorConfig(
      {
        TMO_CLUSTER_NAME: "c",
        TMO_MUTATING_RATE: "10",
        TMO_MUTATING_BURST: "100",
        TMO_RATE_SHARE_SHARED: "0.25",
        TMO_RATE_SHARE_MIRROR: "0.9",
        TMO_ACTION_RATE_LIMITS: "CreateTrafficMirrorSession=200/20, DescribeInstances=100/12.5",
      },
      "x",
    );
    expect(c.rateLimits).toEqual({
      categories: {
        mutating: { burst: 100, ratePerSecond: 10 },
        nonMutating: { burst: 100, ratePerSecond: 20 },
      },
      actions: {
        CreateTrafficMirrorSession: { burst: 200, ratePerSecond: 20 },
        DescribeInstances: { burst: 100, ratePerSecond: 12.5 },
      },
      shares: { shared: 0.25, mirror: 0.9 },
    });
    const bad = {
      TMO_CLUSTER_NAME: "c",
      TMO_RATE_SHARE_SHARED: "1.5",
      TMO_RATE_SHARE_MIRROR: "0",
      TMO_ACTION_RATE_LIMITS: "CreateTrafficMirrorSession=fast",
    };
    let error: Error | undefined;
    try {
      loadOperatorConfig(bad, "x");
    } catch (err) {
      error = err as Error;
    }
    for (const v of ["TMO_RATE_SHARE_SHARED", "TMO_RATE_SHARE_MIRROR", "TMO_ACTION_RATE_LIMITS"])
      expect(error?.message).toContain(v);
  });
});

describe("loadCollectorConfig: where the VNI map comes from", () => {
  it("polls the file unless a ConfigMap is named", () => {
    expect(loadCollectorConfig({}).vniMapConfigMap).toBeUndefined();
  });

  it("watches the named ConfigMap, in the pod's namespace or the one given", () => {
    const own = loadCollectorConfig({ TMO_COLLECTOR_VNI_MAP_CONFIGMAP: "vni-map", TMO_NAMESPACE: "tmo" });
    expect(own.vniMapConfigMap).toEqual({ namespace: "tmo", name: "vni-map" });
    const other = loadCollectorConfig({
      TMO_COLLECTOR_VNI_MAP_CONFIGMAP: "sys/vni-map",
      TMO_NAMESPACE: "tmo",
    });
    expect(other.vniMapConfigMap).toEqual({ namespace: "sys", name: "vni-map" });
  });

  it("refuses a name that is not one", () => {
    expect(() => loadCollectorConfig({ TMO_COLLECTOR_VNI_MAP_CONFIGMAP: "a/b/c" })).toThrow(
      /TMO_COLLECTOR_VNI_MAP_CONFIGMAP/,
    );
  });
});
