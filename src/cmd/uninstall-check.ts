/**
 * `uninstall-check`: the chart's pre-delete hook. While TrafficMirrorPolicies or
 * TrafficMirrorTargets exist, the operator owns mirror sessions, filters and targets in AWS for
 * them; uninstalling it would leave those in AWS (still copying traffic) and the objects stuck on
 * its finalizer. So the uninstall stops here, saying what to delete first (docs/adr/0013).
 */
import { KubeConfig } from "@kubernetes/client-node";
import { API_VERSION } from "../api/resources.ts";
import { KubeRest } from "../k8s/rest.ts";

interface Listed {
  items: { metadata: { name: string; namespace?: string } }[];
}

/** How many names of each kind the message lists. */
const SHOWN = 5;

function names(l: Listed): string {
  const all = l.items.map((i) => (i.metadata.namespace ? `${i.metadata.namespace}/` : "") + i.metadata.name);
  return all.slice(0, SHOWN).join(", ") + (all.length > SHOWN ? `, and ${all.length - SHOWN} more` : "");
}

/** Resolves to 0 when nothing of the operator's is left, 1 (with the reason on stderr) otherwise. */
export async function run(_argv: string[]): Promise<number> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const rest = new KubeRest(kc);
  const policies = await rest.get<Listed>(`/apis/${API_VERSION}/trafficmirrorpolicies`, "listing policies");
  const targets = await rest.get<Listed>(`/apis/${API_VERSION}/trafficmirrortargets`, "listing targets");
  if (policies.items.length === 0 && targets.items.length === 0) {
    console.log("No TrafficMirrorPolicy or TrafficMirrorTarget left: the uninstall may go on.");
    return 0;
  }
  const found = [
    policies.items.length > 0 ? `TrafficMirrorPolicies ${names(policies)}` : "",
    targets.items.length > 0 ? `TrafficMirrorTargets ${names(targets)}` : "",
  ].filter(Boolean);
  console.error(
    `Not uninstalling: ${found.join("; ")} still exist, and the operator owns their mirror sessions, ` +
      "filters and targets in AWS, which would stay there without it (copying traffic, and the objects " +
      "stuck on its finalizer). Delete them first and the operator removes what it made: " +
      "kubectl delete trafficmirrorpolicies --all -A --wait && kubectl delete trafficmirrortargets --all --wait; " +
      "then uninstall again. To uninstall anyway and keep them as they are: helm uninstall --no-hooks.",
  );
  return 1;
}
