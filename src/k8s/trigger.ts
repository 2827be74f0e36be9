/**
 * Coalesces triggers into one global cycle: at most one run at a time, every kick during a run
 * causes exactly one more run after it, bursts within `debounceMs` become one run, and a periodic
 * resync kicks even when nothing changed (to catch drift made in AWS by someone else).
 */
import type { Logger } from "pino";

/** Longest single timer (Node fires a longer one at once); a later requeue waits in steps of it. */
const MAX_TIMER_MS = 24 * 3_600_000;

/** What a cycle reports back. */
export interface CycleResult {
  /** Run again after this long even if nothing kicks (e.g. AWS work still in progress). */
  requeueAfterMs?: number;
}

/** What a `CoalescingTrigger` needs. */
export interface TriggerOptions {
  run: (reasons: ReadonlySet<string>) => Promise<CycleResult>;
  log: Logger;
  /** Wait this long after the first kick before running, to gather a burst (default 50 ms). */
  debounceMs?: number;
  /** Kick every this long with reason `resync` (0 disables). */
  resyncMs?: number;
  /** After a failed cycle, retry after this long, doubling up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** One global, coalesced work loop. */
export class CoalescingTrigger {
  readonly #o: Required<TriggerOptions>;
  #pending = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #resync: NodeJS.Timeout | undefined;
  #requeueTimer: NodeJS.Timeout | undefined;
  #requeueDue = 0;
  #running: Promise<void> | undefined;
  #stopped = false;
  #backoff: number;
  /** Cycles run, and cycles that threw. */
  readonly stats = { cycles: 0, failures: 0 };

  constructor(opts: TriggerOptions) {
    this.#o = { debounceMs: 50, resyncMs: 0, initialBackoffMs: 500, maxBackoffMs: 30_000, ...opts };
    this.#backoff = this.#o.initialBackoffMs;
  }

  /** Reasons waiting for the next cycle (the queue depth). */
  get depth(): number {
    return this.#pending.size;
  }

  /** Starts the periodic resync. */
  start(): void {
    if (this.#o.resyncMs > 0) {
      this.#resync = setInterval(() => this.kick("resync"), this.#o.resyncMs);
      this.#resync.unref();
    }
  }

  /** Asks for a cycle. Cheap; call it from every event handler. */
  kick(reason: string, delayMs = this.#o.debounceMs): void {
    if (this.#stopped) return;
    this.#pending.add(reason);
    this.#schedule(delayMs);
  }

  /** Stops scheduling and waits for a running cycle to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#resync);
    clearTimeout(this.#requeueTimer);
    await this.#running;
  }

  #schedule(delayMs: number): void {
    // A cycle in flight reschedules when it ends; an earlier timer already covers this kick.
    if (this.#running || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#cycle().finally(() => {
        this.#running = undefined;
        if (this.#pending.size > 0 && !this.#stopped) this.#schedule(this.#o.debounceMs);
      });
    }, delayMs);
  }

  async #cycle(): Promise<void> {
    const reasons = this.#pending;
    this.#pending = new Set();
    this.stats.cycles++;
    try {
      const result = await this.#o.run(reasons);
      this.#backoff = this.#o.initialBackoffMs;
      if (result.requeueAfterMs !== undefined && !this.#stopped)
        this.#requeue("requeue", result.requeueAfterMs);
    } catch (err) {
      this.stats.failures++;
      this.#o.log.error({ err, retryInMs: this.#backoff }, "Cycle failed");
      this.#requeue("retry", this.#backoff);
      this.#backoff = Math.min(this.#backoff * 2, this.#o.maxBackoffMs);
    }
  }

  /**
   * One requeue timer at a time, the earliest asked for: a cycle asks again for what is still due,
   * so a later request dropped here is made again after the earlier one has run. (Every cycle of
   * a long converge asks for the same far-off end of a time-boxed policy; this keeps that to one
   * timer rather than one per cycle.)
   */
  #requeue(reason: string, afterMs: number): void {
    const delay = Math.min(afterMs, MAX_TIMER_MS);
    const due = Date.now() + delay;
    if (this.#requeueTimer && this.#requeueDue <= due) return;
    clearTimeout(this.#requeueTimer);
    this.#requeueDue = due;
    this.#requeueTimer = setTimeout(() => {
      this.#requeueTimer = undefined;
      this.kick(reason, 0);
    }, delay);
    this.#requeueTimer.unref();
  }
}
