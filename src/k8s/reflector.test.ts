import pino from "pino";
import { describe, expect, it } from "vitest";
import {
  Reflector,
  type CacheChange,
  type ListWatchSource,
  type RawObject,
  type WatchEvent,
} from "./reflector.ts";

const log = pino({ level: "silent" });

function obj(name: string, rv: string, extra: Record<string, unknown> = {}): RawObject {
  return { metadata: { name, namespace: "ns", resourceVersion: rv }, ...extra };
}

/** A scripted source: each list call answers the next list; each watch replays the next script. */
function scripted(opts: {
  lists: RawObject[][];
  watches: { events: WatchEvent[]; end?: unknown }[];
}): ListWatchSource & { listCalls: number; watchRvs: string[] } {
  const s = {
    listCalls: 0,
    watchRvs: [] as string[],
    list() {
      const items = opts.lists[Math.min(s.listCalls, opts.lists.length - 1)]!;
      s.listCalls++;
      return Promise.resolve({ items, resourceVersion: String(100 * s.listCalls) });
    },
    watch({ resourceVersion, onEvent, done }: Parameters<ListWatchSource["watch"]>[0]) {
      s.watchRvs.push(resourceVersion);
      const script = opts.watches.shift();
      if (!script) return Promise.resolve({ abort: () => done(null) }); // idle until stopped
      queueMicrotask(() => {
        for (const e of script.events) onEvent(e);
        done(script.end ?? null);
      });
      return Promise.resolve({ abort: () => undefined });
    },
  };
  return s;
}

async function settle(r: { stop(): Promise<void> }, pred: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((res) => setTimeout(res, 5));
  await r.stop();
}

describe("Reflector", () => {
  it("lists, then applies watch events to a lean cache and reports only real changes", async () => {
    const changes: CacheChange<{ ip: string }>[] = [];
    const src = scripted({
      lists: [[obj("a", "1", { ip: "10.0.0.1" }), obj("b", "2", { ip: "10.0.0.2" })]],
      watches: [
        {
          events: [
            { type: "MODIFIED", object: obj("a", "3", { ip: "10.0.0.1", noise: 1 }) },
            { type: "MODIFIED", object: obj("b", "4", { ip: "10.0.0.9" }) },
            { type: "DELETED", object: obj("a", "5") },
            { type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } },
          ],
        },
      ],
    });
    const r = new Reflector({
      name: "t",
      source: src,
      log,
      transform: (o) => ({ ip: o.ip as string }),
      onChange: (c) => changes.push(c),
    });
    r.start();
    await r.synced();
    await settle(r, () => src.watchRvs.length >= 2);
    expect(r.size).toBe(1);
    expect(r.get("ns/b")).toEqual({ ip: "10.0.0.9" });
    // "a" changed only in a field the lean copy drops: no change reported for it.
    expect(changes.map((c) => `${c.type} ${c.key}`)).toEqual([
      "added ns/a",
      "added ns/b",
      "modified ns/b",
      "deleted ns/a",
    ]);
    // The second watch resumes from the bookmark's resource version.
    expect(src.watchRvs).toEqual(["100", "7"]);
  });

  it("lists again after 410 Gone and reconciles what changed meanwhile", async () => {
    const changes: string[] = [];
    const src = scripted({
      lists: [
        [obj("a", "1"), obj("b", "2")],
        [obj("b", "2"), obj("c", "9")],
      ],
      watches: [{ events: [{ type: "ERROR", object: { code: 410 } }] }],
    });
    const r = new Reflector({
      name: "t",
      source: src,
      log,
      transform: (o) => o.metadata?.name,
      onChange: (c) => changes.push(`${c.type} ${c.key}`),
    });
    r.start();
    await settle(r, () => src.listCalls >= 2 && src.watchRvs.length >= 2);
    expect(r.stats.relistsOnGone).toBe(1);
    expect([...r.values()].sort()).toEqual(["b", "c"]);
    expect(changes).toEqual(["added ns/a", "added ns/b", "deleted ns/a", "added ns/c"]);
  });

  it("makes each page of a list lean before asking for the next, and on a relist transforms only what changed", async () => {
    // What happened, in order: "list N" when a page is asked for, "lean X" when X is transformed.
    const trace: string[] = [];
    const pages = [
      [obj("a", "1"), obj("b", "2")],
      [obj("c", "3"), obj("d", "4")],
    ];
    let lists = 0;
    let watches = 0;
    const source: ListWatchSource = {
      list({ continueToken }) {
        lists++;
        const page = continueToken === undefined ? 0 : 1;
        trace.push(`list ${page}`);
        // The relist (third call on): b changed, d is gone, the others are as they were.
        const items =
          lists <= 2 ? pages[page]! : page === 0 ? [obj("a", "1"), obj("b", "5")] : [obj("c", "3")];
        return Promise.resolve({
          items,
          resourceVersion: String(lists),
          continueToken: page === 0 ? "next" : undefined,
        });
      },
      // The first watch is told its version is too old (list again); the next idles until stopped.
      watch({ onEvent, done }) {
        watches++;
        if (watches > 1) return Promise.resolve({ abort: () => done(null) });
        queueMicrotask(() => {
          onEvent({ type: "ERROR", object: { code: 410 } });
          done(null);
        });
        return Promise.resolve({ abort: () => undefined });
      },
    };
    const r = new Reflector({
      name: "t",
      source,
      log,
      pageSize: 2,
      transform: (o) => {
        trace.push(`lean ${o.metadata?.name}`);
        return o.metadata?.resourceVersion;
      },
    });
    r.start();
    await settle(r, () => lists >= 4 && watches >= 2);
    expect(trace).toEqual([
      "list 0",
      "lean a",
      "lean b",
      "list 1",
      "lean c",
      "lean d",
      // The relist: only b (a new version) is transformed; a and c are kept as they were.
      "list 0",
      "lean b",
      "list 1",
    ]);
    expect([r.get("ns/a"), r.get("ns/b"), r.get("ns/c"), r.get("ns/d")]).toEqual(["1", "5", "3", undefined]);
  });
  it("backs off and retries after a watch error without losing the cache", async () => {
    const src = scripted({
      lists: [[obj("a", "1")]],
      watches: [
        { events: [], end: new Error("connection reset") },
        { events: [{ type: "ADDED", object: obj("d", "3") }] },
      ],
    });
    const r = new Reflector({
      name: "t",
      source: src,
      log,
      transform: (o) => o.metadata?.name,
      backoff: { initialMs: 1, maxMs: 2 },
    });
    r.start();
    await settle(r, () => r.size === 2);
    expect(r.stats.restarts).toBe(1);
    expect(r.stats.lastError).toMatch(/connection reset/);
    expect(src.listCalls).toBe(1); // a plain error resumes the watch; only 410 relists
    expect([...r.values()].sort()).toEqual(["a", "d"]);
  });

  it("counts as unhealthy before its first list and after a silent spell", async () => {
    const src = scripted({ lists: [[]], watches: [] });
    const r = new Reflector({ name: "t", source: src, log, transform: () => 1, staleAfterMs: 1_000 });
    expect(r.healthy()).toBe(false);
    r.start();
    await r.synced();
    expect(r.healthy()).toBe(true);
    expect(r.healthy(Date.now() + 5_000)).toBe(false);
    await r.stop();
  });
});
