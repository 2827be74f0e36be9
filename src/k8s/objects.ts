/**
 * Writes the operator makes to Kubernetes objects: status (only when it changed), finalizers
 * (with optimistic locking), Events (deduplicated) and the VNI map ConfigMap. The controller never
 * writes `spec`, so GitOps tools see no drift.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { sameStatus } from "./conditions.ts";
import { microTime } from "./leader.ts";
import { isStatus, type KubeRest } from "./rest.ts";

/** Which object, by REST coordinates. */
export interface ObjectRef {
  group: string;
  version: string;
  plural: string;
  namespace?: string;
  name: string;
  /** For Events. */
  kind?: string;
  uid?: string;
}

/** The object's REST path (optionally a subresource). */
export function objectPath(ref: ObjectRef, sub?: string): string {
  const base = ref.group ? `/apis/${ref.group}/${ref.version}` : `/api/${ref.version}`;
  const ns = ref.namespace ? `/namespaces/${ref.namespace}` : "";
  return `${base}${ns}/${ref.plural}/${ref.name}${sub ? `/${sub}` : ""}`;
}

function describeRef(ref: ObjectRef): string {
  return ref.namespace ? `${ref.plural} ${ref.namespace}/${ref.name}` : `${ref.plural} ${ref.name}`;
}

/**
 * Patches `status` when `desired` differs from `current`; returns whether it wrote. A 404 (the
 * object went away meanwhile) is not an error.
 */
export async function writeStatus(o: {
  rest: KubeRest;
  ref: ObjectRef;
  current: unknown;
  desired: unknown;
}): Promise<boolean> {
  if (sameStatus(o.current ?? {}, o.desired)) return false;
  try {
    await o.rest.mergePatch(
      objectPath(o.ref, "status"),
      { status: o.desired },
      `patching status of ${describeRef(o.ref)}`,
    );
    return true;
  } catch (err) {
    if (isStatus(err, 404)) return false;
    throw err;
  }
}

/** What `setFinalizer` needs. */
export interface FinalizerChange {
  rest: KubeRest;
  ref: ObjectRef;
  /** The finalizers as last seen, and the resourceVersion they were seen at. */
  finalizers: readonly string[];
  resourceVersion: string;
  finalizer: string;
  present: boolean;
}

/**
 * Adds or removes one finalizer. The patch carries the resourceVersion it was computed from, so a
 * concurrent change answers 409 and the next cycle tries again with fresh data. Returns whether
 * it wrote.
 */
export async function setFinalizer(c: FinalizerChange): Promise<boolean> {
  const has = c.finalizers.includes(c.finalizer);
  if (has === c.present) return false;
  const finalizers = c.present
    ? [...c.finalizers, c.finalizer]
    : c.finalizers.filter((f) => f !== c.finalizer);
  try {
    await c.rest.mergePatch(
      objectPath(c.ref),
      { metadata: { finalizers, resourceVersion: c.resourceVersion } },
      `${c.present ? "adding" : "removing"} finalizer on ${describeRef(c.ref)}`,
    );
    return true;
  } catch (err) {
    if (isStatus(err, 404) || isStatus(err, 409)) return false;
    throw err;
  }
}

/** An Event about an object. */
export interface EventSpec {
  ref: ObjectRef;
  type: "Normal" | "Warning";
  reason: string;
  note: string;
  action: string;
}

/** Records Kubernetes Events (events.k8s.io/v1), dropping repeats within `dedupeMs`. */
export class EventRecorder {
  readonly #seen = new Map<string, number>();
  readonly #o: {
    rest: KubeRest;
    log: Logger;
    controller: string;
    instance: string;
    dedupeMs: number;
    now: () => number;
  };

  constructor(o: {
    rest: KubeRest;
    log: Logger;
    controller: string;
    instance: string;
    dedupeMs?: number;
    now?: () => number;
  }) {
    this.#o = { dedupeMs: 10 * 60_000, now: Date.now, ...o };
  }

  /** Records one event; never throws (an Event is not worth failing a cycle for). */
  async record(e: EventSpec): Promise<void> {
    const key = `${e.ref.plural}/${e.ref.namespace ?? ""}/${e.ref.name}/${e.reason}/${e.note}`;
    const now = this.#o.now();
    const last = this.#seen.get(key);
    if (last !== undefined && now - last < this.#o.dedupeMs) return;
    this.#seen.set(key, now);
    if (this.#seen.size > 10_000) this.#prune(now);
    const namespace = e.ref.namespace ?? "default";
    const body = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      // Named as kubectl names them; generateName would be refused (a prefix ending in ".").
      metadata: { name: `${e.ref.name}.${now.toString(16)}${randomBytes(4).toString("hex")}`, namespace },
      eventTime: microTime(new Date(now)),
      reportingController: this.#o.controller,
      reportingInstance: this.#o.instance,
      action: e.action,
      reason: e.reason,
      note: e.note.slice(0, 1024),
      type: e.type,
      regarding: {
        apiVersion: e.ref.group ? `${e.ref.group}/${e.ref.version}` : e.ref.version,
        kind: e.ref.kind,
        namespace: e.ref.namespace,
        name: e.ref.name,
        uid: e.ref.uid,
      },
    };
    try {
      await this.#o.rest.request({
        method: "POST",
        path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`,
        body,
        what: `recording event ${e.reason}`,
      });
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message, reason: e.reason }, "Recording an event failed");
    }
  }

  #prune(now: number): void {
    for (const [k, t] of this.#seen) if (now - t >= this.#o.dedupeMs) this.#seen.delete(k);
  }
}

/** Creates or updates one key of a ConfigMap when its value changed; returns whether it wrote. */
export async function writeConfigMapKey(o: {
  rest: KubeRest;
  namespace: string;
  name: string;
  key: string;
  value: string;
  /** `value` is base64 and goes in `binaryData`, not `data`. */
  binary?: boolean;
  /** `data` keys removed by the same write (a previous format of the value). */
  replaces?: readonly string[];
  labels?: Record<string, string>;
}): Promise<boolean> {
  const ref: ObjectRef = {
    group: "",
    version: "v1",
    plural: "configmaps",
    namespace: o.namespace,
    name: o.name,
  };
  const path = objectPath(ref);
  const field = o.binary === true ? "binaryData" : "data";
  const replaces = o.replaces ?? [];
  try {
    const cm = await o.rest.get<{ data?: Record<string, string>; binaryData?: Record<string, string> }>(
      path,
      `reading configmap ${o.namespace}/${o.name}`,
    );
    const stale = replaces.filter((k) => cm.data?.[k] !== undefined);
    if (cm[field]?.[o.key] === o.value && stale.length === 0) return false;
    const patch: Record<string, Record<string, string | null>> = { [field]: { [o.key]: o.value } };
    // A merge patch's null removes the key, in the same write: a reader never sees both formats.
    if (stale.length > 0)
      patch["data"] = { ...patch["data"], ...Object.fromEntries(stale.map((k) => [k, null])) };
    await o.rest.mergePatch(path, patch, `updating configmap ${o.namespace}/${o.name}`);
    return true;
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
  await o.rest.request({
    method: "POST",
    path: `/api/v1/namespaces/${o.namespace}/configmaps`,
    body: {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: o.name, labels: o.labels },
      [field]: { [o.key]: o.value },
    },
    what: `creating configmap ${o.namespace}/${o.name}`,
  });
  return true;
}
