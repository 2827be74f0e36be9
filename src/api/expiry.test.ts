import { describe, expect, it } from "vitest";
import { parseDuration, policyEnd } from "./expiry.ts";

describe("parseDuration", () => {
  it("reads hours, minutes and seconds in that order", () => {
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("1h0m5s")).toBe(3_605_000);
    expect(parseDuration("90s")).toBe(90_000);
  });

  it("refuses what the CRD refuses", () => {
    for (const bad of ["", "10", "5m1h", "1.5h", "-1m", "10min", "1d"])
      expect(parseDuration(bad), bad).toBeUndefined();
  });
});

describe("policyEnd", () => {
  const created = "2026-12-01T10:00:00Z";
  it("counts a duration from the creation time", () => {
    expect(policyEnd({ duration: "10m" }, created)).toEqual({
      atMs: Date.parse("2026-12-01T10:10:00Z"),
      by: "duration",
    });
  });

  it("takes the earlier of duration and expiresAt", () => {
    expect(policyEnd({ duration: "10m", expiresAt: "2026-12-01T10:05:00Z" }, created)).toEqual({
      atMs: Date.parse("2026-12-01T10:05:00Z"),
      by: "expiresAt",
    });
    expect(policyEnd({ duration: "1m", expiresAt: "2026-12-01T10:05:00+00:00" }, created)?.by).toBe(
      "duration",
    );
  });

  it("is undefined for a policy without an end", () => {
    expect(policyEnd({}, created)).toBeUndefined();
  });
});
