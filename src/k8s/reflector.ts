/**
 * A list-and-watch cache that keeps a lean copy of each object and never stops for good.
 *
 * client-node's informer keeps whole objects and stops after an error unless restarted; the
 * operator needs lean copies (100,000 pods must fit comfortably), restarts with backoff, a relist
 * on 410 Gone, and a way to see that a watch went quiet. So this is written here, on client-node's
 * `Watch` and the paged list API.
 */
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";

/** A raw Kubernetes object as the apiserver sends it. */
export interface RawObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** One page of a list call. */
export interface ListPage {
  items: RawObject[];
  resourceVersion: string;
  continueToken?: string;
}

/** A watch event. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: RawObject & { code?: number };
}

/** Where a reflector reads from: the apiserver, or a fake in a unit test. */
export interface ListWatchSource {
  list(opts: { limit: number; continueToken?: string }): Promise<ListPage>;
  /** Starts a watch; `done` is called once when it ends (null for a clean end). */
  watch(opts: {
    resourceVersion: string;
    onEvent: (e: WatchEvent) => void;
    done: (err: unknown) => void;
  }): Promise<{
    abort(): void;
  }>;
}

/** A change to the cache. */
export interface CacheChange<L> {
  type: "added" | "modified" | "deleted";
  key: string;
  old?: L;
  now?: L;
}

/** What a `Reflector` needs. */
export interface ReflectorOptions<L> {
  name: string;
  source: ListWatchSource;
  /** The lean copy of an object; undefined drops it from the cache. */
  transform: (obj: RawObject) => L | undefined;
  log: Logger;
  onChange?: (change: CacheChange<L>) => void;
  /** Whether two lean copies are the same (default: structural equality). */
  equals?: (a: L, b: L) => boolean;
  pageSize?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** A watch with no event, bookmark or restart for this long counts as stalled. */
  staleAfterMs?: number;
}

/** An error that means the resource version is too old: list again. */
export class GoneError extends Error {}

/** Counters a reflector keeps, for metrics and health. */
export interface ReflectorStats {
  lists: number;
  watches: number;
  restarts: number;
  relistsOnGone: number;
  lastActivityAt: number;
  lastError?: string;
}

function keyOf(obj: RawObject): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : (m.name ?? "");
}

function structurallyEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A self-healing list-and-watch cache of lean objects. */
export class Reflector<L> {
  readonly #o: Required<Omit<ReflectorOptions<L>, "onChange">> & Pick<ReflectorOptions<L>, "onChange">;
  readonly #items = new Map<string, L>();
  readonly #versions = new Map<string, string>();
  #rv: string | undefined;
  #stopped = false;
  #current: { abort(): void } | undefined;
  #running: Promise<void> | undefined;
  #synced!: () => void;
  readonly #syncedPromise = new Promise<void>((r) => (this.#synced = r));
  readonly stats: ReflectorStats = { lists: 0, watches: 0, restarts: 0, relistsOnGone: 0, lastActivityAt: 0 };

  constructor(opts: ReflectorOptions<L>) {
    this.#o = {
      equals: structurallyEqual,
      pageSize: 500,
      backoff: { initialMs: 200, maxMs: 10_000 },
      staleAfterMs: 120_000,
      ...opts,
    };
  }

  /** Starts listing and watching in the background. */
  start(): void {
    this.#running ??= this.#loop();
  }

  /** Stops the watch; the cache keeps its last contents. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#current?.abort();
    await this.#running;
  }

  /** Resolves once the first full list is in the cache. */
  synced(): Promise<void> {
    return this.#syncedPromise;
  }

  /** Whether the watch has shown life within `staleAfterMs` (false before the first list). */
  healthy(now = Date.now()): boolean {
    return this.stats.lists > 0 && now - this.stats.lastActivityAt < this.#o.staleAfterMs;
  }

  /** The lean copy under `namespace/name` (or `name`). */
  get(key: string): L | undefined {
    return this.#items.get(key);
  }

  /** Every lean copy. */
  values(): IterableIterator<L> {
    return this.#items.values();
  }

  /** Number of cached objects. */
  get size(): number {
    return this.#items.size;
  }

  async #loop(): Promise<void> {
    let delay = this.#o.backoff.initialMs;
    while (!this.#stopped) {
      try {
        if (this.#rv === undefined) await this.#relist();
        const delivered = await this.#watchOnce(this.#rv!);
        if (delivered) delay = this.#o.backoff.initialMs;
      } catch (err) {
        if (this.#stopped) break;
        if (err instanceof GoneError) {
          this.stats.relistsOnGone++;
          this.#o.log.info({ reflector: this.#o.name }, "Resource version expired, listing again");
          this.#rv = undefined;
          continue;
        }
        this.stats.restarts++;
        this.stats.lastError = err instanceof Error ? err.message : String(err);
        this.#o.log.warn(
          { reflector: this.#o.name, err: this.stats.lastError, delayMs: delay },
          "Watch failed, retrying",
        );
        // Full jitter keeps many operators from retrying in step after an apiserver restart.
        await sleep(Math.random() * delay);
        delay = Math.min(delay * 2, this.#o.backoff.maxMs);
      }
    }
  }

  async #relist(): Promise<void> {
    // Each page is made lean before the next is asked for: at 30,000 pods the raw objects of a
    // whole list are over 140 MiB of heap, their lean copies a tenth of that. Only objects whose
    // resource version changed are transformed again.
    const fresh = new Map<string, { rv: string; lean?: L | undefined }>();
    let continueToken: string | undefined;
    let rv: string;
    do {
      const page = await this.#o.source.list({ limit: this.#o.pageSize, continueToken });
      for (const obj of page.items) {
        const key = keyOf(obj);
        const version = obj.metadata?.resourceVersion ?? "";
        fresh.set(
          key,
          this.#versions.get(key) === version
            ? { rv: version }
            : { rv: version, lean: this.#o.transform(obj) },
        );
      }
      continueToken = page.continueToken;
      rv = page.resourceVersion;
    } while (continueToken);
    for (const key of [...this.#items.keys()]) {
      if (!fresh.has(key)) this.#delete(key);
    }
    for (const [key, f] of fresh) {
      if ("lean" in f) this.#put(key, f.lean, f.rv);
    }
    this.#rv = rv;
    this.stats.lists++;
    this.stats.lastActivityAt = Date.now();
    this.#synced();
  }

  /** Runs one watch to its end; resolves true if it delivered anything. */
  #watchOnce(resourceVersion: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let delivered = false;
      let failed: unknown;
      const onEvent = (e: WatchEvent): void => {
        if (failed !== undefined) return;
        try {
          this.#apply(e);
          delivered = true;
        } catch (err) {
          failed = err;
          this.#current?.abort();
        }
      };
      const done = (err: unknown): void => {
        this.#current = undefined;
        if (failed !== undefined) reject(asError(failed));
        else if (err && !isTimeout(err) && !this.#stopped) reject(asError(err));
        else resolve(delivered);
      };
      this.stats.watches++;
      this.stats.lastActivityAt = Date.now();
      this.#o.source.watch({ resourceVersion, onEvent, done }).then(
        (w) => {
          this.#current = w;
          if (this.#stopped) w.abort();
        },
        (err: unknown) => reject(asError(err)),
      );
    });
  }

  #apply(e: WatchEvent): void {
    this.stats.lastActivityAt = Date.now();
    if (e.type === "ERROR") {
      if (e.object.code === 410) throw new GoneError("resource version too old");
      throw new Error(`watch error: ${JSON.stringify(e.object).slice(0, 200)}`);
    }
    const rv = e.object.metadata?.resourceVersion;
    if (rv) this.#rv = rv;
    if (e.type === "BOOKMARK") return;
    const key = keyOf(e.object);
    if (e.type === "DELETED") this.#delete(key);
    else this.#upsert(key, e.object);
  }

  #upsert(key: string, obj: RawObject): void {
    this.#put(key, this.#o.transform(obj), obj.metadata?.resourceVersion ?? "");
  }

  /** Stores an object's lean copy (undefined: drops it) at its resource version. */
  #put(key: string, lean: L | undefined, version: string): void {
    if (lean === undefined) {
      this.#delete(key);
      return;
    }
    const old = this.#items.get(key);
    this.#items.set(key, lean);
    this.#versions.set(key, version);
    if (old === undefined) this.#o.onChange?.({ type: "added", key, now: lean });
    else if (!this.#o.equals(old, lean)) this.#o.onChange?.({ type: "modified", key, old, now: lean });
  }

  #delete(key: string): void {
    const old = this.#items.get(key);
    this.#versions.delete(key);
    if (old === undefined) return;
    this.#items.delete(key);
    this.#o.onChange?.({ type: "deleted", key, old });
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
}
