import { describe, expect, it } from "vitest";
import { eniTargetCapacity, mirrorSourceSupport } from "./instance-types.ts";

describe("mirrorSourceSupport", () => {
  it.each([
    ["m5.large", true],
    ["t3.medium", true],
    ["c5n.18xlarge", true],
    ["m4.xlarge", true],
    ["m6i.large", false],
    ["c7g.2xlarge", false],
    ["r7iz.large", false],
    ["m7i-flex.large", false],
    ["t2.micro", false],
    ["m5.metal", false],
    ["m3.medium", false],
  ])("%s → supported %s", (type, supported) => {
    const v = mirrorSourceSupport(type);
    expect(v.supported).toBe(supported);
    if (!supported) expect(v.message).toContain(type);
  });
});

describe("eniTargetCapacity", () => {
  it("is 100 on the largest sizes and 10 otherwise", () => {
    expect(eniTargetCapacity("m5.24xlarge")).toBe(100);
    expect(eniTargetCapacity("c5.large")).toBe(10);
    expect(eniTargetCapacity(undefined)).toBe(10);
  });
});
