import { describe, expect, it } from "vitest";
import { Reason } from "../api/reasons.ts";
import type { PolicyReport, SourceReport } from "../plan/types.ts";
import { policyStatus, sourcesIn, type ProgrammingOutcome } from "./status.ts";

const outcome: ProgrammingOutcome = {
  dryRun: false,
  failedKeys: new Set(),
  otherFailures: 0,
  sessionIds: new Map(),
};

const mirrored = (name: string): SourceReport => ({
  kind: "Pod",
  name,
  sessionKey: "session-eni-1-aaaaaaaaaaaa",
  networkInterfaceId: "eni-1",
});
const notRunning = (name: string): SourceReport => ({
  kind: "Pod",
  name,
  reason: Reason.PodNotRunning,
  message: "pod is Pending",
});

function statusOf(sources: SourceReport[], o: Partial<ProgrammingOutcome> = {}, keys?: string[]) {
  const report: PolicyReport = {
    policy: "shop/web",
    sources,
    sessionKeys: keys ?? (sources.some((s) => s.sessionKey) ? ["session-eni-1-aaaaaaaaaaaa"] : []),
    shadowedBy: [],
  };
  const status = policyStatus({
    report,
    generation: 1,
    stored: [],
    sessions: new Map(),
    outcome: { ...outcome, ...o },
    now: "2026-11-25T00:00:00Z",
  });
  const cond = (type: string) => status.conditions?.find((c) => c.type === type);
  return {
    status,
    ready: cond("Ready"),
    resolved: cond("SourcesResolved"),
    programmed: cond("SessionsProgrammed"),
  };
}

describe("policy status", () => {
  it("says Pending, not Ready, while selected pods have not started", () => {
    const { ready, resolved } = statusOf([mirrored("shop/web-1"), notRunning("shop/web-2")]);
    expect(resolved).toMatchObject({ status: "False", reason: Reason.Pending });
    expect(resolved?.message).toContain("1 selected pods are not running yet; first: shop/web-2");
    expect(ready).toMatchObject({ status: "False", reason: Reason.Pending });
  });

  it("names a real problem before pods that are only starting", () => {
    const broken: SourceReport = {
      kind: "Pod",
      name: "shop/web-3",
      reason: Reason.UnsupportedInstanceType,
      message: "t2.micro cannot be a mirror source",
    };
    const { ready } = statusOf([notRunning("shop/web-2"), broken]);
    expect(ready).toMatchObject({ status: "False", reason: Reason.UnsupportedInstanceType });
  });

  it("is Ready once every selected pod runs and is mirrored", () => {
    const { ready, resolved } = statusOf([mirrored("shop/web-1")]);
    expect(resolved).toMatchObject({ status: "True", reason: Reason.Resolved });
    expect(ready).toMatchObject({ status: "True" });
  });

  it("counts sessions in place while some wait for a later cycle, and says Programming", () => {
    const keys = ["session-eni-1-aaaaaaaaaaaa", "session-eni-2-aaaaaaaaaaaa", "session-eni-3-aaaaaaaaaaaa"];
    const { ready, programmed } = statusOf(
      [mirrored("shop/web-1")],
      { pendingKeys: new Set([keys[2]!]) },
      keys,
    );
    expect(programmed).toMatchObject({
      status: "False",
      reason: Reason.Programming,
      message: "2 of 3 sessions in place",
    });
    expect(ready).toMatchObject({ status: "False", reason: Reason.Programming });
    // A failure says Retrying rather than progress.
    const failed = statusOf(
      [mirrored("shop/web-1")],
      { pendingKeys: new Set([keys[2]!]), failedKeys: new Set([keys[0]!]) },
      keys,
    );
    expect(failed.programmed).toMatchObject({ status: "False", reason: Reason.Retrying });
  });
});

describe("a session's sources", () => {
  it("counts a dual-stack pod once, though the plan lists both its addresses, and a whole ENI as one", () => {
    const pods = [
      { name: "shop/a", ip: "10.0.64.1" },
      { name: "shop/a", ip: "2600:1f14:abc:de00:1::1" },
      { name: "shop/b", ip: "2600:1f14:abc:de00:1::2" },
      { name: "shop/c", ip: "10.0.64.3" },
    ];
    expect(sourcesIn({ pods })).toBe(3);
    expect(sourcesIn({ pods: [] })).toBe(1);
  });
});
