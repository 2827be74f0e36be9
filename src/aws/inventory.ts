/** Reads the EC2 inventory a plan needs, through the port, for the nodes of the cluster. */
import type { Ec2Inventory } from "../api/inventory.ts";
import type { LeanNode } from "../k8s/lean.ts";
import { instanceIdFromProviderId } from "../plan/inventory-index.ts";
import type { MirrorApi } from "./port.ts";

/** Instances of the nodes, their ENIs, every session on those ENIs, and what this cluster owns. */
export async function loadInventory(
  api: MirrorApi,
  opts: { nodes: readonly LeanNode[]; extraTargetIds?: readonly string[] },
): Promise<Ec2Inventory> {
  const instanceIds = [
    ...new Set(opts.nodes.flatMap((n) => instanceIdFromProviderId(n.providerID) ?? [])),
  ].sort();
  const [instances, networkInterfaces, owned] = await Promise.all([
    api.describeInstances(instanceIds),
    api.describeNetworkInterfaces(instanceIds),
    api.describeOwned(),
  ]);
  const onEnis = await api.describeSessionsOnInterfaces(networkInterfaces.map((e) => e.networkInterfaceId));
  const sessions = new Map([...owned.sessions, ...onEnis].map((s) => [s.trafficMirrorSessionId, s]));
  const known = new Set(owned.targets.map((t) => t.trafficMirrorTargetId));
  const otherIds = [
    ...new Set([...(opts.extraTargetIds ?? []), ...onEnis.map((s) => s.trafficMirrorTargetId)]),
  ].filter((id) => !known.has(id));
  const others = await api.describeTargets(otherIds);
  return {
    instances,
    networkInterfaces,
    targets: [...owned.targets, ...others],
    filters: owned.filters,
    sessions: [...sessions.values()],
  };
}
