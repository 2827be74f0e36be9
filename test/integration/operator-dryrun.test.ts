// Dry-run: the operator plans and reports, and changes nothing in AWS.
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { isStatus, KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  onlyFrom,
  until,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";
import { startTestOperator } from "../fixtures/operator.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const FIRST = 600;
let sim: Ec2Sim;
let runtime: OperatorRuntime;

describe("dry-run", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim();
    seed(
      sim.state,
      makeWorld({ nodes: 3, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] }).inventory,
    );
    await createEksNodes(rest, { first: FIRST, count: 3, collectors: [FIRST], pool: "dry", prefix: "dry" });
    await createNamespaces(rest, ["dry-system", "dry"]);
    await createCollectorTarget(rest, "dry-collector", { allowNodeSources: true, ...onlyFrom("dry") });
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: "dry",
      namespace: "dry-system",
      dryRun: true,
      // The account's quota as this cluster's share: one session short of what the policy wants.
      sessionBudget: 3,
    }));
  });

  afterAll(async () => {
    await runtime?.stop();
    await sim?.stop();
    await deleteNodes(rest, "dry-");
  });

  it("reports what it would do within its session budget and makes no mutating EC2 call nor VNI map", async () => {
    await createPolicy(rest, {
      namespace: "dry",
      name: "nodes",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": "dry" } },
        targetRef: { name: "dry-collector" },
      },
    });
    const status = await until("a dry-run status", async () => {
      const p = await rest.get<{ status?: PolicyStatus }>(
        `/apis/${API_VERSION}/namespaces/dry/trafficmirrorpolicies/nodes`,
        "read",
      );
      return p.status?.conditions?.find((c) => c.type === "SessionsProgrammed")?.reason === "DryRun"
        ? p.status
        : undefined;
    });
    // Two worker nodes, two ENIs each: four sessions wanted, three within the budget.
    expect(status.sessionCount).toBe(3);
    expect(status.unmirrored?.map((u) => u.reason)).toEqual(["QuotaFull"]);
    expect(status.conditions?.find((c) => c.type === "WithinLimits")?.reason).toBe("QuotaFull");
    expect(sim.calls.filter((c) => /^(Create|Delete|Modify)/.test(c.action))).toEqual([]);
    expect(sim.state.sessions.size).toBe(0);
    // The VNI map names sessions for collectors; a dry run makes none and writes no map (a dry-run
    // operator beside a real one would otherwise overwrite the real one's).
    let map = "present";
    try {
      await rest.get(`/api/v1/namespaces/dry-system/configmaps/${VNI_MAP_CONFIGMAP}`, "read the VNI map");
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
      map = "absent";
    }
    expect(map).toBe("absent");
  });
});
