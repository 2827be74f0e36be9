/* eslint-disable @typescript-eslint/require-await -- the recording port is async only to match the port */
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { MirrorApi } from "../aws/port.ts";
import { indexInventory } from "../plan/inventory-index.ts";
import type { DesiredFilter, DesiredSession, PlanDiff } from "../plan/types.ts";
import { applyPlanDiff, eniOfKey } from "./apply.ts";

/** A port that records the writes in order; each takes 1 ms of a virtual clock. */
function recorder() {
  const calls: string[] = [];
  let now = 0;
  let seq = 0;
  const rec = async (what: string) => {
    calls.push(what);
    now += 1;
  };
  const api: MirrorApi = {
    describeInstances: async () => [],
    describeNetworkInterfaces: async () => [],
    describeSessionsOnInterfaces: async () => [],
    describeOwned: async () => ({ targets: [], filters: [], sessions: [] }),
    describeTargets: async () => [],
    createTarget: async (t) => {
      await rec(`target ${t.key}`);
      return { trafficMirrorTargetId: `tmt-${++seq}`, type: "network-load-balancer", tags: {} };
    },
    deleteTarget: async (id) => rec(`delete target ${id}`),
    createFilter: async (f) => {
      await rec(`filter ${f.key}`);
      return {
        trafficMirrorFilterId: `tmf-${++seq}`,
        ingressRules: [],
        egressRules: [],
        networkServices: [],
        tags: {},
      };
    },
    editFilter: async (e) => {
      await rec(`edit ${e.key}`);
      return [];
    },
    deleteFilter: async (id) => rec(`delete filter ${id}`),
    createSession: async (s) => {
      await rec(`session ${s.key}`);
      return {
        trafficMirrorSessionId: `tms-${++seq}`,
        networkInterfaceId: s.networkInterfaceId,
        trafficMirrorTargetId: s.trafficMirrorTargetId,
        trafficMirrorFilterId: s.trafficMirrorFilterId,
        sessionNumber: s.sessionNumber,
        virtualNetworkId: s.virtualNetworkId,
        tags: {},
      };
    },
    modifySession: async (id) => rec(`modify ${id}`),
    deleteSession: async (id) => rec(`delete session ${id}`),
  };
  return { api, calls, now: () => now };
}

const HASH = "aaaaaaaaaaaa";
const filter = (key: string): DesiredFilter => ({ key, rules: [], networkServices: [], description: "" });
const session = (eni: string, filterKey: string): DesiredSession => ({
  key: `session-${eni}-${HASH}`,
  networkInterfaceId: eni,
  target: { key: "target-t" },
  filterKey,
  sessionNumber: 1,
  virtualNetworkId: 1,
  owners: ["ns/p"],
  pods: [],
  description: "",
});

function diffOf(enis: string[], extra: Partial<PlanDiff> = {}): PlanDiff {
  return {
    deleteSessions: [],
    createTargets: [{ key: "target-t", owners: [], type: "network-load-balancer", description: "" }],
    createFilters: [filter("filter-0123456789abcd"), ...enis.map((e) => filter(`filter-${e}-${HASH}`))],
    editFilters: [],
    modifySessions: [],
    createSessions: enis.map((e) => session(e, `filter-${e}-${HASH}`)),
    deleteFilters: [{ filterId: "tmf-old", key: "filter-old" }],
    deleteTargets: [],
    ...extra,
  };
}

const idx = indexInventory(
  { instances: [], networkInterfaces: [], targets: [], filters: [], sessions: [] },
  "c",
);
const log = pino({ level: "silent" });

describe("applyPlanDiff", () => {
  it("names the ENI of per-ENI keys only", () => {
    expect(eniOfKey(`filter-eni-0abc-${HASH}`, "filter-")).toBe("eni-0abc");
    expect(eniOfKey(`session-eni-0abc-${HASH}`, "session-")).toBe("eni-0abc");
    expect(eniOfKey("filter-0123456789abcd", "filter-")).toBeUndefined();
  });

  it("applies the target and shared filters first, then each ENI's filter and session together, in order", async () => {
    const r = recorder();
    const result = await applyPlanDiff(diffOf(["eni-b", "eni-a", "eni-c"]), {
      api: r.api,
      idx,
      concurrency: 1,
      log,
      order: (x, y) => (x.networkInterfaceId < y.networkInterfaceId ? 1 : -1),
    });
    expect(r.calls).toEqual([
      "target target-t",
      "filter filter-0123456789abcd",
      `filter filter-eni-c-${HASH}`,
      `session session-eni-c-${HASH}`,
      `filter filter-eni-b-${HASH}`,
      `session session-eni-b-${HASH}`,
      `filter filter-eni-a-${HASH}`,
      `session session-eni-a-${HASH}`,
      "delete filter tmf-old",
    ]);
    expect(result.complete).toBe(true);
    expect(result.pendingUnits).toEqual([]);
    expect(result.failures).toEqual([]);
  });

  it("starts no unit after the deadline, leaves the rest pending, and deletes nothing that may be in use", async () => {
    const r = recorder();
    const result = await applyPlanDiff(diffOf(["eni-a", "eni-b", "eni-c", "eni-d"]), {
      api: r.api,
      idx,
      concurrency: 1,
      log,
      deadline: 5,
      now: r.now,
    });
    // The target and the shared filter take 2 ms, each unit 2 ms: units a and b start before 5 ms.
    expect(r.calls.filter((c) => c.startsWith("session"))).toEqual([
      `session session-eni-a-${HASH}`,
      `session session-eni-b-${HASH}`,
    ]);
    expect(result.complete).toBe(false);
    expect(result.pendingUnits.map((u) => u.networkInterfaceId)).toEqual(["eni-c", "eni-d"]);
    expect(r.calls).not.toContain("delete filter tmf-old");
  });

  it("always makes progress: the first unit starts even past the deadline", async () => {
    const r = recorder();
    const result = await applyPlanDiff(diffOf(["eni-a", "eni-b"]), {
      api: r.api,
      idx,
      concurrency: 1,
      log,
      deadline: 0,
      now: r.now,
    });
    expect(r.calls.filter((c) => c.startsWith("session"))).toEqual([`session session-eni-a-${HASH}`]);
    expect(result.pendingUnits).toHaveLength(1);
  });

  it("deletes sessions first, and starts nothing else until they are all done", async () => {
    const r = recorder();
    const deleteSessions = ["1", "2", "3", "4"].map((n) => ({
      sessionId: `tms-${n}`,
      key: `session-x-${n}`,
    }));
    const result = await applyPlanDiff(diffOf(["eni-a"], { deleteSessions }), {
      api: r.api,
      idx,
      concurrency: 1,
      log,
      deadline: 2,
      now: r.now,
    });
    expect(r.calls).toEqual(["delete session tms-1", "delete session tms-2"]);
    expect(result.pendingDeletes).toBe(2);
    expect(result.pendingUnits).toHaveLength(1);
    expect(result.complete).toBe(false);
  });
});
