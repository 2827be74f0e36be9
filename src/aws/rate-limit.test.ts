import { describe, expect, it } from "vitest";
import { TokenBucket } from "./rate-limit.ts";

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
