import { describe, expect, it } from "vitest";
import {
  accountBucket,
  ActionBuckets,
  AWS_CATEGORY_BUCKETS,
  AWS_DEFAULT_LIMITS,
  operatorBucket,
  TokenBucket,
  type RateLimits,
} from "./rate-limit.ts";

/** A clock whose sleeps are timers that `run` fires in order, letting promises settle in between. */
function makeFakeClock() {
  let now = 0;
  const timers: { at: number; resolve: () => void }[] = [];
  const settle = () => new Promise((r) => setImmediate(r));
  return {
    now: () => now,
    sleep: (ms: number) => new Promise<void>((resolve) => timers.push({ at: now + ms, resolve })),
    async run(): Promise<void> {
      for (;;) {
        await settle();
        if (timers.length === 0) return;
        timers.sort((a, b) => a.at - b.at);
        const t = timers.shift()!;
        now = Math.max(now, t.at);
        t.resolve();
      }
    },
  };
}

describe("TokenBucket", () => {
  it("lets a burst through, then paces callers at the refill rate", async () => {
    let now = 0;
    const sleeps: number[] = [];
    const bucket = new TokenBucket(
      { burst: 3, ratePerSecond: 2 },
      {
        now: () => now,
        sleep: (ms) => {
          sleeps.push(ms);
          now += ms;
          return Promise.resolve();
        },
      },
    );
    const times: number[] = [];
    await Promise.all(Array.from({ length: 7 }, () => bucket.take().then(() => times.push(now))));
    expect(times.slice(0, 3)).toEqual([0, 0, 0]);
    // Four more at 2 per second: 0.5 s apart.
    expect(times.slice(3)).toEqual([500, 1000, 1500, 2000]);
  });
});

describe("the account's buckets and the operator's share", () => {
  it("sizes every action by its category, AWS's defaults, unless an action has its own", () => {
    expect(accountBucket(AWS_DEFAULT_LIMITS, "CreateTrafficMirrorSession")).toEqual({
      burst: 50,
      ratePerSecond: 5,
    });
    expect(accountBucket(AWS_DEFAULT_LIMITS, "DeleteTrafficMirrorFilterRule")).toEqual(
      AWS_CATEGORY_BUCKETS.mutating,
    );
    expect(accountBucket(AWS_DEFAULT_LIMITS, "DescribeTrafficMirrorSessions")).toEqual({
      burst: 100,
      ratePerSecond: 20,
    });
    // The operator's calls are filtered and paginated: the standard Describe bucket, not the
    // smaller one of unfiltered calls.
    expect(accountBucket(AWS_DEFAULT_LIMITS, "DescribeInstances")).toEqual(AWS_CATEGORY_BUCKETS.nonMutating);
    const raised: RateLimits = {
      ...AWS_DEFAULT_LIMITS,
      actions: { CreateTrafficMirrorSession: { burst: 200, ratePerSecond: 20 } },
    };
    expect(accountBucket(raised, "CreateTrafficMirrorSession")).toEqual({ burst: 200, ratePerSecond: 20 });
    expect(accountBucket(raised, "CreateTrafficMirrorFilter")).toEqual(AWS_CATEGORY_BUCKETS.mutating);
  });

  it("takes half of the Describe buckets shared with the CNI and Karpenter, 85% of the mirror ones, never above 95%", () => {
    expect(operatorBucket(AWS_DEFAULT_LIMITS, "DescribeInstances")).toEqual({ burst: 50, ratePerSecond: 10 });
    expect(operatorBucket(AWS_DEFAULT_LIMITS, "DescribeNetworkInterfaces")).toEqual({
      burst: 50,
      ratePerSecond: 10,
    });
    expect(operatorBucket(AWS_DEFAULT_LIMITS, "CreateTrafficMirrorSession")).toEqual({
      burst: 42,
      ratePerSecond: 4.25,
    });
    expect(operatorBucket(AWS_DEFAULT_LIMITS, "DescribeTrafficMirrorFilters")).toEqual({
      burst: 85,
      ratePerSecond: 17,
    });
    // Rule edits in place: a mutating mirror-only action, with a bucket of its own at the mirror share.
    expect(operatorBucket(AWS_DEFAULT_LIMITS, "ModifyTrafficMirrorFilterRule")).toEqual({
      burst: 42,
      ratePerSecond: 4.25,
    });
    const whole: RateLimits = { ...AWS_DEFAULT_LIMITS, shares: { shared: 1, mirror: 1 } };
    expect(operatorBucket(whole, "CreateTrafficMirrorSession")).toEqual({ burst: 47, ratePerSecond: 4.75 });
  });
});

describe("ActionBuckets", () => {
  it("keeps actions apart: a drained CreateTrafficMirrorFilterRule bucket does not delay CreateTrafficMirrorSession", async () => {
    const clock = makeFakeClock();
    const buckets = new ActionBuckets(AWS_DEFAULT_LIMITS, clock);
    const rule = operatorBucket(AWS_DEFAULT_LIMITS, "CreateTrafficMirrorFilterRule");
    // The whole burst and ten more rule creates queue up before the first session create.
    const rules = Array.from({ length: rule.burst + 10 }, () =>
      buckets.take("CreateTrafficMirrorFilterRule"),
    );
    const session = buckets.take("CreateTrafficMirrorSession");
    await clock.run();
    const ruleWaits = await Promise.all(rules);
    expect(await session).toBe(0);
    expect(ruleWaits.slice(0, rule.burst).every((w) => w === 0)).toBe(true);
    // The tenth rule past the burst waited for ten refills at the operator's rate.
    expect(ruleWaits.at(-1)).toBeCloseTo((10 / rule.ratePerSecond) * 1000, 6);
  });

  it("keeps rule edits apart: drained Create and Delete…FilterRule buckets do not delay ModifyTrafficMirrorFilterRule", async () => {
    const clock = makeFakeClock();
    const buckets = new ActionBuckets(AWS_DEFAULT_LIMITS, clock);
    const burst = operatorBucket(AWS_DEFAULT_LIMITS, "CreateTrafficMirrorFilterRule").burst;
    const drained = ["CreateTrafficMirrorFilterRule", "DeleteTrafficMirrorFilterRule"].flatMap((a) =>
      Array.from({ length: burst + 5 }, () => buckets.take(a)),
    );
    const modify = buckets.take("ModifyTrafficMirrorFilterRule");
    await clock.run();
    expect(Math.max(...(await Promise.all(drained)))).toBeGreaterThan(0);
    expect(await modify).toBe(0);
  });

  it("runs DescribeInstances at half of AWS's refill: 150 calls take 10 s where AWS's bucket allows 2.5 s", async () => {
    const clock = makeFakeClock();
    const buckets = new ActionBuckets(AWS_DEFAULT_LIMITS, clock);
    const done: number[] = [];
    const calls = Array.from({ length: 150 }, () =>
      buckets.take("DescribeInstances").then(() => done.push(clock.now())),
    );
    await clock.run();
    await Promise.all(calls);
    const aws = AWS_CATEGORY_BUCKETS.nonMutating;
    // Half of AWS's burst at once, then half of its refill rate.
    expect(done.filter((t) => t === 0)).toHaveLength(aws.burst / 2);
    const sustained = (150 - aws.burst / 2) / (done.at(-1)! / 1000);
    expect(sustained).toBeCloseTo(aws.ratePerSecond / 2, 6);
    expect(done.at(-1)! / 1000).toBeCloseTo(10, 6);
    expect((150 - aws.burst) / aws.ratePerSecond).toBe(2.5);
  });
});
