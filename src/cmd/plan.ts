/**
 * `plan`: prints the plan for the current cluster once, as a table or JSON, without applying it.
 * Uses the same configuration as the operator (TMO_CLUSTER_NAME, AWS_REGION, TMO_EC2_ENDPOINT).
 */
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import pino from "pino";
import { TargetSpecSchema } from "../api/resources.ts";
import { makeEc2Client } from "../aws/client.ts";
import { Ec2MirrorApi } from "../aws/ec2-adapter.ts";
import { loadInventory } from "../aws/inventory.ts";
import { policyInputOf } from "../controller/reconcile.ts";
import { API_GROUP, API_VERSION } from "../controller/runtime.ts";
import { leanCustom, leanNamespace, leanNode, leanPod } from "../k8s/lean.ts";
import { Reflector, type RawObject } from "../k8s/reflector.ts";
import { KubeRest } from "../k8s/rest.ts";
import { apiServerSource } from "../k8s/source.ts";
import { diffSize } from "../plan/diff.ts";
import { planMirroring } from "../plan/plan.ts";
import type { Plan } from "../plan/types.ts";
import { loadOperatorConfig } from "./config.ts";

async function listAll<L>(kc: KubeConfig, path: string, transform: (o: RawObject) => L): Promise<L[]> {
  const r = new Reflector<L>({
    name: path,
    source: apiServerSource({ rest: new KubeRest(kc), watch: new Watch(kc), path }),
    transform,
    log: pino({ level: "silent" }),
  });
  r.start();
  await r.synced();
  const items = [...r.values()];
  await r.stop();
  return items;
}

/** A plan as text: one line per policy, then the changes. */
export function formatPlan(plan: Plan): string {
  const lines = ["POLICY\tSESSIONS\tMIRRORED\tNOT MIRRORED\tBLOCKED"];
  for (const r of [...plan.policies.values()].sort((a, b) => (a.policy < b.policy ? -1 : 1))) {
    const mirrored = r.sources.filter((s) => s.sessionKey).length;
    const not = r.sources.filter((s) => s.reason);
    const reasons = [...new Set(not.map((s) => s.reason))].join(",");
    lines.push(
      `${r.policy}\t${r.sessionKeys.length}\t${mirrored}\t${not.length}${reasons ? ` (${reasons})` : ""}\t${r.blocked?.reason ?? "-"}`,
    );
  }
  lines.push("", "CHANGES");
  for (const [action, list] of Object.entries(plan.diff))
    if ((list as unknown[]).length) lines.push(`${action}\t${(list as unknown[]).length}`);
  lines.push(`total\t${diffSize(plan.diff)}`);
  return lines.join("\n");
}

/** Prints the plan; exit code 0. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { output: { type: "string", short: "o", default: "table" } },
  });
  const config = loadOperatorConfig(process.env, hostname());
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const crd = (plural: string): string => `/apis/${API_GROUP}/${API_VERSION}/${plural}`;
  const [pods, nodes, policies, targets, namespaces] = await Promise.all([
    listAll(kc, "/api/v1/pods", leanPod),
    listAll(kc, "/api/v1/nodes", leanNode),
    listAll(kc, crd("trafficmirrorpolicies"), (o) => leanCustom(o)),
    listAll(kc, crd("trafficmirrortargets"), (o) => leanCustom(o)),
    listAll(kc, "/api/v1/namespaces", leanNamespace),
  ]);
  const client = makeEc2Client({
    region: config.region,
    endpoint: config.ec2Endpoint,
    ...(config.ec2Endpoint ? { credentials: { accessKeyId: "emulator", secretAccessKey: "emulator" } } : {}),
  });
  const api = new Ec2MirrorApi({ client, cluster: config.clusterName });
  const inventory = await loadInventory(api, { nodes });
  const plan = planMirroring({
    clusterName: config.clusterName,
    policies: policies.flatMap((p) => {
      const r = policyInputOf(p, Date.now());
      return r ? [r.input] : [];
    }),
    targets: targets.flatMap((t) => {
      const spec = TargetSpecSchema.safeParse(t.spec);
      return spec.success
        ? [{ name: t.name, generation: t.generation, deleting: t.deleting, spec: spec.data }]
        : [];
    }),
    namespaces,
    pods,
    nodes,
    inventory,
  });
  if (values.output === "json") {
    console.log(
      JSON.stringify(
        {
          desired: plan.desired,
          diff: plan.diff,
          policies: Object.fromEntries(plan.policies),
          targets: Object.fromEntries(plan.targets),
        },
        null,
        2,
      ),
    );
  } else {
    console.log(formatPlan(plan));
  }
  return 0;
}
