/**
 * `kubectl trafficmirror status` and `why`: what the policies say, as a table, and for one pod
 * every policy that selects it and whether (and why not) it is mirrored.
 */
import type { Duplex } from "node:stream";
import type { KubeRest } from "../k8s/rest.ts";
import { matches } from "../plan/selectors.ts";
import { UserError } from "./args.ts";
import { asUser, explain, isNotFound, paths, readyOf, type PodObject, type PolicyObject } from "./cluster.ts";

/** Policy-level reasons: the whole policy mirrors nothing, whatever the pod. */
const POLICY_REASONS = new Set([
  "Suspended",
  "Expired",
  "TargetNotFound",
  "TargetNotReady",
  "NamespaceNotAllowed",
  "NodeSourcesNotAllowed",
  "InvalidSpec",
  "Deleting",
]);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2)))
        .join("")
        .trimEnd(),
    )
    .join("\n");
}

/** Packets the collectors kept per policy (`namespace/name`), when the caller may read them. */
export type CollectorCounts = ReadonlyMap<string, number> | { unavailable: string };

/** The status table of the policies in `namespace` (every namespace when undefined). */
export async function statusReport(
  rest: KubeRest,
  namespace: string | undefined,
  collector: () => Promise<CollectorCounts>,
): Promise<string> {
  const where = namespace ? `in namespace ${namespace}` : "in all namespaces";
  const list = await asUser(`list TrafficMirrorPolicies ${where}`, () =>
    rest.get<{ items: PolicyObject[] }>(paths.policies(namespace), "listing policies"),
  );
  if (list.items.length === 0) return `No TrafficMirrorPolicies ${where}.`;
  const counts = await collector();
  const rows = [
    ["POLICY", "TARGET", "READY", "REASON", "PODS", "MIRRORED", "ENIS", "SESSIONS", "ENDS", "COLLECTED"],
  ];
  const details: string[] = [];
  for (const p of list.items) {
    rows.push(row(p, counts));
    details.push(...detailLines(p));
  }
  const note = "unavailable" in counts ? `\ncollector counts: ${counts.unavailable}` : "";
  return `${table(rows)}${details.length ? `\n\n${details.join("\n")}` : ""}${note}`;
}

function row(p: PolicyObject, counts: CollectorCounts): string[] {
  const key = `${p.metadata.namespace}/${p.metadata.name}`;
  const s = p.status;
  const ready = readyOf(p);
  return [
    key,
    p.spec.targetRef.name,
    ready?.status ?? "-",
    ready?.reason ?? "-",
    ...[s?.selectedPods, s?.mirroredSources, s?.mirroredEnis, s?.sessionCount].map((n) => String(n ?? 0)),
    s?.expiresAt ?? "-",
    "unavailable" in counts ? "-" : `${counts.get(key) ?? 0} packets`,
  ];
}

function detailLines(p: PolicyObject): string[] {
  const key = `${p.metadata.namespace}/${p.metadata.name}`;
  return [
    ...(p.status?.sessions ?? []).map(
      (x) =>
        `  ${key}: ${x.sessionId ?? "(being made)"} on ${x.networkInterfaceId}${x.nodeName ? ` (${x.nodeName})` : ""} number ${x.sessionNumber} VNI ${x.virtualNetworkId}, ${x.sources} sources`,
    ),
    ...(p.status?.unmirrored ?? []).map((u) => `  ${key}: ${u.name} not mirrored: ${u.reason}: ${u.message}`),
  ];
}

/** For one pod, each policy that selects it and whether it is mirrored, with the reason if not. */
export async function whyReport(rest: KubeRest, namespace: string, podArg: string): Promise<string> {
  const m = /^(?:pods?\/)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(podArg);
  if (!m) throw new UserError(`${podArg} is not pod/NAME`);
  const name = m[1]!;
  let pod: PodObject;
  try {
    pod = await rest.get<PodObject>(`/api/v1/namespaces/${namespace}/pods/${name}`, "reading pod");
  } catch (err) {
    if (isNotFound(err)) throw new UserError(`pod ${name} does not exist in namespace ${namespace}`);
    throw explain(err, `get pods in namespace ${namespace}`);
  }
  const list = await asUser(`list TrafficMirrorPolicies in namespace ${namespace}`, () =>
    rest.get<{ items: PolicyObject[] }>(paths.policies(namespace), "listing policies"),
  );
  const labels = pod.metadata.labels ?? {};
  const selecting = list.items.filter((p) => p.spec.podSelector && matches(p.spec.podSelector, labels));
  const key = `${namespace}/${name}`;
  const lines = [
    `pod ${key} (node ${pod.spec.nodeName ?? "none yet"}, IP ${pod.status?.podIP ?? "none yet"}):`,
  ];
  if (selecting.length === 0) lines.push(`  no TrafficMirrorPolicy in ${namespace} selects it`);
  for (const p of selecting) lines.push(`  ${p.metadata.name}: ${verdict(p, key, pod)}`);
  return lines.join("\n");
}

function verdict(p: PolicyObject, key: string, pod: PodObject): string {
  const ready = readyOf(p);
  const s = p.status;
  if (!ready || (s?.observedGeneration ?? 0) < (p.metadata.generation ?? 0))
    return "not known yet: the operator has not reported on this version of the policy";
  if (POLICY_REASONS.has(ready.reason)) return `not mirrored: ${ready.reason}: ${ready.message}`;
  const listed = s?.unmirrored?.find((u) => u.name === key);
  if (listed) return `not mirrored: ${listed.reason}: ${listed.message}`;
  return mirroredVerdict(p, pod);
}

function mirroredVerdict(p: PolicyObject, pod: PodObject): string {
  const s = p.status;
  const shown = s?.unmirrored?.length ?? 0;
  const unlisted = (s?.selectedPods ?? 0) - (s?.mirroredSources ?? 0) - shown;
  if (unlisted > 0)
    return `not in the policy's list of the first ${shown} unmirrored pods, and ${unlisted} more are not mirrored: it may be one of them`;
  const sessions = (s?.sessions ?? []).filter((x) => x.nodeName === pod.spec.nodeName);
  const where = sessions.map((x) => `${x.sessionId ?? "(being made)"} on ${x.networkInterfaceId}`).join(", ");
  return `mirrored${where ? ` by ${where}` : ""} to ${p.spec.targetRef.name}`;
}

/** Reaches a port of a pod (the apiserver's port-forward, or directly in tests). */
export type Connect = (namespace: string, pod: string, port: number) => Promise<Duplex>;

async function httpGet(socket: Duplex, path: string): Promise<string> {
  socket.write(`GET ${path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of socket as AsyncIterable<Buffer>) chunks.push(c);
  const text = Buffer.concat(chunks).toString("utf8");
  const status = /^HTTP\/1\.\d (\d{3})/.exec(text)?.[1];
  if (status !== "200") throw new Error(status ? `HTTP ${status}` : "no HTTP answer came back");
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

/** Packets each policy's selection kept, summed over the collector pods' `/metrics`. */
export async function collectorCounts(
  rest: KubeRest,
  namespace: string,
  connect: Connect,
): Promise<CollectorCounts> {
  const selector = encodeURIComponent(
    "app.kubernetes.io/part-of=traffic-mirror-operator,app.kubernetes.io/component=collector",
  );
  let pods: PodObject[];
  try {
    pods = (
      await rest.get<{ items: PodObject[] }>(
        `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
        "listing pods",
      )
    ).items;
  } catch {
    return { unavailable: `you may not list the collector pods in namespace ${namespace}` };
  }
  const counts = new Map<string, number>();
  const running = pods.filter((p) => p.status?.phase === "Running");
  if (running.length === 0)
    return {
      unavailable: `no collector pod runs in namespace ${namespace} (pass --collector-namespace if it is elsewhere)`,
    };
  for (const pod of running) {
    const env = new Map(
      pod.spec.containers.flatMap((c) => (c.env ?? []).map((e) => [e.name, e.value ?? ""])),
    );
    const addr = env.get("TMO_COLLECTOR_METRICS_ADDR") ?? ":9102";
    const port = Number(addr.slice(addr.lastIndexOf(":") + 1));
    let text: string;
    try {
      text = await httpGet(await connect(namespace, pod.metadata.name, port), "/metrics");
    } catch (err) {
      const doing = `port-forward to the collector pod ${pod.metadata.name} in namespace ${namespace}`;
      const e = explain(err, doing);
      return { unavailable: e instanceof UserError ? e.message : `could not ${doing}: ${e.message}` };
    }
    for (const m of text.matchAll(/^tmo_collector_packets_total\{policy="([^"]+)"\} (\d+)/gm))
      counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return counts;
}
