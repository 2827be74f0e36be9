import { describe, expect, it } from "vitest";
import { isOwnedBy, ownershipTags, TAG_CLUSTER, TAG_KEY, TAG_MANAGED_BY, TAG_OWNERS } from "./tags.ts";

describe("ownership tags", () => {
  it("marks what the operator makes with product, cluster and key", () => {
    const tags = ownershipTags("prod-east", "sess-abc", ["team-a/web"]);
    expect(tags[TAG_MANAGED_BY]).toBe("traffic-mirror-operator");
    expect(tags[TAG_CLUSTER]).toBe("prod-east");
    expect(tags[TAG_KEY]).toBe("sess-abc");
    expect(tags[TAG_OWNERS]).toBe("team-a/web");
    expect(isOwnedBy(tags, "prod-east")).toBe(true);
  });

  it("never claims another cluster's or an unmarked resource", () => {
    expect(isOwnedBy(ownershipTags("prod-west", "k"), "prod-east")).toBe(false);
    expect(isOwnedBy({ [TAG_CLUSTER]: "prod-east" }, "prod-east")).toBe(false);
    expect(isOwnedBy(undefined, "prod-east")).toBe(false);
  });

  it("keeps the owners tag within AWS's 256-character value limit", () => {
    const owners = Array.from({ length: 100 }, (_, i) => `namespace-${i}/policy-${i}`);
    expect(ownershipTags("c", "k", owners)[TAG_OWNERS]!.length).toBe(256);
  });
});
