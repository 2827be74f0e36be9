/**
 * `kubectl trafficmirror capture`: a time-boxed policy made with the user's rights, its packets
 * streamed from every collector worker and merged into one pcapng, and the policy deleted (and its
 * AWS side seen gone) at the end.
 */
import { randomBytes } from "node:crypto";
import type { Duplex, Writable } from "node:stream";
import { API_VERSION, GROUP, type LabelSelector, type PolicyFilterRule } from "../api/resources.ts";
import { readPolicyStream } from "../collector/stream-client.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { matches } from "../plan/selectors.ts";
import { UserError } from "./args.ts";
import {
  asUser,
  CAPTURE_LABEL,
  explain,
  isNotFound,
  mayI,
  paths,
  readPolicy,
  readyOf,
  type PodObject,
  type PolicyObject,
  type TargetObject,
} from "./cluster.ts";
import { TimeOrderedPcapng } from "./merge.ts";

/** What the user asked for. */
export interface CaptureRequest {
  namespace: string;
  selector: LabelSelector;
  /** The selector as typed, for messages. */
  selectorText: string;
  duration: { text: string; ms: number };
  filters: PolicyFilterRule[];
  target?: string;
  /** Where the collector runs (the chart's release namespace). */
  collectorNamespace: string;
  out: Writable;
}

/** One stream of one collector worker. */
export interface StreamEndpoint {
  pod: string;
  node: string | undefined;
  worker: number;
  port: number;
}

/** What capture needs from outside: the cluster, a way to reach a collector port, the terminal. */
export interface CaptureDeps {
  rest: KubeRest;
  /** Connects to `port` of a collector pod (through the apiserver's port-forward). */
  connect(namespace: string, pod: string, port: number): Promise<Duplex>;
  /** Progress and reasons, one line each (stderr). */
  say(line: string): void;
  /** Resolves on the first interrupt; `second` is called on the next one. */
  interrupted: Promise<void>;
  onSecondInterrupt(fn: () => void): void;
  /** How long to wait for Ready, and for the AWS cleanup after the delete. */
  readyTimeoutMs?: number;
  cleanupTimeoutMs?: number;
  pollMs?: number;
}

// Not unref()d: these waits are what keeps the command alive while it polls the policy.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reasons that will not clear while the capture waits: give up, saying why. */
const FATAL = new Set([
  "TargetNotFound",
  "NamespaceNotAllowed",
  "NodeSourcesNotAllowed",
  "InvalidSpec",
  "Expired",
]);

/** A named target, where the user may read it: it must exist and be the in-cluster collector. */
async function checkTarget(rest: KubeRest, name: string): Promise<void> {
  let t: TargetObject;
  try {
    t = await rest.get<TargetObject>(paths.target(name), "reading target");
  } catch (err) {
    if (isNotFound(err)) throw new UserError(`there is no TrafficMirrorTarget named ${name}`);
    return; // Not readable by this user: the operator's status will say what is wrong with it.
  }
  if (!t.spec.collector)
    throw new UserError(
      `TrafficMirrorTarget ${name} sends copies outside the cluster, not to the collector capture reads`,
    );
}

/** Chooses the collector target: the one named, else the only collector target that allows the namespace. */
export async function chooseTarget(
  rest: KubeRest,
  namespace: string,
  named: string | undefined,
): Promise<string> {
  if (named) {
    await checkTarget(rest, named);
    return named;
  }
  const list = await asUser("list TrafficMirrorTargets (pass --target NAME to skip this)", () =>
    rest.get<{ items: TargetObject[] }>(paths.targets(), "listing targets"),
  );
  const nsLabels = { "kubernetes.io/metadata.name": namespace };
  const usable = list.items.filter((t) => {
    const a = t.spec.allowedNamespaces;
    if (!t.spec.collector || !a) return false;
    if (a.from === "All") return true;
    if (a.from === "List") return (a.names ?? []).includes(namespace);
    return matches(a.selector, nsLabels);
  });
  if (usable.length === 0)
    throw new UserError(`no collector TrafficMirrorTarget allows namespace ${namespace}`);
  if (usable.length > 1)
    throw new UserError(
      `several collector targets allow namespace ${namespace} (${usable.map((t) => t.metadata.name).join(", ")}): pass --target NAME`,
    );
  return usable[0]!.metadata.name;
}

/** Every collector worker's stream: the chart's collector pods, their stream port and workers. */
export async function collectorStreams(rest: KubeRest, namespace: string): Promise<StreamEndpoint[]> {
  const selector = encodeURIComponent(
    "app.kubernetes.io/part-of=traffic-mirror-operator,app.kubernetes.io/component=collector",
  );
  const pods = await asUser(`list pods in namespace ${namespace} (to find the collector)`, () =>
    rest.get<{ items: PodObject[] }>(
      `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
      "listing pods",
    ),
  );
  const out: StreamEndpoint[] = [];
  for (const pod of pods.items.filter((p) => p.status?.phase === "Running")) {
    const env = new Map(
      pod.spec.containers.flatMap((c) => (c.env ?? []).map((e) => [e.name, e.value ?? ""])),
    );
    const addr = env.get("TMO_COLLECTOR_STREAM_ADDR");
    if (!addr) continue;
    const port = Number(addr.slice(addr.lastIndexOf(":") + 1));
    const workers = Number(env.get("TMO_COLLECTOR_WORKERS") ?? "1") || 1;
    for (let w = 0; w < workers; w++)
      out.push({ pod: pod.metadata.name, node: pod.spec.nodeName, worker: w, port: port + w });
  }
  if (out.length === 0) {
    const why =
      pods.items.length === 0
        ? `no collector pod runs in namespace ${namespace} (pass --collector-namespace if it is elsewhere)`
        : `the collector's live stream is off (chart value collector.stream.enabled)`;
    throw new UserError(why);
  }
  return out;
}

function policyBody(
  r: CaptureRequest,
  name: string,
  o: { target: string; user: string | undefined },
): unknown {
  return {
    apiVersion: API_VERSION,
    kind: "TrafficMirrorPolicy",
    metadata: {
      name,
      namespace: r.namespace,
      labels: { [CAPTURE_LABEL]: "true" },
      annotations: {
        "trafficmirror.twtech.io/capture-selector": r.selectorText,
        ...(o.user ? { "trafficmirror.twtech.io/captured-by": o.user } : {}),
      },
    },
    spec: {
      podSelector: r.selector,
      targetRef: { name: o.target },
      duration: r.duration.text,
      ...(r.filters.length ? { filter: { rules: r.filters } } : {}),
    },
  };
}

/** One line for the policy's state: Ready or not and why, and how much is mirrored. */
function stateLine(p: PolicyObject): string {
  const ready = readyOf(p);
  if (!ready) return "waiting for the operator";
  const s = p.status;
  const counts = `(${s?.mirroredSources ?? 0} of ${s?.selectedPods ?? 0} pods mirrored, ${s?.sessionCount ?? 0} sessions)`;
  return ready.status === "True"
    ? `Ready ${counts}`
    : `not ready: ${ready.reason} ${counts}: ${ready.message}`;
}

/** What the user should know beside the state: no pod selected, each pod left out and why. */
function notes(p: PolicyObject): string[] {
  const none = readyOf(p)?.status === "True" && (p.status?.selectedPods ?? 0) === 0;
  return [
    ...(none ? ["  no pod matches the selector (yet): pods that appear while it runs are mirrored"] : []),
    ...(p.status?.unmirrored ?? []).map((u) => `  ${u.name} is not mirrored: ${u.reason}: ${u.message}`),
  ];
}

/** Prints what changed in the policy's status; returns whether it can stream now. */
function progress(p: PolicyObject, seen: Set<string>, say: (l: string) => void): "wait" | "go" {
  const lines = [stateLine(p), ...notes(p)];
  for (const l of lines.filter((x) => !seen.has(x))) {
    seen.add(l);
    say(l);
  }
  const ready = readyOf(p);
  const current = (p.status?.observedGeneration ?? 0) >= (p.metadata.generation ?? 0);
  if (ready && FATAL.has(ready.reason) && current)
    throw new UserError(`the operator will not mirror this capture: ${ready.reason}: ${ready.message}`);
  if (ready?.status === "True") return "go";
  // Mirroring some pods (others left out by a limit) is worth streaming.
  return (p.status?.mirroredSources ?? 0) > 0 && ready?.reason !== "Programming" ? "go" : "wait";
}

/** The user's name as the apiserver knows it (a SelfSubjectReview), or undefined where it cannot say. */
async function whoAmI(rest: KubeRest): Promise<string | undefined> {
  try {
    const review = await rest.request<{ status?: { userInfo?: { username?: string } } }>({
      method: "POST",
      path: "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
      what: "asking who I am",
    });
    return review.status?.userInfo?.username;
  } catch {
    return undefined;
  }
}

/** The rights a capture needs, each missing one as the sentence that names it. */
async function checkRights(rest: KubeRest, r: CaptureRequest): Promise<void> {
  const policies = { group: GROUP, resource: "trafficmirrorpolicies", namespace: r.namespace };
  const needs: [Parameters<typeof mayI>[1], string][] = [
    [{ ...policies, verb: "create" }, `create TrafficMirrorPolicies in namespace ${r.namespace}`],
    [{ ...policies, verb: "delete" }, `delete TrafficMirrorPolicies in namespace ${r.namespace}`],
    [
      { verb: "create", resource: "pods", subresource: "portforward", namespace: r.collectorNamespace },
      `port-forward to the collector pods in namespace ${r.collectorNamespace}`,
    ],
  ];
  for (const [attrs, doing] of needs)
    if (!(await mayI(rest, attrs))) throw new UserError(`you are not allowed to ${doing}`);
}

/** Runs a capture; resolves with the packets written once the policy is gone. */
export async function capture(
  r: CaptureRequest,
  d: CaptureDeps,
): Promise<{ packets: number; policy: string }> {
  const poll = d.pollMs ?? 500;
  await checkRights(d.rest, r);
  const target = await chooseTarget(d.rest, r.namespace, r.target);
  const endpoints = await collectorStreams(d.rest, r.collectorNamespace);
  const name = `capture-${randomBytes(3).toString("hex")}`;
  const policy = `${r.namespace}/${name}`;
  // Streams first: a refused port-forward stops here, before anything is made.
  const sockets = await Promise.all(
    endpoints.map((e) =>
      d.connect(r.collectorNamespace, e.pod, e.port).catch((err: unknown) => {
        throw explain(err, `port-forward to the collector pod ${e.pod} in namespace ${r.collectorNamespace}`);
      }),
    ),
  );
  const writer = new TimeOrderedPcapng({
    out: r.out,
    interfaces: endpoints.map((e) => ({
      name: `${e.pod} w${e.worker}`,
      description: `policy ${policy}; collector pod ${r.collectorNamespace}/${e.pod}${e.node ? ` on node ${e.node}` : ""}, worker ${e.worker}`,
    })),
    comment: `kubectl trafficmirror capture -n ${r.namespace} -l ${r.selectorText} (policy ${policy})`,
  });
  let open = sockets.length;
  let stopping = false;
  let outputClosed = false;
  r.out.on("error", () => (outputClosed = true));
  const readers = sockets.map(async (s, i) => {
    try {
      for await (const p of readPolicyStream(s, policy)) writer.add(i, p);
    } catch (err) {
      if (!stopping)
        d.say(
          `stream of ${endpoints[i]!.pod} worker ${endpoints[i]!.worker} ended: ${(err as Error).message}`,
        );
    } finally {
      open--;
    }
  });
  const flusher = setInterval(() => writer.flush(Date.now() * 1000), 200);
  const closeStreams = (): void => {
    stopping = true;
    for (const s of sockets) s.destroy();
  };
  const user = await whoAmI(d.rest);
  let created = false;
  try {
    await asUser(`create TrafficMirrorPolicies in namespace ${r.namespace}`, () =>
      d.rest.request({
        method: "POST",
        path: paths.policies(r.namespace),
        body: policyBody(r, name, { target, user }),
        what: "creating policy",
      }),
    );
    created = true;
    // From now on a second Ctrl-C leaves something behind: say what and how to remove it.
    d.onSecondInterrupt(() => leave(r, name, d));
    d.say(`created TrafficMirrorPolicy ${policy} (target ${target}, for ${r.duration.text})`);
    let interrupted = false;
    void d.interrupted.then(() => (interrupted = true));
    await waitReady(r, name, d, { poll, stop: () => interrupted });
    if (!interrupted)
      d.say(
        `streaming from ${endpoints.length} collector worker${endpoints.length === 1 ? "" : "s"}; Ctrl-C stops`,
      );
    const createdAt = (await readPolicy(d.rest, r.namespace, name))?.metadata.creationTimestamp;
    const endAt = (createdAt ? Date.parse(createdAt) : Date.now()) + r.duration.ms;
    while (!interrupted && !outputClosed && open > 0 && Date.now() < endAt)
      await sleep(Math.min(poll, Math.max(1, endAt - Date.now())));
    if (open === 0 && !interrupted) d.say("every collector stream closed");
  } finally {
    clearInterval(flusher);
    closeStreams();
    await Promise.all(readers);
    writer.flush(0, true);
    if (created) await cleanUp(r, name, d);
  }
  return { packets: writer.stats.packets, policy };
}

async function waitReady(
  r: CaptureRequest,
  name: string,
  d: CaptureDeps,
  o: { poll: number; stop: () => boolean },
): Promise<void> {
  const { poll, stop } = o;
  const seen = new Set<string>();
  const deadline = Date.now() + (d.readyTimeoutMs ?? 120_000);
  for (;;) {
    if (stop()) return;
    const p = await readPolicy(d.rest, r.namespace, name);
    if (!p) throw new UserError(`TrafficMirrorPolicy ${r.namespace}/${name} was deleted by someone else`);
    if (progress(p, seen, (l) => d.say(l)) === "go") return;
    if (Date.now() > deadline)
      throw new UserError(
        `the operator did not make ${r.namespace}/${name} ready within ${Math.round((d.readyTimeoutMs ?? 120_000) / 1000)} s; see kubectl describe tmp -n ${r.namespace} ${name}`,
      );
    await sleep(poll);
  }
}

/** What a user who leaves early is told: the policy ends by itself, and how to remove it now. */
function leave(r: CaptureRequest, name: string, d: CaptureDeps): void {
  d.say(
    `left without waiting; ${r.namespace}/${name} ends by itself at the end of --for ${r.duration.text}; to remove it now: kubectl delete trafficmirrorpolicy -n ${r.namespace} ${name}`,
  );
}

/** Deletes the policy and waits until the operator has removed its AWS side (its finalizer). */
async function cleanUp(r: CaptureRequest, name: string, d: CaptureDeps): Promise<void> {
  const how = `kubectl delete trafficmirrorpolicy -n ${r.namespace} ${name}`;
  let left = false;
  d.onSecondInterrupt(() => {
    left = true;
    leave(r, name, d);
  });
  try {
    await d.rest.request({
      method: "DELETE",
      path: paths.policy(r.namespace, name),
      what: "deleting policy",
    });
  } catch (err) {
    if (!isNotFound(err))
      throw explain(
        err,
        `delete TrafficMirrorPolicy ${name} in namespace ${r.namespace} (remove it with: ${how})`,
      );
  }
  d.say(`deleted ${r.namespace}/${name}; waiting for the operator to remove its mirror sessions`);
  const deadline = Date.now() + (d.cleanupTimeoutMs ?? 120_000);
  let last = -1;
  for (;;) {
    if (left) return;
    const p = await readPolicy(d.rest, r.namespace, name);
    if (!p) {
      d.say("mirror sessions removed; nothing is left in AWS");
      return;
    }
    const n = p.status?.sessionCount ?? 0;
    if (n !== last) {
      last = n;
      d.say(`  ${n} sessions still to remove`);
    }
    if (Date.now() > deadline)
      throw new UserError(
        `the operator has not removed ${r.namespace}/${name}'s sessions yet; it goes on trying (check: kubectl describe tmp -n ${r.namespace} ${name})`,
      );
    await sleep(d.pollMs ?? 500);
  }
}
