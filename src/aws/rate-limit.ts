/**
 * Client-side token buckets, one per EC2 action category, sized like AWS's own (mutating 50 burst
 * refilling 5/s; Describe 100 refilling 20/s). The account's buckets are shared with every other
 * tool, so the operator waits for a token rather than spending the shared budget on throttled
 * calls.
 */

/** Bucket size and refill rate. */
export interface BucketSpec {
  burst: number;
  ratePerSecond: number;
}

/** A token bucket that makes callers wait their turn (FIFO). */
export class TokenBucket {
  readonly #spec: BucketSpec;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  #tokens: number;
  #last: number;
  #queue: Promise<void> = Promise.resolve();

  constructor(spec: BucketSpec, clock: { now?: () => number; sleep?: (ms: number) => Promise<void> } = {}) {
    this.#spec = spec;
    this.#now = clock.now ?? (() => performance.now());
    this.#sleep = clock.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#tokens = spec.burst;
    this.#last = this.#now();
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(
      this.#spec.burst,
      this.#tokens + ((now - this.#last) / 1000) * this.#spec.ratePerSecond,
    );
    this.#last = now;
  }

  /** Resolves when a token is taken. */
  take(): Promise<void> {
    const turn = this.#queue.then(async () => {
      this.#refill();
      while (this.#tokens < 1) {
        await this.#sleep(((1 - this.#tokens) / this.#spec.ratePerSecond) * 1000);
        this.#refill();
      }
      this.#tokens -= 1;
    });
    this.#queue = turn;
    return turn;
  }
}

/** The operator's buckets. */
export interface RateLimits {
  mutating: BucketSpec;
  describe: BucketSpec;
}

/** AWS's default buckets for EC2 (developer guide, "Request throttling"). */
export const AWS_DEFAULT_LIMITS: RateLimits = {
  mutating: { burst: 50, ratePerSecond: 5 },
  describe: { burst: 100, ratePerSecond: 20 },
};
