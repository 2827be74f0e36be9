/**
 * Leader election on a coordination.k8s.io Lease, so two replicas run with one active. The holder
 * renews every `renewMs`; a candidate takes the lease once it has not been renewed for
 * `leaseDurationSeconds`. A holder that cannot renew within `renewDeadlineMs` steps down (the
 * process then exits and restarts as a candidate). Releasing on shutdown lets the other replica
 * take over at once.
 */
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { isStatus, type KubeRest } from "./rest.ts";

/** The Lease fields used here, as JSON (times as RFC 3339 strings with microseconds). */
interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/**
 * A MicroTime as the apiserver parses it: exactly six fractional digits. (client-node 2.0.1
 * serialises Lease times with three, which the apiserver refuses, so Leases go through KubeRest.)
 */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** What a `LeaderElector` needs. */
export interface LeaderOptions {
  rest: KubeRest;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  leaseDurationSeconds?: number;
  renewMs?: number;
  retryMs?: number;
  renewDeadlineMs?: number;
}

/** Campaigns for and holds a Lease. */
export class LeaderElector {
  readonly #o: Required<LeaderOptions>;
  #stopped = false;
  #leading = false;
  /**
   * A campaign attempt or renewal in flight: `stop` waits for it, or a lease it wins would never be
   * released, and a renewal that lands after the release read the lease would refuse the release.
   */
  #attempt: Promise<boolean> | undefined;
  #lostResolve!: () => void;
  /** Resolves when leadership, once held, is lost. */
  readonly lost = new Promise<void>((r) => (this.#lostResolve = r));

  constructor(opts: LeaderOptions) {
    this.#o = { leaseDurationSeconds: 15, renewMs: 2_000, retryMs: 2_000, renewDeadlineMs: 10_000, ...opts };
  }

  /** Whether this replica holds the lease now. */
  get leading(): boolean {
    return this.#leading;
  }

  /** Waits until this replica holds the lease (or `stop` is called), then keeps renewing. */
  async acquire(): Promise<boolean> {
    while (!this.#stopped) {
      this.#attempt = this.#tryAcquireOrRenew().then((won) => {
        if (won) this.#leading = true;
        return won;
      });
      const won = await this.#attempt;
      this.#attempt = undefined;
      // Stopped meanwhile: `stop` saw the win and released the lease.
      if (this.#stopped) return false;
      if (won) {
        this.#o.log.info({ lease: this.#o.name, identity: this.#o.identity }, "Became leader");
        void this.#renewLoop();
        return true;
      }
      await sleep(this.#o.retryMs);
    }
    return false;
  }

  /**
   * Stops campaigning and renewing. With `release` (the default) a leader gives the lease up so
   * another replica takes over at once; without it the lease simply expires, as after a crash.
   */
  async stop(release = true): Promise<void> {
    this.#stopped = true;
    await this.#attempt;
    if (!this.#leading) return;
    this.#leading = false;
    if (!release) return;
    // A write that lands between the read and the release (409) is read again: a lease left held
    // keeps the other replica waiting for a whole lease duration.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#release();
        return;
      } catch (err) {
        if (isStatus(err, 409) && attempt < 3) continue;
        this.#o.log.warn({ err }, "Releasing the lease failed; it will expire");
        return;
      }
    }
  }

  async #release(): Promise<void> {
    const lease = await this.#o.rest.get<Lease>(this.#path(), "reading the leader lease");
    if (lease.spec.holderIdentity !== this.#o.identity) return;
    lease.spec.holderIdentity = null;
    lease.spec.leaseDurationSeconds = 1;
    await this.#o.rest.request({
      method: "PUT",
      path: this.#path(),
      body: lease,
      what: "releasing the leader lease",
    });
    this.#o.log.info({ lease: this.#o.name }, "Released leadership");
  }

  #path(collection = false): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases`;
    return collection ? base : `${base}/${this.#o.name}`;
  }

  async #renewLoop(): Promise<void> {
    let lastRenew = Date.now();
    while (this.#leading && !this.#stopped) {
      await sleep(this.#o.renewMs);
      if (!this.#leading || this.#stopped) return;
      this.#attempt = this.#tryAcquireOrRenew();
      const renewed = await this.#attempt;
      this.#attempt = undefined;
      if (this.#stopped) return;
      if (renewed) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.#o.renewDeadlineMs) {
        this.#leading = false;
        this.#o.log.error({ lease: this.#o.name }, "Lost leadership");
        this.#lostResolve();
        return;
      }
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { identity } = this.#o;
    const now = new Date();
    try {
      let lease: Lease;
      try {
        lease = await this.#o.rest.get<Lease>(this.#path(), "reading the leader lease");
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
        const body = this.#fresh(now, 0);
        await this.#o.rest.request({
          method: "POST",
          path: this.#path(true),
          body,
          what: "creating the leader lease",
        });
        return true;
      }
      const spec = lease.spec;
      const mine = spec.holderIdentity === identity;
      const renewedAt = Date.parse(spec.renewTime ?? spec.acquireTime ?? "1970-01-01T00:00:00Z");
      const expired =
        renewedAt + (spec.leaseDurationSeconds ?? this.#o.leaseDurationSeconds) * 1000 < now.getTime();
      if (spec.holderIdentity && !mine && !expired) return false;
      const next = this.#fresh(
        mine && spec.acquireTime ? new Date(spec.acquireTime) : now,
        (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      );
      next.spec.renewTime = microTime(now);
      next.metadata.resourceVersion = lease.metadata.resourceVersion; // compare-and-swap
      await this.#o.rest.request({
        method: "PUT",
        path: this.#path(),
        body: next,
        what: "renewing the leader lease",
      });
      return true;
    } catch (err) {
      // 409: another replica wrote first. Anything else: the apiserver is unreachable; try again.
      if (!isStatus(err, 409)) this.#o.log.warn({ err: (err as Error).message }, "Lease update failed");
      return false;
    }
  }

  #fresh(acquireTime: Date, transitions: number): Lease {
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.#o.name, namespace: this.#o.namespace },
      spec: {
        holderIdentity: this.#o.identity,
        leaseDurationSeconds: this.#o.leaseDurationSeconds,
        acquireTime: microTime(acquireTime),
        renewTime: microTime(acquireTime),
        leaseTransitions: transitions,
      },
    };
  }
}
