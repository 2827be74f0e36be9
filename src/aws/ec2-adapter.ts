/**
 * `MirrorApi` on `@aws-sdk/client-ec2`: ownership tags at creation, deterministic ClientTokens (a
 * retried or repeated create never makes a duplicate), paging and batched filters inside, a
 * client-side token bucket per action (the operator's share of the account's), and retries with full
 * jitter for throttling and server errors only. Errors are wrapped with what was being done.
 */
import {
  CreateTrafficMirrorFilterCommand,
  CreateTrafficMirrorFilterRuleCommand,
  CreateTrafficMirrorSessionCommand,
  CreateTrafficMirrorTargetCommand,
  DeleteTrafficMirrorFilterCommand,
  DeleteTrafficMirrorFilterRuleCommand,
  DeleteTrafficMirrorSessionCommand,
  DeleteTrafficMirrorTargetCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeTrafficMirrorFiltersCommand,
  DescribeTrafficMirrorSessionsCommand,
  DescribeTrafficMirrorTargetsCommand,
  ModifyTrafficMirrorFilterNetworkServicesCommand,
  ModifyTrafficMirrorFilterRuleCommand,
  ModifyTrafficMirrorSessionCommand,
  type EC2Client,
  type Filter,
  type Tag,
  type TrafficMirrorFilter as SdkFilter,
  type TrafficMirrorFilterRule as SdkRule,
  type TrafficMirrorSession as SdkSession,
  type TrafficMirrorTarget as SdkTarget,
  type NetworkInterface as SdkEni,
} from "@aws-sdk/client-ec2";
import type {
  FilterRule,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  MirrorTargetType,
  NetworkInterface,
} from "../api/inventory.ts";
import { MANAGED_BY_VALUE, ownershipTags, TAG_CLUSTER, TAG_KEY, TAG_MANAGED_BY } from "../api/tags.ts";
import type { DesiredRule } from "../plan/filters.ts";
import { hashHex } from "../plan/hash.ts";
import type { FilterEdit } from "../plan/types.ts";
import { errorCode, isNotFound, isRetryable, isThrottled } from "./errors.ts";
import type {
  CreateFilterInput,
  CreateSessionInput,
  CreateTargetInput,
  MirrorApi,
  ModifySessionInput,
} from "./port.ts";
import { ActionBuckets, AWS_DEFAULT_LIMITS, type Clock, type RateLimits } from "./rate-limit.ts";

/** Called after every EC2 call, for metrics. */
export type CallObserver = (action: string, outcome: "success" | "throttled" | "error") => void;

/** Called after every wait for a token of an action's bucket, with the seconds waited, for metrics. */
export type WaitObserver = (action: string, seconds: number) => void;

/** What the adapter needs. */
export interface Ec2AdapterDeps {
  client: EC2Client;
  cluster: string;
  limits?: RateLimits;
  /** Attempts per call, including the first (default 6). */
  maxAttempts?: number;
  /** Base of the exponential backoff (default 200 ms). */
  backoffMs?: number;
  observe?: CallObserver;
  observeWait?: WaitObserver;
  sleep?: (ms: number) => Promise<void>;
  /** The clock of the token buckets (tests replace it). */
  clock?: Clock;
  /** How long a create's token is reused while its resource has not shown up (default 60 s). */
  tokenReuseMs?: number;
}

const BATCH = 200; // values per Describe filter

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function tagMap(tags: Tag[] | undefined): Record<string, string> {
  return Object.fromEntries((tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
}

function tagSpec(resourceType: string, tags: Record<string, string>) {
  return [
    {
      ResourceType: resourceType as "traffic-mirror-session",
      Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
    },
  ];
}

function toRule(r: SdkRule): FilterRule {
  return {
    trafficMirrorFilterRuleId: r.TrafficMirrorFilterRuleId,
    direction: r.TrafficDirection as FilterRule["direction"],
    ruleNumber: r.RuleNumber ?? 0,
    action: r.RuleAction as FilterRule["action"],
    ...(r.Protocol === undefined ? {} : { protocol: r.Protocol }),
    sourceCidrBlock: r.SourceCidrBlock ?? "",
    destinationCidrBlock: r.DestinationCidrBlock ?? "",
    ...(r.SourcePortRange
      ? {
          sourcePortRange: {
            fromPort: r.SourcePortRange.FromPort ?? 0,
            toPort: r.SourcePortRange.ToPort ?? 0,
          },
        }
      : {}),
    ...(r.DestinationPortRange
      ? {
          destinationPortRange: {
            fromPort: r.DestinationPortRange.FromPort ?? 0,
            toPort: r.DestinationPortRange.ToPort ?? 0,
          },
        }
      : {}),
  };
}

/** A rule as a Describe would read it back: the fields `toRule` keeps, and its id. */
export function ruleWithId(r: DesiredRule, id: string | undefined): FilterRule {
  return {
    trafficMirrorFilterRuleId: id,
    direction: r.direction,
    ruleNumber: r.ruleNumber,
    action: r.action,
    ...(r.protocol === undefined ? {} : { protocol: r.protocol }),
    sourceCidrBlock: r.sourceCidrBlock,
    destinationCidrBlock: r.destinationCidrBlock,
    ...(r.sourcePortRange ? { sourcePortRange: { ...r.sourcePortRange } } : {}),
    ...(r.destinationPortRange ? { destinationPortRange: { ...r.destinationPortRange } } : {}),
  };
}

/** A rule's fields as `CreateTrafficMirrorFilterRule` and `ModifyTrafficMirrorFilterRule` take them. */
function ruleParams(r: DesiredRule) {
  return {
    TrafficDirection: r.direction,
    RuleNumber: r.ruleNumber,
    RuleAction: r.action,
    Protocol: r.protocol,
    SourceCidrBlock: r.sourceCidrBlock,
    DestinationCidrBlock: r.destinationCidrBlock,
    SourcePortRange: r.sourcePortRange && {
      FromPort: r.sourcePortRange.fromPort,
      ToPort: r.sourcePortRange.toPort,
    },
    DestinationPortRange: r.destinationPortRange && {
      FromPort: r.destinationPortRange.fromPort,
      ToPort: r.destinationPortRange.toPort,
    },
  };
}

function toFilter(f: SdkFilter): MirrorFilter {
  return {
    trafficMirrorFilterId: f.TrafficMirrorFilterId ?? "",
    ingressRules: (f.IngressFilterRules ?? []).map(toRule),
    egressRules: (f.EgressFilterRules ?? []).map(toRule),
    networkServices: (f.NetworkServices ?? []).filter((x): x is "amazon-dns" => x === "amazon-dns"),
    description: f.Description,
    tags: tagMap(f.Tags),
  };
}

function toSession(s: SdkSession): MirrorSession {
  return {
    trafficMirrorSessionId: s.TrafficMirrorSessionId ?? "",
    networkInterfaceId: s.NetworkInterfaceId ?? "",
    trafficMirrorTargetId: s.TrafficMirrorTargetId ?? "",
    trafficMirrorFilterId: s.TrafficMirrorFilterId ?? "",
    sessionNumber: s.SessionNumber ?? 0,
    ...(s.PacketLength ? { packetLength: s.PacketLength } : {}),
    virtualNetworkId: s.VirtualNetworkId ?? 0,
    description: s.Description,
    ownerId: s.OwnerId,
    tags: tagMap(s.Tags),
  };
}

function toTarget(t: SdkTarget): MirrorTarget {
  return {
    trafficMirrorTargetId: t.TrafficMirrorTargetId ?? "",
    type: t.Type as MirrorTargetType,
    networkInterfaceId: t.NetworkInterfaceId,
    networkLoadBalancerArn: t.NetworkLoadBalancerArn,
    gatewayLoadBalancerEndpointId: t.GatewayLoadBalancerEndpointId,
    description: t.Description,
    ownerId: t.OwnerId,
    tags: tagMap(t.Tags),
  };
}

/** The adapter. */
export class Ec2MirrorApi implements MirrorApi {
  readonly #d: Required<Omit<Ec2AdapterDeps, "observe" | "observeWait" | "clock">> &
    Pick<Ec2AdapterDeps, "observe" | "observeWait">;
  readonly #salts = new Map<string, number>();
  readonly #keyOfId = new Map<string, string>();
  readonly #createdAt = new Map<string, number>();
  readonly #buckets: ActionBuckets;

  constructor(deps: Ec2AdapterDeps) {
    this.#d = {
      limits: AWS_DEFAULT_LIMITS,
      maxAttempts: 6,
      backoffMs: 200,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      tokenReuseMs: 60_000,
      ...deps,
    };
    this.#buckets = new ActionBuckets(this.#d.limits, deps.clock);
  }

  /**
   * A deterministic ClientToken: the same desired object and parameters give the same token, so a
   * retry (or a restarted operator) never makes a duplicate. EC2 answers a repeated token with the
   * original result even after that resource was deleted, so a key whose resource this process
   * deleted, or whose earlier create never showed up, gets a new salt.
   */
  clientToken(action: string, key: string, params: unknown): string {
    const salt = this.#salts.get(key) ?? 0;
    return `tmo-${hashHex(`${this.#d.cluster}|${action}|${key}|${salt}|${JSON.stringify(params)}`)}`;
  }

  /** Called before a create: a second create of one key long after the first means it did not stick. */
  #beforeCreate(key: string): void {
    const last = this.#createdAt.get(key);
    if (last !== undefined && Date.now() - last >= this.#d.tokenReuseMs) this.#bump(key);
  }

  #afterCreate(key: string, id: string): void {
    this.#createdAt.set(key, Date.now());
    this.#keyOfId.set(id, key);
  }

  #bump(key: string): void {
    this.#salts.set(key, (this.#salts.get(key) ?? 0) + 1);
    this.#createdAt.delete(key);
  }

  #afterDelete(id: string): void {
    const key = this.#keyOfId.get(id);
    if (key !== undefined) this.#bump(key);
  }

  #remember(resources: { id: string; tags: Record<string, string> }[]): void {
    for (const r of resources) {
      const key = r.tags[TAG_KEY];
      if (key === undefined) continue;
      this.#keyOfId.set(r.id, key);
      this.#createdAt.delete(key); // it exists: nothing to heal
    }
  }

  async #call<T>(what: string, command: { constructor: { name: string } }): Promise<T> {
    const action = command.constructor.name.replace(/Command$/, "");
    for (let attempt = 1; ; attempt++) {
      const waited = await this.#buckets.take(action);
      this.#d.observeWait?.(action, waited / 1000);
      try {
        const out = (await this.#d.client.send(command as never)) as T;
        this.#d.observe?.(action, "success");
        return out;
      } catch (err) {
        this.#d.observe?.(action, isThrottled(err) ? "throttled" : "error");
        if (!isRetryable(err) || attempt >= this.#d.maxAttempts) throw new Error(what, { cause: err });
        // Full jitter: a random wait up to an exponentially growing cap.
        await this.#d.sleep(Math.random() * this.#d.backoffMs * 2 ** (attempt - 1));
      }
    }
  }

  async #pages<R extends { NextToken?: string }>(
    what: string,
    make: (token?: string) => { constructor: { name: string } },
  ): Promise<R[]> {
    const out: R[] = [];
    let token: string | undefined;
    do {
      const page = await this.#call<R>(what, make(token));
      out.push(page);
      token = page.NextToken;
    } while (token);
    return out;
  }

  /**
   * Describes ids in batches. EC2 answers an id that does not exist with an empty list when it is
   * asked through a filter, and with `Invalid…Id.NotFound` when asked by id (also while a new
   * resource is not yet visible). Both mean "not there": on NotFound the batch is halved until the
   * missing ids are left out, so the ids that exist are still read.
   */
  async #byIds<T>(ids: readonly string[], describe: (batch: string[]) => Promise<T[]>): Promise<T[]> {
    const out: T[] = [];
    for (const batch of chunks(ids, BATCH)) out.push(...(await this.#withoutMissing(batch, describe)));
    return out;
  }

  async #withoutMissing<T>(ids: string[], describe: (batch: string[]) => Promise<T[]>): Promise<T[]> {
    try {
      return await describe(ids);
    } catch (err) {
      if (!isNotFound((err as Error).cause)) throw err;
      if (ids.length === 1) return [];
      const half = Math.ceil(ids.length / 2);
      return [
        ...(await this.#withoutMissing(ids.slice(0, half), describe)),
        ...(await this.#withoutMissing(ids.slice(half), describe)),
      ];
    }
  }

  async describeInstances(instanceIds: readonly string[]): Promise<Instance[]> {
    return this.#byIds(instanceIds, async (ids) => {
      const out: Instance[] = [];
      const filters: Filter[] = [{ Name: "instance-id", Values: ids }];
      const pages = await this.#pages<{
        Reservations?: {
          Instances?: {
            InstanceId?: string;
            InstanceType?: string;
            Placement?: { AvailabilityZone?: string };
            SubnetId?: string;
            VpcId?: string;
          }[];
        }[];
        NextToken?: string;
      }>(
        "describing instances",
        (NextToken) => new DescribeInstancesCommand({ Filters: filters, MaxResults: 1000, NextToken }),
      );
      for (const i of pages.flatMap((p) => p.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
        out.push({
          instanceId: i.InstanceId ?? "",
          instanceType: i.InstanceType ?? "",
          availabilityZone: i.Placement?.AvailabilityZone ?? "",
          subnetId: i.SubnetId,
          vpcId: i.VpcId,
        });
      }
      return out;
    });
  }

  async describeNetworkInterfaces(instanceIds: readonly string[]): Promise<NetworkInterface[]> {
    return this.#byIds(instanceIds, async (ids) => {
      const out: NetworkInterface[] = [];
      const pages = await this.#pages<{
        NetworkInterfaces?: SdkEni[];
        NextToken?: string;
      }>(
        "describing network interfaces",
        (NextToken) =>
          new DescribeNetworkInterfacesCommand({
            Filters: [{ Name: "attachment.instance-id", Values: ids }],
            MaxResults: 1000,
            NextToken,
          }),
      );
      for (const e of pages.flatMap((p) => p.NetworkInterfaces ?? [])) {
        out.push({
          networkInterfaceId: e.NetworkInterfaceId ?? "",
          instanceId: e.Attachment?.InstanceId,
          deviceIndex: e.Attachment?.DeviceIndex,
          interfaceType: e.InterfaceType ?? "interface",
          availabilityZone: e.AvailabilityZone ?? "",
          subnetId: e.SubnetId ?? "",
          vpcId: e.VpcId ?? "",
          description: e.Description ?? "",
          primaryIp: e.PrivateIpAddress ?? "",
          privateIps: (e.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress ?? ""),
          ipv4Prefixes: (e.Ipv4Prefixes ?? []).map((p) => p.Ipv4Prefix ?? ""),
          ipv6Addresses: (e.Ipv6Addresses ?? []).map((a) => a.Ipv6Address ?? ""),
          ipv6Prefixes: (e.Ipv6Prefixes ?? []).map((p) => p.Ipv6Prefix ?? ""),
          tags: tagMap(e.TagSet),
        });
      }
      return out;
    });
  }

  async describeSessionsOnInterfaces(eniIds: readonly string[]): Promise<MirrorSession[]> {
    return this.#byIds(eniIds, async (ids) => {
      const pages = await this.#pages<{ TrafficMirrorSessions?: SdkSession[]; NextToken?: string }>(
        "describing mirror sessions",
        (NextToken) =>
          new DescribeTrafficMirrorSessionsCommand({
            Filters: [{ Name: "network-interface-id", Values: ids }],
            MaxResults: 1000,
            NextToken,
          }),
      );
      return pages.flatMap((p) => p.TrafficMirrorSessions ?? []).map(toSession);
    });
  }

  async describeOwned(): Promise<{
    targets: MirrorTarget[];
    filters: MirrorFilter[];
    sessions: MirrorSession[];
  }> {
    const owned: Filter[] = [
      { Name: `tag:${TAG_MANAGED_BY}`, Values: [MANAGED_BY_VALUE] },
      { Name: `tag:${TAG_CLUSTER}`, Values: [this.#d.cluster] },
    ];
    const [t, f, s] = await Promise.all([
      this.#pages<{ TrafficMirrorTargets?: SdkTarget[]; NextToken?: string }>(
        "describing owned targets",
        (NextToken) =>
          new DescribeTrafficMirrorTargetsCommand({ Filters: owned, MaxResults: 1000, NextToken }),
      ),
      this.#pages<{ TrafficMirrorFilters?: SdkFilter[]; NextToken?: string }>(
        "describing owned filters",
        (NextToken) =>
          new DescribeTrafficMirrorFiltersCommand({ Filters: owned, MaxResults: 1000, NextToken }),
      ),
      this.#pages<{ TrafficMirrorSessions?: SdkSession[]; NextToken?: string }>(
        "describing owned sessions",
        (NextToken) =>
          new DescribeTrafficMirrorSessionsCommand({ Filters: owned, MaxResults: 1000, NextToken }),
      ),
    ]);
    const found = {
      targets: t.flatMap((p) => p.TrafficMirrorTargets ?? []).map(toTarget),
      filters: f.flatMap((p) => p.TrafficMirrorFilters ?? []).map(toFilter),
      sessions: s.flatMap((p) => p.TrafficMirrorSessions ?? []).map(toSession),
    };
    this.#remember([
      ...found.targets.map((x) => ({ id: x.trafficMirrorTargetId, tags: x.tags })),
      ...found.filters.map((x) => ({ id: x.trafficMirrorFilterId, tags: x.tags })),
      ...found.sessions.map((x) => ({ id: x.trafficMirrorSessionId, tags: x.tags })),
    ]);
    return found;
  }

  async describeTargets(targetIds: readonly string[]): Promise<MirrorTarget[]> {
    return this.#byIds(targetIds, async (ids) => {
      const pages = await this.#pages<{ TrafficMirrorTargets?: SdkTarget[]; NextToken?: string }>(
        "describing targets",
        (NextToken) =>
          new DescribeTrafficMirrorTargetsCommand({
            Filters: [{ Name: "traffic-mirror-target-id", Values: ids }],
            MaxResults: 1000,
            NextToken,
          }),
      );
      return pages.flatMap((p) => p.TrafficMirrorTargets ?? []).map(toTarget);
    });
  }

  async createTarget(t: CreateTargetInput): Promise<MirrorTarget> {
    const params = {
      NetworkInterfaceId: t.networkInterfaceId,
      NetworkLoadBalancerArn: t.networkLoadBalancerArn,
      GatewayLoadBalancerEndpointId: t.gatewayLoadBalancerEndpointId,
    };
    this.#beforeCreate(t.key);
    const out = await this.#call<{ TrafficMirrorTarget?: SdkTarget }>(
      `creating mirror target ${t.key}`,
      new CreateTrafficMirrorTargetCommand({
        ...params,
        Description: t.description,
        TagSpecifications: tagSpec("traffic-mirror-target", ownershipTags(this.#d.cluster, t.key, t.owners)),
        ClientToken: this.clientToken("CreateTrafficMirrorTarget", t.key, params),
      }),
    );
    const target = toTarget(out.TrafficMirrorTarget ?? {});
    target.tags = { ...ownershipTags(this.#d.cluster, t.key, t.owners), ...target.tags };
    this.#afterCreate(t.key, target.trafficMirrorTargetId);
    return target;
  }

  async deleteTarget(id: string): Promise<void> {
    await this.#deleting(id, () =>
      this.#call(
        `deleting mirror target ${id}`,
        new DeleteTrafficMirrorTargetCommand({ TrafficMirrorTargetId: id }),
      ),
    );
  }

  /** Creates rules (and enables services); returns the rules made, with their ids. */
  async #addRules(
    filterId: string,
    f: Pick<CreateFilterInput, "key" | "rules" | "networkServices">,
  ): Promise<FilterRule[]> {
    const made: FilterRule[] = [];
    for (const r of f.rules) {
      const params = { TrafficMirrorFilterId: filterId, ...ruleParams(r) };
      const out = await this.#call<{ TrafficMirrorFilterRule?: SdkRule }>(
        `creating rule ${r.direction} ${r.ruleNumber} of filter ${filterId}`,
        new CreateTrafficMirrorFilterRuleCommand({
          ...params,
          ClientToken: this.clientToken("CreateTrafficMirrorFilterRule", f.key, params),
        }),
      );
      // The rule as asked for, with the id EC2 gave it (the answer echoes the same fields).
      made.push(ruleWithId(r, out.TrafficMirrorFilterRule?.TrafficMirrorFilterRuleId));
    }
    if (f.networkServices.length > 0) {
      await this.#call(
        `enabling network services on filter ${filterId}`,
        new ModifyTrafficMirrorFilterNetworkServicesCommand({
          TrafficMirrorFilterId: filterId,
          AddNetworkServices: f.networkServices,
        }),
      );
    }
    return made;
  }

  async createFilter(f: CreateFilterInput): Promise<MirrorFilter> {
    this.#beforeCreate(f.key);
    const out = await this.#call<{ TrafficMirrorFilter?: SdkFilter }>(
      `creating mirror filter ${f.key}`,
      new CreateTrafficMirrorFilterCommand({
        Description: f.description,
        TagSpecifications: tagSpec("traffic-mirror-filter", ownershipTags(this.#d.cluster, f.key)),
        ClientToken: this.clientToken("CreateTrafficMirrorFilter", f.key, {}),
      }),
    );
    const filter = toFilter(out.TrafficMirrorFilter ?? {});
    this.#afterCreate(f.key, filter.trafficMirrorFilterId);
    // A retried create returns the filter as it is: add only the rules it lacks.
    const existing = [...filter.ingressRules, ...filter.egressRules];
    const have = new Set(existing.map((r) => `${r.direction}/${r.ruleNumber}`));
    // Rule tokens also name the rules already there: a retry sees the same state and the same
    // tokens, while a rule wanted again after a delete gets a new token (an old one would answer
    // with the deleted rule and create nothing).
    const state = hashHex(
      existing
        .map((r) => r.trafficMirrorFilterRuleId ?? "")
        .sort()
        .join(),
    );
    const made = await this.#addRules(filter.trafficMirrorFilterId, {
      ...f,
      key: `${f.key}/${state}`,
      rules: f.rules.filter((r) => !have.has(`${r.direction}/${r.ruleNumber}`)),
    });
    // The filter as it now is, rule ids included (the kept inventory edits it later by them).
    const rules = [...existing, ...made];
    return {
      ...filter,
      ingressRules: rules.filter((r) => r.direction === "ingress"),
      egressRules: rules.filter((r) => r.direction === "egress"),
      networkServices: [...new Set([...filter.networkServices, ...f.networkServices])],
      tags: { ...ownershipTags(this.#d.cluster, f.key), ...filter.tags },
    };
  }

  async editFilter(e: FilterEdit): Promise<FilterRule[]> {
    // The edits were planned from the inventory, not from a fresh read: a rule or filter that is
    // gone, or a number taken, means the inventory was stale. The error says so and the next cycle
    // plans again from a new read. A rule already deleted is what a delete wants, though: a retried
    // delete answers NotFound.
    if (e.removeNetworkServices.length > 0) {
      await this.#call(
        `disabling network services on filter ${e.filterId}`,
        new ModifyTrafficMirrorFilterNetworkServicesCommand({
          TrafficMirrorFilterId: e.filterId,
          RemoveNetworkServices: e.removeNetworkServices,
        }),
      );
    }
    for (const edit of e.rules) {
      if (edit.op === "delete") {
        await this.#ignoreNotFound(() =>
          this.#call(
            `deleting rule ${edit.ruleId} (${edit.direction} ${edit.ruleNumber}) of filter ${e.filterId}`,
            new DeleteTrafficMirrorFilterRuleCommand({ TrafficMirrorFilterRuleId: edit.ruleId }),
          ),
        );
      } else if (edit.op === "modify") {
        const r = edit.rule;
        await this.#call(
          `modifying rule ${edit.ruleId} of filter ${e.filterId} to ${r.direction} ${r.ruleNumber}`,
          new ModifyTrafficMirrorFilterRuleCommand({
            TrafficMirrorFilterRuleId: edit.ruleId,
            ...ruleParams(r),
            ...(edit.removeFields.length > 0 ? { RemoveFields: edit.removeFields } : {}),
          }),
        );
      }
    }
    // New tokens: the filter's rule ids before the edit are part of them (see createFilter).
    return this.#addRules(e.filterId, {
      key: `${e.key}/${e.state}`,
      rules: e.rules.flatMap((x) => (x.op === "create" ? [x.rule] : [])),
      networkServices: e.addNetworkServices,
    });
  }

  async deleteFilter(id: string): Promise<void> {
    await this.#deleting(id, () =>
      this.#call(
        `deleting mirror filter ${id}`,
        new DeleteTrafficMirrorFilterCommand({ TrafficMirrorFilterId: id }),
      ),
    );
  }

  async createSession(s: CreateSessionInput): Promise<MirrorSession> {
    const params = {
      NetworkInterfaceId: s.networkInterfaceId,
      TrafficMirrorTargetId: s.trafficMirrorTargetId,
      TrafficMirrorFilterId: s.trafficMirrorFilterId,
      SessionNumber: s.sessionNumber,
      PacketLength: s.packetLength,
      VirtualNetworkId: s.virtualNetworkId,
    };
    this.#beforeCreate(s.key);
    const out = await this.#call<{ TrafficMirrorSession?: SdkSession }>(
      `creating mirror session ${s.key} on ${s.networkInterfaceId}`,
      new CreateTrafficMirrorSessionCommand({
        ...params,
        Description: s.description,
        TagSpecifications: tagSpec("traffic-mirror-session", ownershipTags(this.#d.cluster, s.key, s.owners)),
        ClientToken: this.clientToken("CreateTrafficMirrorSession", s.key, params),
      }),
    );
    const session = toSession(out.TrafficMirrorSession ?? {});
    session.tags = { ...ownershipTags(this.#d.cluster, s.key, s.owners), ...session.tags };
    this.#afterCreate(s.key, session.trafficMirrorSessionId);
    return session;
  }

  async modifySession(id: string, c: ModifySessionInput): Promise<void> {
    await this.#call(
      `modifying mirror session ${id}`,
      new ModifyTrafficMirrorSessionCommand({
        TrafficMirrorSessionId: id,
        TrafficMirrorTargetId: c.trafficMirrorTargetId,
        TrafficMirrorFilterId: c.trafficMirrorFilterId,
        SessionNumber: c.sessionNumber,
        PacketLength: c.packetLength ?? undefined,
        VirtualNetworkId: c.virtualNetworkId,
        RemoveFields: c.packetLength === null ? ["packet-length"] : undefined,
      }),
    );
  }

  async deleteSession(id: string): Promise<void> {
    await this.#deleting(id, () =>
      this.#call(
        `deleting mirror session ${id}`,
        new DeleteTrafficMirrorSessionCommand({ TrafficMirrorSessionId: id }),
      ),
    );
  }

  /** A delete of something this operator made: gone (or already gone) means its key needs a new token. */
  async #deleting(id: string, fn: () => Promise<unknown>): Promise<void> {
    await this.#ignoreNotFound(fn);
    this.#afterDelete(id);
  }

  async #ignoreNotFound(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      // Already gone is the outcome a delete wants.
      if (!isNotFound((err as Error).cause)) throw err;
    }
  }
}

/** The AWS error code behind a wrapped adapter error. */
export function causeCode(err: unknown): string | undefined {
  return errorCode((err as Error | undefined)?.cause);
}
