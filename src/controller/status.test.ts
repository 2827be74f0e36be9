import { describe, expect, it } from "vitest";
import { Reason } from "../api/reasons.ts";
import type { PolicyReport, SourceReport } from "../plan/types.ts";
import { policyStatus, type ProgrammingOutcome } from "./status.ts";

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

function statusOf(sources: SourceReport[]) {
  const report: PolicyReport = {
    policy: "shop/web",
    sources,
    sessionKeys: sources.some((s) => s.sessionKey) ? ["session-eni-1-aaaaaaaaaaaa"] : [],
    shadowedBy: [],
  };
  const status = policyStatus({
    report,
    generation: 1,
    stored: [],
    sessions: new Map(),
    outcome,
    now: "2026-11-25T00:00:00Z",
  });
  const cond = (type: string) => status.conditions?.find((c) => c.type === type);
  return { status, ready: cond("Ready"), resolved: cond("SourcesResolved") };
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
});
