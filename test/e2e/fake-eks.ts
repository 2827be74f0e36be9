/**
 * Prints EKS-like Node objects and the matching EC2 emulator seed, as JSON, for clusters whose own
 * nodes have no AWS provider IDs (kind): `node test/e2e/fake-eks.ts nodes|seed`. Node 0 is a
 * collector node; the others are workers in the pool `e2e`. The nodes are tainted so that nothing
 * is scheduled onto them: no kubelet runs there, they exist for the operator to read.
 */
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";
import { COLLECTOR_LABEL, makeWorld } from "../fixtures/world.ts";

const COUNT = 3;
const FIRST = 0;

/** The fake nodes, as a v1 List. */
export function fakeNodes(): unknown {
  const items = Array.from({ length: COUNT }, (_, k) => {
    const i = FIRST + k;
    const node = makeEksNode(
      eksNodeSpec(i, {
        prefix: "e2e-fake",
        labels: k === 0 ? COLLECTOR_LABEL : { "example.com/pool": "e2e" },
      }),
    );
    node.spec!.taints = [{ key: "e2e.twtech.io/fake-node", value: "true", effect: "NoSchedule" }];
    delete node.status;
    return node;
  });
  return { apiVersion: "v1", kind: "List", items };
}

/** The emulator's instances and ENIs for those nodes (POST /_sim/seed). */
export function fakeSeed(): unknown {
  const { inventory } = makeWorld({ nodes: COUNT, podsPerNode: 0, firstIndex: FIRST, collectors: [FIRST] });
  return { instances: inventory.instances, networkInterfaces: inventory.networkInterfaces };
}

const what = process.argv[2];
if (what === "nodes") console.log(JSON.stringify(fakeNodes()));
else if (what === "seed") console.log(JSON.stringify(fakeSeed()));
else if (what !== undefined) {
  console.error("usage: fake-eks.ts nodes|seed");
  process.exitCode = 2;
}
