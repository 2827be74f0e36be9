import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CoalescingTrigger } from "./trigger.ts";

const log = pino({ level: "silent" });

describe("CoalescingTrigger", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("turns a burst of kicks into one cycle with every reason", async () => {
    const runs: string[][] = [];
    const t = new CoalescingTrigger({ log, run: (r) => (runs.push([...r].sort()), Promise.resolve({})) });
    t.kick("pod a");
    t.kick("pod b");
    t.kick("pod a");
    expect(t.depth).toBe(2);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toEqual([["pod a", "pod b"]]);
    expect(t.depth).toBe(0);
  });

  it("never overlaps cycles, and runs once more for kicks that arrive during a cycle", async () => {
    let active = 0;
    let maxActive = 0;
    const runs: string[][] = [];
    const t = new CoalescingTrigger({
      log,
      run: async (r) => {
        active++;
        maxActive = Math.max(maxActive, active);
        runs.push([...r]);
        await new Promise((res) => setTimeout(res, 1_000));
        active--;
        return {};
      },
    });
    t.kick("first");
    await vi.advanceTimersByTimeAsync(100);
    t.kick("during-1");
    t.kick("during-2");
    await vi.advanceTimersByTimeAsync(5_000);
    expect(maxActive).toBe(1);
    expect(runs).toEqual([["first"], ["during-1", "during-2"]]);
  });

  it("retries a failed cycle with growing backoff, then resets it after a success", async () => {
    const at: number[] = [];
    let failures = 2;
    const t = new CoalescingTrigger({
      log,
      initialBackoffMs: 1_000,
      run: () => {
        at.push(Date.now());
        return failures-- > 0 ? Promise.reject(new Error("boom")) : Promise.resolve({});
      },
    });
    const start = Date.now();
    t.kick("x");
    await vi.advanceTimersByTimeAsync(10_000);
    const gaps = at.map((a) => a - start);
    expect(gaps).toHaveLength(3);
    expect(gaps[1]! - gaps[0]!).toBeGreaterThanOrEqual(1_000);
    expect(gaps[2]! - gaps[1]!).toBeGreaterThanOrEqual(2_000);
    expect(t.stats).toEqual({ cycles: 3, failures: 2 });
  });

  it("resyncs periodically and honours a requested requeue", async () => {
    const reasons: string[] = [];
    let requeue = true;
    const t = new CoalescingTrigger({
      log,
      resyncMs: 10_000,
      run: (r) => {
        reasons.push(...r);
        const res = requeue ? { requeueAfterMs: 3_000 } : {};
        requeue = false;
        return Promise.resolve(res);
      },
    });
    t.start();
    t.kick("start");
    await vi.advanceTimersByTimeAsync(10_500);
    expect(reasons).toEqual(["start", "requeue", "resync"]);
    await t.stop();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(reasons).toHaveLength(3);
  });

  it("keeps one requeue timer, the earliest, and waits days in steps rather than firing at once", async () => {
    const at: number[] = [];
    const start = Date.now();
    const end = start + 3 * 24 * 3_600_000;
    const t = new CoalescingTrigger({
      log,
      run: () => {
        at.push(Date.now() - start);
        // Every cycle asks for the same far-off end, as a converging operator with a 3-day policy does.
        return Promise.resolve(Date.now() < end ? { requeueAfterMs: end - Date.now() } : {});
      },
    });
    t.start();
    t.kick("start");
    await vi.advanceTimersByTimeAsync(100);
    for (let i = 0; i < 5; i++) {
      t.kick("event", 0);
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(at).toHaveLength(6);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(3 * 24 * 3_600_000);
    // Woken after 24 h, 48 h and at the end: no timer fired early, none twice.
    expect(at.slice(6).map((ms) => Math.round(ms / 3_600_000))).toEqual([24, 48, 72]);
    await t.stop();
  });
});
