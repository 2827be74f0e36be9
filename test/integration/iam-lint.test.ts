// parliament, an IAM linter that carries AWS's Service Authorization Reference, on the policy as a
// user fills it in: every condition key must be one AWS sets for the action it guards (a key it
// does not set never matches, and the grant is silently dead). iam.test.ts checks the policy
// against the code; this checks it against AWS's own list.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";

type Finding = { issue: string; detail: unknown; location: { line: number } };
type Statement = { Sid: string; Condition?: Record<string, Record<string, string>> };

const template = readFileSync(join(REPO_ROOT, "config/iam/operator-policy.json"), "utf8");
const fill = (text: string): string =>
  text.replaceAll("${CLUSTER_NAME}", "prod-eu").replaceAll("${VPC_ID}", "vpc-0123456789abcdef0");

/** parliament's findings on a policy, except RESOURCE_MISMATCH (see below). */
function lint(policyText: string): Finding[] {
  const r = spawnSync(join(TOOLS_BIN, "parliament"), ["--json", "--string", policyText], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (r.error) throw new Error("running parliament (make tools installs it)", { cause: r.error });
  expect(r.stderr).toBe("");
  const findings = r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Finding);
  // parliament judges each statement alone and wants every resource type an action needs in it;
  // this policy puts each resource type in the statement whose condition fits it, on purpose.
  return findings.filter((f) => f.issue !== "RESOURCE_MISMATCH");
}

describe("config/iam/operator-policy.json under parliament", () => {
  it("has no findings", () => {
    expect(lint(fill(template))).toEqual([]);
  });

  it("would flag a VPC condition on ENI targets, where AWS sets no ec2:Vpc", () => {
    const policy = JSON.parse(fill(template)) as { Statement: Statement[] };
    const targets = policy.Statement.find((s) => s.Sid === "ReferenceTargetEnis")!;
    targets.Condition = { ArnLike: { "ec2:Vpc": "arn:aws:ec2:*:*:vpc/vpc-0123456789abcdef0" } };
    const findings = lint(JSON.stringify(policy, null, 2));
    expect(findings.map((f) => f.issue)).toEqual(["UNKNOWN_CONDITION_FOR_ACTION"]);
  });
});
