// AWS's default throttling, at real rates: a burst of 500 session creates through the adapter
// meets no RequestLimitExceeded and takes no more than 1.1× what the account's bucket allows. The
// emulator keeps one bucket for all mutating actions (the pessimistic model), and the adapter is
// allowed the whole bucket (by default it takes 85% of a mirror action's; docs/aws-rate-limits.md).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { AWS_CATEGORY_BUCKETS, AWS_DEFAULT_LIMITS } from "../../src/aws/rate-limit.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { makeWorld } from "../fixtures/world.ts";

let sim: Ec2Sim;
const world = makeWorld({ nodes: 250, podsPerNode: 0 });

beforeAll(async () => {
  sim = await startEc2Sim({
    knobs: {
      throttle: {
        model: "category",
        mutating: {
          burst: AWS_CATEGORY_BUCKETS.mutating.burst,
          ratePerSecond: AWS_CATEGORY_BUCKETS.mutating.ratePerSecond,
        },
        describe: {
          burst: AWS_CATEGORY_BUCKETS.nonMutating.burst,
          ratePerSecond: AWS_CATEGORY_BUCKETS.nonMutating.ratePerSecond,
        },
      },
    },
  });
  seed(sim.state, world.inventory);
});
afterAll(async () => sim?.stop());

describe("throttling at AWS's default rates", () => {
  it("creates 500 sessions with zero RequestLimitExceeded within 1.1× of the bucket's time", async () => {
    const api = new Ec2MirrorApi({
      client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
      cluster: "burst",
      limits: { ...AWS_DEFAULT_LIMITS, shares: { shared: 1, mirror: 1 } },
    });
    const started = performance.now();
    const target = await api.createTarget({
      key: "nlb",
      owners: [],
      networkLoadBalancerArn:
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/0123456789abcdef",
      description: "",
    });
    const filter = await api.createFilter({ key: "f", rules: [], networkServices: [], description: "" });
    const enis = world.inventory.networkInterfaces.slice(0, 500);
    await Promise.all(
      enis.map((e, i) =>
        api.createSession({
          key: `s${i}`,
          owners: [],
          networkInterfaceId: e.networkInterfaceId,
          trafficMirrorTargetId: target.trafficMirrorTargetId,
          trafficMirrorFilterId: filter.trafficMirrorFilterId,
          sessionNumber: 1,
          virtualNetworkId: i + 1,
          description: "",
        }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const { burst, ratePerSecond } = AWS_CATEGORY_BUCKETS.mutating;
    const bucketSeconds = (502 - burst) / ratePerSecond; // 502 mutating calls in all
    console.log(
      `500 sessions in ${seconds.toFixed(2)} s; the bucket allows ${bucketSeconds.toFixed(2)} s (ratio ${(seconds / bucketSeconds).toFixed(3)})`,
    );
    expect(sim.state.sessions.size).toBe(500);
    expect(sim.calls.filter((c) => c.code === "RequestLimitExceeded")).toHaveLength(0);
    expect(seconds).toBeLessThanOrEqual(bucketSeconds * 1.1);
    expect(seconds).toBeGreaterThanOrEqual(bucketSeconds * 0.95);
  }, 150_000);
});
