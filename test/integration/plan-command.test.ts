// `plan` prints what the operator would do for the current cluster, and changes nothing in AWS.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { REPO_ROOT } from "../harness/controlplane.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  onlyFrom,
  operatorEnv,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";

const kubeconfig = inject("kubeconfigPath");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const rest = new KubeRest(kc);
const FIRST = 580;
let sim: Ec2Sim;

describe("plan command", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(
      sim.state,
      makeWorld({ nodes: 3, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] }).inventory,
    );
    await createEksNodes(rest, {
      first: FIRST,
      count: 3,
      collectors: [FIRST],
      pool: "plancmd",
      prefix: "plancmd",
    });
    await createNamespaces(rest, ["plancmd"]);
    await createCollectorTarget(rest, "plancmd-collector", {
      allowNodeSources: true,
      ...onlyFrom("plancmd"),
    });
    await createPolicy(rest, {
      namespace: "plancmd",
      name: "nodes",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": "plancmd" } },
        targetRef: { name: "plancmd-collector" },
      },
    });
  });

  afterAll(async () => {
    await sim?.stop();
    await deleteNodes(rest, "plancmd-");
  });

  it("prints the policy's sessions and the changes as JSON, and calls no mutating EC2 action", async () => {
    const env = operatorEnv({
      kubeconfig,
      cluster: "plancmd",
      namespace: "plancmd",
      ec2: sim.url,
      ports: [0, 0],
    });
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["src/cmd/main.ts", "plan", "-o", "json"],
      { cwd: REPO_ROOT, env },
    );
    const plan = JSON.parse(stdout) as {
      diff: { createSessions: { networkInterfaceId: string }[] };
      policies: Record<string, { sessionKeys: string[] }>;
    };
    // Two worker nodes with two ENIs each.
    expect(plan.diff.createSessions).toHaveLength(4);
    expect(plan.policies["plancmd/nodes"]!.sessionKeys).toHaveLength(4);
    expect(sim.calls.filter((c) => /^(Create|Delete|Modify)/.test(c.action))).toEqual([]);
    expect(sim.state.sessions.size).toBe(0);
  });

  it("prints a table a person can read", async () => {
    const env = operatorEnv({
      kubeconfig,
      cluster: "plancmd",
      namespace: "plancmd",
      ec2: sim.url,
      ports: [0, 0],
    });
    const { stdout } = await promisify(execFile)(process.execPath, ["src/cmd/main.ts", "plan"], {
      cwd: REPO_ROOT,
      env,
    });
    expect(stdout).toMatch(/^POLICY\tSESSIONS\tMIRRORED/m);
    expect(stdout).toMatch(/^plancmd\/nodes\t4\t4\t0\t-$/m);
    expect(stdout).toMatch(/^createSessions\t4$/m);
  });
});
