// The IAM policy in config/iam against the code: every EC2 action the adapter sends is allowed,
// and every change is allowed only on resources tagged for this cluster (or, for creates, only
// with those tags in the request). The few grants on resources the operator references but does
// not own are listed below with the reason each one cannot carry an ownership condition; those on
// ENIs are held to the cluster's VPC instead.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MANAGED_BY_VALUE, TAG_CLUSTER, TAG_MANAGED_BY } from "../../src/api/tags.ts";
import { REPO_ROOT } from "../harness/controlplane.ts";

type Statement = {
  Sid: string;
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
};

const policy = JSON.parse(readFileSync(join(REPO_ROOT, "config/iam/operator-policy.json"), "utf8")) as {
  Version: string;
  Statement: Statement[];
};
const list = (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]);

/** EC2 actions the code sends: the `new …Command(` names in the adapter and the inventory loader. */
function calledActions(): string[] {
  const found = new Set<string>();
  for (const f of ["src/aws/ec2-adapter.ts", "src/aws/inventory.ts"]) {
    const text = readFileSync(join(REPO_ROOT, f), "utf8");
    for (const m of text.matchAll(/new (\w+)Command\(/g)) found.add(`ec2:${m[1]}`);
  }
  return [...found].sort();
}

/** The resource type in an EC2 ARN (`arn:aws:ec2:*:*:traffic-mirror-filter/*` → `traffic-mirror-filter`). */
function resourceType(arn: string): string {
  return arn === "*" ? "*" : arn.split(":")[5]!.split("/")[0]!;
}

/** What each mutating action creates or changes: the resource its ownership must be proven on. */
const SUBJECT: Record<string, string> = {
  "ec2:CreateTrafficMirrorFilter": "traffic-mirror-filter",
  "ec2:CreateTrafficMirrorSession": "traffic-mirror-session",
  "ec2:CreateTrafficMirrorTarget": "traffic-mirror-target",
  // Rules carry no tags (the adapter does not tag them): ownership is proven on their filter.
  "ec2:CreateTrafficMirrorFilterRule": "traffic-mirror-filter",
  "ec2:DeleteTrafficMirrorFilterRule": "traffic-mirror-filter",
  "ec2:ModifyTrafficMirrorFilterRule": "traffic-mirror-filter",
  "ec2:ModifyTrafficMirrorFilterNetworkServices": "traffic-mirror-filter",
  "ec2:ModifyTrafficMirrorSession": "traffic-mirror-session",
  "ec2:DeleteTrafficMirrorFilter": "traffic-mirror-filter",
  "ec2:DeleteTrafficMirrorSession": "traffic-mirror-session",
  "ec2:DeleteTrafficMirrorTarget": "traffic-mirror-target",
};

/**
 * Grants without an ownership condition, on resources that are only referenced. Each pair is
 * action → resource type, with the reason.
 */
const REFERENCED: Record<string, string> = {
  // Collector and networkInterfaceId targets point at ENIs the operator does not own. AWS sets no
  // ec2:Vpc for this action's ENI (see below), so the VPC cannot be the condition either.
  "ec2:CreateTrafficMirrorTarget network-interface": "the target ENI belongs to a collector node",
  "ec2:CreateTrafficMirrorTarget vpc-endpoint": "the GWLB endpoint belongs to the appliance team",
  // trafficMirrorTargetId targets are made by someone else, possibly in another account (RAM).
  "ec2:CreateTrafficMirrorSession traffic-mirror-target": "existing targets chosen by cluster admins",
  "ec2:ModifyTrafficMirrorSession traffic-mirror-target": "existing targets chosen by cluster admins",
  // Rule ARNs cannot carry tags; the filter's ownership is checked in the same request.
  "ec2:CreateTrafficMirrorFilterRule traffic-mirror-filter-rule": "checked on the rule's filter",
  "ec2:DeleteTrafficMirrorFilterRule traffic-mirror-filter-rule": "checked on the rule's filter",
  "ec2:ModifyTrafficMirrorFilterRule traffic-mirror-filter-rule": "checked on the rule's filter",
};

/**
 * A session's source ENI is referenced too (a node's, made by EKS), but unlike the grants above it
 * is scoped: to the cluster's VPC. The Service Authorization Reference lists `ec2:Vpc` for the ENI
 * of CreateTrafficMirrorSession, and not for that of CreateTrafficMirrorTarget, where a condition
 * on it would never match and no ENI target could be made.
 */
const ENI = "network-interface";
const VPC_CONDITION = "arn:aws:ec2:*:*:vpc/${VPC_ID}";
const VPC_SCOPED_ON_ENI = ["ec2:CreateTrafficMirrorSession"];
const NO_VPC_KEY_ON_ENI = ["ec2:CreateTrafficMirrorTarget"];

function ownershipCondition(s: Statement, prefix: "aws:RequestTag" | "ec2:ResourceTag"): boolean {
  const eq = s.Condition?.StringEquals ?? {};
  return (
    eq[`${prefix}/${TAG_MANAGED_BY}`] === MANAGED_BY_VALUE &&
    eq[`${prefix}/${TAG_CLUSTER}`] === "${CLUSTER_NAME}"
  );
}

/** Creates that tag what they make (TagSpecifications), so the request carries the ownership tags. */
const TAGGED_CREATES = new Set([
  "ec2:CreateTrafficMirrorFilter",
  "ec2:CreateTrafficMirrorSession",
  "ec2:CreateTrafficMirrorTarget",
]);

const isMutating = (a: string): boolean => !/^ec2:Describe/.test(a);

describe("IAM policy config/iam/operator-policy.json", () => {
  const called = calledActions();

  it("finds the adapter's calls (the grep still matches the code)", () => {
    expect(called.length).toBeGreaterThanOrEqual(15);
    expect(called).toContain("ec2:CreateTrafficMirrorSession");
    expect(called).toContain("ec2:DescribeInstances");
  });

  it("allows every EC2 action the adapter calls, and nothing else", () => {
    const allowed = new Set(
      policy.Statement.filter((s) => s.Effect === "Allow").flatMap((s) => list(s.Action)),
    );
    expect(called.filter((a) => !allowed.has(a))).toEqual([]);
    // Nothing beyond the calls, except the tagging that creating with TagSpecifications implies.
    expect([...allowed].filter((a) => !called.includes(a))).toEqual(["ec2:CreateTags"]);
    expect([...allowed].some((a) => a.includes("*"))).toBe(false);
  });

  it("grants Resource * only to Describe actions, which cannot be scoped", () => {
    for (const s of policy.Statement.filter((x) => list(x.Resource).includes("*")))
      expect(list(s.Action).filter(isMutating), s.Sid).toEqual([]);
  });

  it("proves ownership for every mutating action on what it creates or changes", () => {
    for (const action of called.filter(isMutating)) {
      const subject = SUBJECT[action];
      expect(subject, `${action} has no subject resource in this test`).toBeDefined();
      const onSubject = policy.Statement.filter(
        (s) => list(s.Action).includes(action) && list(s.Resource).some((r) => resourceType(r) === subject),
      );
      // Creates prove it with the tags they send; everything else with the tags already there.
      const via = TAGGED_CREATES.has(action) ? "aws:RequestTag" : "ec2:ResourceTag";
      expect(onSubject.length, action).toBeGreaterThan(0);
      for (const s of onSubject)
        expect(ownershipCondition(s, via), `${s.Sid} grants ${action} on ${subject}`).toBe(true);
    }
  });

  it("leaves no mutating grant unconditioned except on referenced resources", () => {
    const loose: string[] = [];
    for (const s of policy.Statement.filter((x) => !x.Condition))
      for (const a of list(s.Action).filter(isMutating))
        for (const r of list(s.Resource)) {
          const key = `${a} ${resourceType(r)}`;
          if (!REFERENCED[key]) loose.push(`${s.Sid}: ${key}`);
        }
    expect(loose).toEqual([]);
  });

  it("lets sessions mirror only ENIs in the cluster's VPC, with no VPC condition where AWS has no key", () => {
    const onEnis = policy.Statement.filter(
      (s) => s.Effect === "Allow" && list(s.Resource).some((r) => resourceType(r) === ENI),
    );
    const actions = onEnis.flatMap((s) => list(s.Action));
    expect(actions.sort()).toEqual([...VPC_SCOPED_ON_ENI, ...NO_VPC_KEY_ON_ENI].sort());
    for (const s of onEnis) {
      // ec2:Vpc exists only on the ENI, so another resource in the same statement would never match.
      expect(list(s.Resource).map(resourceType), s.Sid).toEqual([ENI]);
      if (list(s.Action).every((a) => VPC_SCOPED_ON_ENI.includes(a))) {
        expect(Object.keys(s.Condition ?? {}), s.Sid).toEqual(["ArnLike"]);
        expect(s.Condition!.ArnLike, s.Sid).toEqual({ "ec2:Vpc": VPC_CONDITION });
      } else {
        expect(
          list(s.Action).filter((a) => VPC_SCOPED_ON_ENI.includes(a)),
          s.Sid,
        ).toEqual([]);
        expect(JSON.stringify(s.Condition ?? {}), s.Sid).not.toContain("ec2:Vpc");
      }
    }
  });

  it("has only the placeholders its README and docs/real-eks.md fill in", () => {
    const text = readFileSync(join(REPO_ROOT, "config/iam/operator-policy.json"), "utf8");
    const placeholders = [...new Set([...text.matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]))].sort();
    expect(placeholders).toEqual(["CLUSTER_NAME", "VPC_ID"]);
    for (const doc of ["config/iam/README.md", "docs/real-eks.md"]) {
      const line = readFileSync(join(REPO_ROOT, doc), "utf8")
        .split("\n")
        .find((l) => l.includes("< config/iam/operator-policy.json"));
      const filled = [...(line?.match(/envsubst '([^']*)'/)?.[1] ?? "").matchAll(/\$\{(\w+)\}/g)]
        .map((m) => m[1])
        .sort();
      expect(filled, doc).toEqual(placeholders);
    }
  });

  it("lets CreateTags run only as part of the operator's own creates", () => {
    const tagging = policy.Statement.filter((s) => list(s.Action).includes("ec2:CreateTags"));
    expect(tagging).toHaveLength(1);
    const creates = list(tagging[0]!.Condition?.StringEquals?.["ec2:CreateAction"] ?? []).map(
      (a) => `ec2:${a}`,
    );
    expect(creates.sort()).toEqual([...TAGGED_CREATES].sort());
  });

  it("uses the tag keys and value of src/api/tags.ts", () => {
    const text = JSON.stringify(policy);
    expect(text).toContain(TAG_MANAGED_BY);
    expect(text).toContain(TAG_CLUSTER);
    expect(text).toContain(MANAGED_BY_VALUE);
  });
});
