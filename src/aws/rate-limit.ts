/**
 * Client-side token buckets, one per EC2 action, as AWS applies them: every action has its own
 * bucket in the account, sized by the action's category (docs/aws-rate-limits.md). The account's
 * buckets are shared with every other tool that calls the same action, so the operator takes only
 * a share of each and waits for a token rather than spending the shared budget on throttled calls:
 * at most half of the Describe actions the VPC CNI and Karpenter live on, most of the buckets of
 * the TrafficMirror* actions, which only mirroring tools call.
 */

/** Bucket size and refill rate. */
export interface BucketSpec {
  burst: number;
  ratePerSecond: number;
}

/** A clock that tests can replace. */
export interface Clock {
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** A token bucket that makes callers wait their turn (FIFO). */
export class TokenBucket {
  readonly #spec: BucketSpec;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  #tokens: number;
  #last: number;
  #queue: Promise<void> = Promise.resolve();

  constructor(spec: BucketSpec, clock: Clock = {}) {
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
      // Within a rounding error of a whole token counts as one: refill arithmetic on fractions
      // (1 / 4.25 s) can land a hair below 1, and waiting for the hair would loop on tiny sleeps.
      while (this.#tokens < 1 - 1e-9) {
        await this.#sleep(((1 - this.#tokens) / this.#spec.ratePerSecond) * 1000);
        this.#refill();
      }
      this.#tokens -= 1;
    });
    this.#queue = turn;
    return turn;
  }
}

/** EC2's request-rate categories of the actions the operator and the emulator know. */
export type ActionCategory = "mutating" | "nonMutating" | "unfilteredNonMutating";

/** AWS's default bucket per category (EC2 developer guide, "Request throttling"). */
export const AWS_CATEGORY_BUCKETS: Readonly<Record<ActionCategory, BucketSpec>> = {
  mutating: { burst: 50, ratePerSecond: 5 },
  nonMutating: { burst: 100, ratePerSecond: 20 },
  unfilteredNonMutating: { burst: 50, ratePerSecond: 10 },
};

/**
 * The actions that, called without a filter and without pagination, draw on the smaller
 * "unfiltered and unpaginated" bucket (the guide's list).
 */
export const UNFILTERED_SUBSET: ReadonlySet<string> = new Set([
  "DescribeInstances",
  "DescribeInstanceStatus",
  "DescribeNetworkInterfaces",
  "DescribeSecurityGroups",
  "DescribeSnapshots",
  "DescribeSpotInstanceRequests",
  "DescribeVolumes",
]);

/** Whether an action changes something (AWS: every action that is not Describe/List/Search/Get). */
export function isMutatingAction(action: string): boolean {
  return !/^(Describe|List|Search|Get)/.test(action);
}

/** The Describe actions the operator shares with the VPC CNI (ipamd) and Karpenter. */
export const SHARED_ACTIONS: ReadonlySet<string> = new Set([
  "DescribeInstances",
  "DescribeNetworkInterfaces",
]);

/** Whether only mirroring tools call the action (the TrafficMirror* actions). */
export function isMirrorAction(action: string): boolean {
  return action.includes("TrafficMirror");
}

/** Shares (0–1] of the account's buckets the operator takes. */
export interface RateShares {
  /** Of the Describe actions it shares with the CNI and Karpenter (and of any action not listed). */
  shared: number;
  /** Of the TrafficMirror* actions. */
  mirror: number;
}

/** The operator's default shares: half of the shared Describe buckets, 85% of the mirror ones. */
export const DEFAULT_SHARES: Readonly<RateShares> = { shared: 0.5, mirror: 0.85 };

/**
 * The largest share used: calls leave here evenly paced but arrive with network jitter, and a
 * bucket run at exactly AWS's rate would now and then find AWS's empty.
 */
export const MAX_SHARE = 0.95;

/** The account's buckets as the operator sees them, and its share of each. */
export interface RateLimits {
  /** The account's bucket of every action in a category (filtered, paginated calls). */
  categories: { mutating: BucketSpec; nonMutating: BucketSpec };
  /** The account's bucket of single actions, where AWS sized one differently (a raised limit). */
  actions?: Readonly<Record<string, BucketSpec>>;
  shares: RateShares;
}

/** AWS's default buckets for EC2 with the operator's default shares. */
export const AWS_DEFAULT_LIMITS: RateLimits = {
  categories: {
    mutating: AWS_CATEGORY_BUCKETS.mutating,
    nonMutating: AWS_CATEGORY_BUCKETS.nonMutating,
  },
  shares: DEFAULT_SHARES,
};

/** The account's bucket of one action, for filtered or paginated calls (all the operator makes). */
export function accountBucket(limits: RateLimits, action: string): BucketSpec {
  return (
    limits.actions?.[action] ??
    (isMutatingAction(action) ? limits.categories.mutating : limits.categories.nonMutating)
  );
}

/** The share of an action's bucket the operator takes, at most MAX_SHARE. */
export function shareOf(shares: RateShares, action: string): number {
  return Math.min(MAX_SHARE, isMirrorAction(action) ? shares.mirror : shares.shared);
}

/** The operator's own bucket of one action: its share of the account's refill and burst. */
export function operatorBucket(limits: RateLimits, action: string): BucketSpec {
  const b = accountBucket(limits, action);
  const share = shareOf(limits.shares, action);
  return { burst: Math.max(1, Math.floor(b.burst * share)), ratePerSecond: b.ratePerSecond * share };
}

/** One token bucket per action, made on first use, each the operator's share of the account's. */
export class ActionBuckets {
  readonly #limits: RateLimits;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(limits: RateLimits, clock: Clock = {}) {
    this.#limits = limits;
    this.#clock = clock;
    this.#now = clock.now ?? (() => performance.now());
  }

  /** Waits for a token of the action's bucket; resolves to the milliseconds waited. */
  async take(action: string): Promise<number> {
    let bucket = this.#buckets.get(action);
    if (!bucket) {
      bucket = new TokenBucket(operatorBucket(this.#limits, action), this.#clock);
      this.#buckets.set(action, bucket);
    }
    const started = this.#now();
    await bucket.take();
    return this.#now() - started;
  }
}
