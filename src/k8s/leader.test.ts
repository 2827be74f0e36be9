import { describe, expect, it } from "vitest";
import { microTime } from "./leader.ts";

describe("microTime", () => {
  it("writes exactly six fractional digits, as the apiserver's MicroTime parser requires", () => {
    expect(microTime(new Date("2026-11-24T19:38:50.363Z"))).toBe("2026-11-24T19:38:50.363000Z");
    expect(microTime(new Date(0))).toBe("1970-01-01T00:00:00.000000Z");
  });
});
