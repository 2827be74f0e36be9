/**
 * The EC2 emulator's HTTP side: EC2 Query requests in, XML out, so the real `@aws-sdk/client-ec2`
 * works against it with only an endpoint override. Knobs for tests: throttling (a token bucket per
 * action as AWS applies it, or one per action category, the pessimistic case), latency, eventual consistency and fault injection; an admin API under `/_sim/`.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { FilterRule, Instance, NetworkInterface } from "../../src/api/inventory.ts";
import {
  errorResponse,
  int,
  objects,
  okResponse,
  parseQuery,
  str,
  strings,
  type Params,
  type XmlObject,
} from "./query.ts";
import { AWS_CATEGORY_BUCKETS, isMutatingAction, UNFILTERED_SUBSET } from "../../src/aws/rate-limit.ts";
import { DataPlane } from "./dataplane.ts";
import type { SyntheticPacket } from "./packets.ts";
import { checkEniAddresses, Ec2Error, Ec2State, type Tags } from "./state.ts";
import { eniXml, filterXml, instanceXml, ruleXml, sessionXml, targetXml } from "./xml-shapes.ts";

/** A token bucket (AWS's throttling model). */
export interface BucketConfig {
  burst: number;
  ratePerSecond: number;
}

/**
 * Throttling. `model: "category"` (the default, and what `{ mutating, describe }` alone has always
 * meant): one bucket shared by every action of a category, and a category without a bucket is not
 * throttled; the older, pessimistic reading of AWS's guide. `model: "per-action"`: every action has
 * its own bucket, sized by its category, AWS's defaults unless given (docs/aws-rate-limits.md);
 * unfiltered, unpaginated calls of DescribeInstances, DescribeNetworkInterfaces and the rest of
 * AWS's subset draw on a smaller bucket of their own.
 */
export interface ThrottleKnobs {
  model?: "category" | "per-action";
  mutating?: BucketConfig;
  describe?: BucketConfig;
  /** Per-action model: the bucket of an unfiltered, unpaginated call of the subset. */
  unfiltered?: BucketConfig;
  /** Per-action model: buckets of single actions, instead of their category's. */
  actions?: Record<string, BucketConfig>;
}

/** Test knobs. */
export interface SimKnobs {
  /** Token buckets; absent means no throttling. */
  throttle?: ThrottleKnobs;
  /** Latency of each call: fixed, or uniform between `min` and `max` (seeded). */
  latencyMs?: number | { min: number; max: number };
  /** New resources stay invisible to Describe for this long. */
  eventualConsistencyMs?: number;
  /** Fail calls: the Nth call overall (1-based), or every call of an action, with a code/status. */
  faults?: {
    nth?: number;
    action?: string;
    times?: number;
    code?: string;
    status?: number;
    afterApply?: boolean;
    /** Close the connection without an answer (the caller sees ECONNRESET), before or after the change. */
    reset?: boolean;
  }[];
  /** Actions the caller's credentials may not call (answered UnauthorizedOperation, 403). */
  deny?: string[];
  /** Share of calls (0–1) answered RequestLimitExceeded, and share answered 503, at random (seeded). */
  randomThrottle?: number;
  randomServerError?: number;
}

/** A running emulator. */
export interface Ec2Sim {
  url: string;
  state: Ec2State;
  knobs: SimKnobs;
  /** Calls received, by action, and how they were answered. */
  /** Every call answered; a successful call on a filter's rules names the filter. */
  calls: { action: string; code: string; filterId?: string; at?: number }[];
  /** The data plane: send synthetic packets, copies go to loopback endpoints. */
  dataPlane: DataPlane;
  stop(): Promise<void>;
}

class Bucket {
  tokens: number;
  last: number;
  readonly cfg: BucketConfig;
  constructor(cfg: BucketConfig, now: number) {
    this.cfg = cfg;
    this.tokens = cfg.burst;
    this.last = now;
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.cfg.burst, this.tokens + ((now - this.last) / 1000) * this.cfg.ratePerSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

function tagsFor(p: Params, resourceType: string): Tags {
  const tags: Tags = {};
  for (const spec of objects(p, "TagSpecification")) {
    if (str(spec, "ResourceType") !== resourceType) continue;
    for (const t of objects(spec, "Tag")) tags[str(t, "Key") ?? ""] = str(t, "Value") ?? "";
  }
  return tags;
}

type Filter = { name: string; values: string[] };
function filtersOf(p: Params): Filter[] {
  return objects(p, "Filter").map((f) => ({ name: str(f, "Name") ?? "", values: strings(f, "Value") }));
}

/** Whether a resource passes every filter; `field` maps a filter name to the resource's values. */
function passes(filters: Filter[], tags: Tags, field: (name: string) => string[] | undefined): boolean {
  return filters.every((f) => {
    if (f.name.startsWith("tag:")) return f.values.includes(tags[f.name.slice(4)] ?? "\u0000");
    if (f.name === "tag-key") return f.values.some((v) => v in tags);
    const have = field(f.name);
    if (have === undefined) throw new Ec2Error("InvalidParameterValue", `The filter '${f.name}' is invalid`);
    return have.some((h) => f.values.includes(h));
  });
}

/** The NotFound code and noun of each kind a Describe takes ids of. */
const NOT_FOUND = {
  target: ["InvalidTrafficMirrorTargetId.NotFound", "traffic mirror target"],
  filter: ["InvalidTrafficMirrorFilterId.NotFound", "traffic mirror filter"],
  session: ["InvalidTrafficMirrorSessionId.NotFound", "traffic mirror session"],
} as const;

/**
 * Describe by ids, as EC2 answers it: every id must exist and be visible (a new resource is not,
 * for a while: eventual consistency), or the call fails with the kind's NotFound code. Ids given
 * through Filters instead find nothing, without an error.
 */
function requireIds(
  kind: keyof typeof NOT_FOUND,
  ids: string[],
  have: ReadonlyMap<string, unknown>,
  visible: (id: string) => boolean,
): void {
  const [code, noun] = NOT_FOUND[kind];
  const missing = ids.find((id) => !have.has(id) || !visible(id));
  if (missing !== undefined) throw new Ec2Error(code, `The ${noun} ID '${missing}' does not exist.`);
}

function page<T>(items: T[], p: Params): { items: T[]; nextToken?: string } {
  const max = int(p, "MaxResults");
  if (max !== undefined && (max < 5 || max > 1000))
    throw new Ec2Error("InvalidParameterValue", "MaxResults must be between 5 and 1000.");
  const start = Number(str(p, "NextToken") ?? 0);
  const size = max ?? 1000;
  const slice = items.slice(start, start + size);
  return { items: slice, nextToken: start + size < items.length ? String(start + size) : undefined };
}

/** Whether a call of AWS's unfiltered subset names no filter and asks for no page. */
function unfilteredCall(action: string, p: Params): boolean {
  return (
    UNFILTERED_SUBSET.has(action) &&
    objects(p, "Filter").length === 0 &&
    str(p, "MaxResults") === undefined &&
    str(p, "NextToken") === undefined
  );
}

/** The bucket a call draws on under a throttle knob: its key and size, or none (not throttled). */
function bucketOf(t: ThrottleKnobs, action: string, p: Params): [string, BucketConfig] | undefined {
  const mutating = isMutatingAction(action);
  if ((t.model ?? "category") === "category") {
    const cfg = mutating ? t.mutating : t.describe;
    return cfg && [mutating ? "mutating" : "describe", cfg];
  }
  if (!mutating && unfilteredCall(action, p))
    return [`${action}/unfiltered`, t.unfiltered ?? AWS_CATEGORY_BUCKETS.unfilteredNonMutating];
  const byCategory = mutating
    ? (t.mutating ?? AWS_CATEGORY_BUCKETS.mutating)
    : (t.describe ?? AWS_CATEGORY_BUCKETS.nonMutating);
  return [action, t.actions?.[action] ?? byCategory];
}

/** What a handler is given: the time, what is visible yet, and where to say which filter's rules it changed. */
type Handler = (
  p: Params,
  ctx: { now: number; visible: (id: string) => boolean; changed: { filterId?: string } },
) => XmlObject;

function fingerprint(p: Params): string {
  const { ClientToken: _t, DryRun: _d, Action: _a, Version: _v, ...rest } = p;
  return JSON.stringify(rest);
}

function port(p: Params, key: string): { fromPort: number; toPort: number } | undefined {
  const r = p[key] as Params | undefined;
  return r && typeof r === "object" && !Array.isArray(r)
    ? { fromPort: Number(str(r, "FromPort")), toPort: Number(str(r, "ToPort")) }
    : undefined;
}

/** A successful call's entry in the log, naming the filter a rule call changed. */
function okCall(action: string, filterId: string | undefined, at: number): Ec2Sim["calls"][number] {
  return filterId === undefined ? { action, code: "OK", at } : { action, code: "OK", filterId, at };
}

function handlers(state: Ec2State): Record<string, Handler> {
  const token = (p: Params) => str(p, "ClientToken");
  return {
    CreateTrafficMirrorTarget: (p, { now }) => {
      const id = state.idempotent({
        action: "CreateTrafficMirrorTarget",
        token: token(p),
        fingerprint: fingerprint(p),
        create: () =>
          state.createTarget(
            {
              networkInterfaceId: str(p, "NetworkInterfaceId"),
              networkLoadBalancerArn: str(p, "NetworkLoadBalancerArn"),
              gatewayLoadBalancerEndpointId: str(p, "GatewayLoadBalancerEndpointId"),
              description: str(p, "Description"),
              tags: tagsFor(p, "traffic-mirror-target"),
            },
            now,
          ).trafficMirrorTargetId,
      });
      return { trafficMirrorTarget: targetXml(state.asCreated(id, state.targets)), clientToken: token(p) };
    },
    DeleteTrafficMirrorTarget: (p) => {
      const id = str(p, "TrafficMirrorTargetId") ?? "";
      state.deleteTarget(id);
      return { trafficMirrorTargetId: id };
    },
    CreateTrafficMirrorFilter: (p, { now }) => {
      const id = state.idempotent({
        action: "CreateTrafficMirrorFilter",
        token: token(p),
        fingerprint: fingerprint(p),
        create: () =>
          state.createFilter(
            { description: str(p, "Description"), tags: tagsFor(p, "traffic-mirror-filter") },
            now,
          ).trafficMirrorFilterId,
      });
      return { trafficMirrorFilter: filterXml(state.asCreated(id, state.filters)), clientToken: token(p) };
    },
    DeleteTrafficMirrorFilter: (p) => {
      const id = str(p, "TrafficMirrorFilterId") ?? "";
      state.deleteFilter(id);
      return { trafficMirrorFilterId: id };
    },
    CreateTrafficMirrorFilterRule: (p, { changed }) => {
      const filterId = str(p, "TrafficMirrorFilterId") ?? "";
      changed.filterId = filterId;
      let created: FilterRule | undefined;
      const id = state.idempotent({
        action: "CreateTrafficMirrorFilterRule",
        token: token(p),
        fingerprint: fingerprint(p),
        create: () => {
          created = state.createFilterRule(filterId, {
            direction: str(p, "TrafficDirection") as FilterRule["direction"],
            ruleNumber: int(p, "RuleNumber") ?? 0,
            action: str(p, "RuleAction") as FilterRule["action"],
            ...(int(p, "Protocol") === undefined ? {} : { protocol: int(p, "Protocol") }),
            sourceCidrBlock: str(p, "SourceCidrBlock") ?? "",
            destinationCidrBlock: str(p, "DestinationCidrBlock") ?? "",
            ...(port(p, "SourcePortRange") ? { sourcePortRange: port(p, "SourcePortRange") } : {}),
            ...(port(p, "DestinationPortRange")
              ? { destinationPortRange: port(p, "DestinationPortRange") }
              : {}),
            description: str(p, "Description"),
          });
          return created.trafficMirrorFilterRuleId!;
        },
      });
      const f = state.filter(filterId);
      const rule =
        created ?? [...f.ingressRules, ...f.egressRules].find((r) => r.trafficMirrorFilterRuleId === id);
      // The token's rule has been deleted since: say so rather than describe a rule that is gone.
      if (!rule)
        throw new Ec2Error(
          "InvalidTrafficMirrorFilterRuleId.NotFound",
          `The traffic mirror filter rule ID '${id}' does not exist.`,
        );
      return { trafficMirrorFilterRule: ruleXml(rule, filterId), clientToken: token(p) };
    },
    DeleteTrafficMirrorFilterRule: (p, { changed }) => {
      const id = str(p, "TrafficMirrorFilterRuleId") ?? "";
      changed.filterId = state.deleteFilterRule(id);
      return { trafficMirrorFilterRuleId: id };
    },
    ModifyTrafficMirrorFilterRule: (p, { changed }) => {
      const id = str(p, "TrafficMirrorFilterRuleId") ?? "";
      const { rule, filterId } = state.modifyFilterRule(
        id,
        {
          direction: str(p, "TrafficDirection") as FilterRule["direction"] | undefined,
          ruleNumber: int(p, "RuleNumber"),
          action: str(p, "RuleAction") as FilterRule["action"] | undefined,
          protocol: int(p, "Protocol"),
          sourceCidrBlock: str(p, "SourceCidrBlock"),
          destinationCidrBlock: str(p, "DestinationCidrBlock"),
          sourcePortRange: port(p, "SourcePortRange"),
          destinationPortRange: port(p, "DestinationPortRange"),
          description: str(p, "Description"),
        },
        strings(p, "RemoveField"),
      );
      changed.filterId = filterId;
      return { trafficMirrorFilterRule: ruleXml(rule, filterId) };
    },
    ModifyTrafficMirrorFilterNetworkServices: (p) => {
      const f = state.filter(str(p, "TrafficMirrorFilterId") ?? "");
      const add = strings(p, "AddNetworkService") as "amazon-dns"[];
      const remove = new Set(strings(p, "RemoveNetworkService"));
      f.networkServices = [...new Set([...f.networkServices, ...add])].filter((s) => !remove.has(s));
      return { trafficMirrorFilter: filterXml(f) };
    },
    CreateTrafficMirrorSession: (p, { now }) => {
      const id = state.idempotent({
        action: "CreateTrafficMirrorSession",
        token: token(p),
        fingerprint: fingerprint(p),
        create: () =>
          state.createSession(
            {
              networkInterfaceId: str(p, "NetworkInterfaceId") ?? "",
              trafficMirrorTargetId: str(p, "TrafficMirrorTargetId") ?? "",
              trafficMirrorFilterId: str(p, "TrafficMirrorFilterId") ?? "",
              sessionNumber: int(p, "SessionNumber") ?? 0,
              ...(int(p, "PacketLength") === undefined ? {} : { packetLength: int(p, "PacketLength") }),
              ...(int(p, "VirtualNetworkId") === undefined
                ? {}
                : { virtualNetworkId: int(p, "VirtualNetworkId") }),
              description: str(p, "Description"),
              tags: tagsFor(p, "traffic-mirror-session"),
            },
            now,
          ).trafficMirrorSessionId,
      });
      return { trafficMirrorSession: sessionXml(state.asCreated(id, state.sessions)), clientToken: token(p) };
    },
    ModifyTrafficMirrorSession: (p) => {
      const changes = {
        ...(str(p, "TrafficMirrorTargetId")
          ? { trafficMirrorTargetId: str(p, "TrafficMirrorTargetId") }
          : {}),
        ...(str(p, "TrafficMirrorFilterId")
          ? { trafficMirrorFilterId: str(p, "TrafficMirrorFilterId") }
          : {}),
        ...(int(p, "SessionNumber") !== undefined ? { sessionNumber: int(p, "SessionNumber") } : {}),
        ...(int(p, "PacketLength") !== undefined ? { packetLength: int(p, "PacketLength") } : {}),
        ...(int(p, "VirtualNetworkId") !== undefined ? { virtualNetworkId: int(p, "VirtualNetworkId") } : {}),
        ...(str(p, "Description") !== undefined ? { description: str(p, "Description") } : {}),
      };
      const s = state.modifySession(
        str(p, "TrafficMirrorSessionId") ?? "",
        changes,
        strings(p, "RemoveField"),
      );
      return { trafficMirrorSession: sessionXml(s) };
    },
    DeleteTrafficMirrorSession: (p) => {
      const id = str(p, "TrafficMirrorSessionId") ?? "";
      state.deleteSession(id);
      return { trafficMirrorSessionId: id };
    },
    DescribeTrafficMirrorTargets: (p, { visible }) => {
      const ids = strings(p, "TrafficMirrorTargetId");
      requireIds("target", ids, state.targets, visible);
      const fs = filtersOf(p);
      const items = [...state.targets.values()].filter(
        (t) =>
          visible(t.trafficMirrorTargetId) &&
          (ids.length === 0 || ids.includes(t.trafficMirrorTargetId)) &&
          passes(
            fs,
            t.tags,
            (n) =>
              ({
                "traffic-mirror-target-id": [t.trafficMirrorTargetId],
                "network-interface-id": [t.networkInterfaceId ?? ""],
              })[n],
          ),
      );
      const pg = page(items, p);
      return { trafficMirrorTargetSet: pg.items.map(targetXml), nextToken: pg.nextToken };
    },
    DescribeTrafficMirrorFilters: (p, { visible }) => {
      const ids = strings(p, "TrafficMirrorFilterId");
      requireIds("filter", ids, state.filters, visible);
      const fs = filtersOf(p);
      const items = [...state.filters.values()].filter(
        (f) =>
          visible(f.trafficMirrorFilterId) &&
          (ids.length === 0 || ids.includes(f.trafficMirrorFilterId)) &&
          passes(fs, f.tags, (n) => ({ "traffic-mirror-filter-id": [f.trafficMirrorFilterId] })[n]),
      );
      const pg = page(items, p);
      return { trafficMirrorFilterSet: pg.items.map(filterXml), nextToken: pg.nextToken };
    },
    DescribeTrafficMirrorSessions: (p, { visible }) => {
      const ids = strings(p, "TrafficMirrorSessionId");
      requireIds("session", ids, state.sessions, visible);
      const fs = filtersOf(p);
      const items = [...state.sessions.values()].filter(
        (s) =>
          visible(s.trafficMirrorSessionId) &&
          (ids.length === 0 || ids.includes(s.trafficMirrorSessionId)) &&
          passes(
            fs,
            s.tags,
            (n) =>
              ({
                "traffic-mirror-session-id": [s.trafficMirrorSessionId],
                "network-interface-id": [s.networkInterfaceId],
                "traffic-mirror-target-id": [s.trafficMirrorTargetId],
                "traffic-mirror-filter-id": [s.trafficMirrorFilterId],
                "session-number": [String(s.sessionNumber)],
              })[n],
          ),
      );
      const pg = page(items, p);
      return { trafficMirrorSessionSet: pg.items.map(sessionXml), nextToken: pg.nextToken };
    },
    DescribeInstances: (p) => {
      const ids = strings(p, "InstanceId");
      const fs = filtersOf(p);
      for (const id of ids)
        if (!state.instances.has(id))
          throw new Ec2Error("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
      const items = [...state.instances.values()].filter(
        (i) =>
          (ids.length === 0 || ids.includes(i.instanceId)) &&
          passes(fs, {}, (n) => ({ "instance-id": [i.instanceId], "instance-type": [i.instanceType] })[n]),
      );
      const pg = page(items, p);
      return {
        reservationSet: pg.items.map((i: Instance) => ({
          reservationId: `r-${i.instanceId.slice(2)}`,
          ownerId: state.ownerId,
          instancesSet: [instanceXml(i)],
        })),
        nextToken: pg.nextToken,
      };
    },
    DescribeNetworkInterfaces: (p) => {
      const ids = strings(p, "NetworkInterfaceId");
      for (const id of ids) state.eni(id);
      const fs = filtersOf(p);
      const items = [...state.enis.values()].filter(
        (e: NetworkInterface) =>
          (ids.length === 0 || ids.includes(e.networkInterfaceId)) &&
          passes(
            fs,
            e.tags,
            (n) =>
              ({
                "network-interface-id": [e.networkInterfaceId],
                "attachment.instance-id": [e.instanceId ?? ""],
                "addresses.private-ip-address": e.privateIps,
                "ipv6-addresses.ipv6-address": e.ipv6Addresses ?? [],
                "interface-type": [e.interfaceType],
              })[n],
          ),
      );
      const pg = page(items, p);
      return { networkInterfaceSet: pg.items.map(eniXml), nextToken: pg.nextToken };
    },
  };
}

/** Why a call is answered without running (fault, throttle, unknown action, dry run), if it is. */
function refuse(c: {
  f: { code?: string; status?: number; afterApply?: boolean } | undefined;
  throttled: boolean;
  known: boolean;
  denied: boolean;
  dryRun: boolean;
  action: string;
}): [string, number, string] | undefined {
  if (c.f && !c.f.afterApply) return [c.f.code ?? "InternalError", c.f.status ?? 500, "Injected fault"];
  if (c.denied)
    return [
      "UnauthorizedOperation",
      403,
      `You are not authorized to perform this operation: ec2:${c.action}`,
    ];
  if (c.throttled) return ["RequestLimitExceeded", 503, "Request limit exceeded."];
  if (!c.known) return ["InvalidAction", 400, `The action ${c.action} is not valid for this web service.`];
  if (c.dryRun) return ["DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."];
  return undefined;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Starts the emulator on 127.0.0.1 (port 0 picks a free one). */
export async function startEc2Sim(opts: { port?: number; knobs?: SimKnobs } = {}): Promise<Ec2Sim> {
  const state = new Ec2State();
  const knobs: SimKnobs = opts.knobs ?? {};
  const calls: Ec2Sim["calls"] = [];
  const table = handlers(state);
  const dataPlane = new DataPlane(state);
  let buckets: { byKey: Map<string, Bucket>; cfg?: ThrottleKnobs } = { byKey: new Map() };
  let callCount = 0;
  let rng = 42;
  let latencyRng = 7;
  const latency = (l: SimKnobs["latencyMs"]): number => {
    if (typeof l !== "object") return l ?? 0;
    latencyRng = (latencyRng * 1103515245 + 12345) % 2 ** 31;
    return l.min + (latencyRng / 2 ** 31) * (l.max - l.min);
  };
  // New knobs, new (full) buckets.
  const bucketFor = (action: string, p: Params, now: number): Bucket | undefined => {
    if (buckets.cfg !== knobs.throttle) buckets = { cfg: knobs.throttle, byKey: new Map() };
    const which = knobs.throttle && bucketOf(knobs.throttle, action, p);
    if (!which) return undefined;
    const [key, cfg] = which;
    let b = buckets.byKey.get(key);
    if (!b) buckets.byKey.set(key, (b = new Bucket(cfg, now)));
    return b;
  };
  const fault = (
    action: string,
  ): SimKnobs["faults"] extends (infer F)[] | undefined ? F | undefined : never => {
    const f = knobs.faults?.find(
      (x) =>
        (x.nth !== undefined && x.nth === callCount) ||
        (x.action !== undefined && x.action === action && (x.times ?? Infinity) > 0),
    );
    if (f && f.action !== undefined && f.times !== undefined) f.times--;
    return f;
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    const send = (status: number, text: string, type = "text/xml"): void => {
      res.writeHead(status, { "content-type": type }).end(text);
    };
    if (req.url?.startsWith("/_sim/")) return admin(req, res, { state, knobs, calls, dataPlane });
    const p = parseQuery(await body(req));
    const action = str(p, "Action") ?? "";
    callCount++;
    const now = Date.now();
    // Buckets run on the monotonic clock, as the client's do: a wall-clock step must not refill them.
    const tick = performance.now();
    const delay = latency(knobs.latencyMs);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const answer = (code: string, status: number, message: string): void => {
      calls.push({ action, code });
      send(status, errorResponse(code, message, requestId));
    };
    const f = fault(action);
    // A fault that resets the connection, at this point (before or after the change): hang up.
    const hangUp = (after: boolean): boolean => {
      if (!f?.reset || (f.afterApply ?? false) !== after) return false;
      calls.push({ action, code: "ConnectionReset" });
      req.socket.destroy();
      return true;
    };
    if (hangUp(false)) return;
    const roll = (share: number | undefined): boolean =>
      share !== undefined && (rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 < share;
    if (roll(knobs.randomServerError)) return answer("ServiceUnavailable", 503, "Injected server error");
    const refusal = refuse({
      f,
      throttled: bucketFor(action, p, tick)?.take(tick) === false || roll(knobs.randomThrottle),
      known: action in table,
      denied: knobs.deny?.includes(action) ?? false,
      dryRun: str(p, "DryRun") === "true",
      action,
    });
    if (refusal) return answer(...refusal);
    const h = table[action]!;
    try {
      const changed: { filterId?: string } = {};
      const consistency = knobs.eventualConsistencyMs ?? 0;
      const visible = (id: string): boolean => now - (state.createdAt.get(id) ?? 0) >= consistency;
      const xml = okResponse(action, requestId, h(p, { now, visible, changed }));
      // A lost response: the change is made, the caller hears a server error.
      if (hangUp(true)) return;
      if (f?.afterApply)
        return answer(f.code ?? "InternalError", f.status ?? 500, "Injected fault after the change was made");
      calls.push(okCall(action, changed.filterId, Date.now()));
      send(200, xml);
    } catch (err) {
      if (err instanceof Ec2Error) return answer(err.code, err.status, err.message);
      answer("InternalError", 500, (err as Error).message);
    }
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => res.writeHead(500).end(String(err)));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    knobs,
    calls,
    dataPlane,
    stop: () => {
      dataPlane.close();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A seed: instances and ENIs of a simulated EKS VPC. */
export interface Seed {
  instances: Instance[];
  networkInterfaces: NetworkInterface[];
}

/** Replaces the VPC's instances and ENIs. */
export function seed(state: Ec2State, s: Seed): void {
  checkEniAddresses(s.networkInterfaces);
  state.instances = new Map(s.instances.map((i) => [i.instanceId, i]));
  state.enis = new Map(s.networkInterfaces.map((e) => [e.networkInterfaceId, e]));
}

type AdminSim = { state: Ec2State; knobs: SimKnobs; calls: Ec2Sim["calls"]; dataPlane: DataPlane };

/** Admin routes: `METHOD path` → handler of the parsed JSON body, answering with JSON. */
const ADMIN: Record<string, (sim: AdminSim, input: unknown) => unknown> = {
  "POST /_sim/seed": (sim, input) => {
    seed(sim.state, input as Seed);
    return { instances: sim.state.instances.size, networkInterfaces: sim.state.enis.size };
  },
  "POST /_sim/knobs": (sim, input) => {
    for (const k of Object.keys(sim.knobs)) delete sim.knobs[k as keyof SimKnobs];
    return Object.assign(sim.knobs, input);
  },
  "GET /_sim/state": ({ state: s }) => ({
    instances: [...s.instances.values()],
    networkInterfaces: [...s.enis.values()],
    targets: [...s.targets.values()],
    filters: [...s.filters.values()],
    sessions: [...s.sessions.values()],
  }),
  "GET /_sim/calls": (sim) => sim.calls,
  "POST /_sim/reset": (sim) => {
    for (const m of [
      sim.state.targets,
      sim.state.filters,
      sim.state.sessions,
      sim.state.tokens,
      sim.state.instances,
      sim.state.enis,
    ])
      m.clear();
    sim.calls.length = 0;
    for (const k of Object.keys(sim.knobs)) delete sim.knobs[k as keyof SimKnobs];
    return { reset: true };
  },
  "POST /_sim/endpoints": (sim, input) => {
    const { key, host, port } = input as { key: string; host?: string; port: number };
    sim.dataPlane.setEndpoint(key, { host, port });
    return { key, host: host ?? "127.0.0.1", port };
  },
  "POST /_sim/traffic": (sim, input) => sim.dataPlane.send(input as SyntheticPacket[]),
};

async function admin(req: IncomingMessage, res: ServerResponse, sim: AdminSim): Promise<void> {
  const json = (status: number, v: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(v));
  };
  const route = ADMIN[`${req.method} ${req.url ?? ""}`];
  if (!route) return json(404, { error: "unknown admin path" });
  const text = req.method === "POST" ? await body(req) : "";
  try {
    json(200, await route(sim, text ? (JSON.parse(text) as unknown) : undefined));
  } catch (err) {
    json(400, { error: (err as Error).message });
  }
}
