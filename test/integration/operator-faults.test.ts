// The operator under a hostile EC2: half the calls throttled, some 503s, and new objects invisible
// to Describe for a while. It converges without duplicates, without tight retry loops, and its
// status says it is retrying meanwhile.
import { KubeConfig } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, type PolicyStatus } from "../../src/api/resources.ts";
import { isOwnedBy, TAG_KEY } from "../../src/api/tags.ts";
import type { OperatorRuntime } from "../../src/controller/runtime.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { installCrds } from "../harness/crds.ts";
import {
  createCollectorTarget,
  createEksNodes,
  createNamespaces,
  createPolicy,
  deleteNodes,
  onlyFrom,
} from "../fixtures/scenario.ts";
import { makeWorld } from "../fixtures/world.ts";
import { startTestOperator } from "../fixtures/operator.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const rest = new KubeRest(kc);
const cluster = "faults";
const FIRST = 560;
const WORKERS = 10;
let sim: Ec2Sim;
let runtime: OperatorRuntime;

describe("operator under throttling, server errors and eventual consistency", () => {
  beforeAll(async () => {
    await installCrds(rest);
    sim = await startEc2Sim({
      knobs: { randomThrottle: 0.5, randomServerError: 0.1, eventualConsistencyMs: 1_500 },
    });
    seed(
      sim.state,
      makeWorld({ nodes: WORKERS + 2, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST, FIRST + 1] })
        .inventory,
    );
    await createEksNodes(rest, {
      first: FIRST,
      count: WORKERS + 2,
      collectors: [FIRST, FIRST + 1],
      pool: "faults",
      prefix: "faults",
    });
    await createNamespaces(rest, ["faults-system", "faults-apps"]);
    await createCollectorTarget(rest, "faults-collector", {
      allowNodeSources: true,
      ...onlyFrom("faults-apps"),
    });
    ({ runtime } = await startTestOperator({
      kc,
      rest,
      ec2Url: sim.url,
      cluster: cluster,
      namespace: "faults-system",
      concurrency: 4,
      adapter: { backoffMs: 20, maxAttempts: 3 },
    }));
  });

  afterAll(async () => {
    await runtime?.stop();
    await sim?.stop();
    await deleteNodes(rest, "faults-");
  });

  it("converges to exactly the wanted sessions, says Retrying on the way, and keeps calls bounded", async () => {
    await createPolicy(rest, {
      namespace: "faults-apps",
      name: "workers",
      spec: {
        nodeSelector: { matchLabels: { "example.com/pool": "faults" } },
        targetRef: { name: "faults-collector" },
      },
    });
    const seen = new Set<string>();
    const deadline = Date.now() + 120_000;
    let status: PolicyStatus | undefined;
    for (;;) {
      status = (
        await rest.get<{ status?: PolicyStatus }>(
          `/apis/${API_VERSION}/namespaces/faults-apps/trafficmirrorpolicies/workers`,
          "read",
        )
      ).status;
      const programmed = status?.conditions?.find((c) => c.type === "SessionsProgrammed");
      if (programmed) seen.add(programmed.reason);
      if (programmed?.status === "True") break;
      if (Date.now() > deadline) throw new Error(`not converged; reasons seen: ${[...seen].join(",")}`);
      await sleep(100);
    }
    expect(seen.has("Retrying")).toBe(true);
    const owned = [...sim.state.sessions.values()].filter((s) => isOwnedBy(s.tags, cluster));
    expect(owned).toHaveLength(2 * WORKERS);
    const keys = owned.map((s) => s.tags[TAG_KEY]);
    expect(new Set(keys).size).toBe(keys.length);
    // 20 sessions + their filters + 2 targets is about 45 mutating calls at best; under 50%
    // throttling and 10% errors the retries roughly double that. A tight loop would be thousands.
    const mutating = sim.calls.filter((c) => /^(Create|Delete|Modify)/.test(c.action)).length;
    expect(mutating).toBeLessThan(400);
    expect(sim.calls.filter((c) => c.code === "RequestLimitExceeded").length).toBeGreaterThan(10);
  }, 180_000);
});
