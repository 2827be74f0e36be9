/**
 * The EC2 emulator's model: instances, ENIs and the Traffic Mirroring resources, with AWS's
 * semantics and quotas and its real error codes (see ../shared/reference/aws-traffic-mirroring.md).
 */
import type {
  FilterRule,
  Instance,
  MirrorFilter,
  MirrorSession,
  MirrorTarget,
  NetworkInterface,
} from "../../src/api/inventory.ts";
import { mirrorSourceSupport } from "../../src/api/instance-types.ts";
import { parseCidr } from "../../src/plan/ipv4.ts";
import { formatBlock6, formatIp6, isIpv6Text, parseCidr6, parseIp6 } from "../../src/plan/ipv6.ts";

/** An EC2 API error. */
export class Ec2Error extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** AWS's quotas (none adjustable). */
export const QUOTAS = {
  sessionsPerEni: 3,
  rulesPerFilter: 10,
  sourcesPerEniTarget: 10,
  sessions: 10_000,
  filters: 10_000,
  targets: 10_000,
};

/**
 * A filter rule's CIDR blocks: each an IPv4 or IPv6 CIDR, both of one family. AWS's reference is
 * silent on a rule that mixes families (its examples pair `0.0.0.0/0` with `0.0.0.0/0` and `::/0`
 * with `::/0`); the emulator refuses one, so the planner is shown never to make one.
 */
function checkRuleCidrs(r: Pick<FilterRule, "sourceCidrBlock" | "destinationCidrBlock">): void {
  const family = (cidr: string, param: string): 4 | 6 => {
    const v6 = isIpv6Text(cidr);
    if (v6 ? parseCidr6(cidr) === undefined : parseCidr(cidr) === undefined)
      throw new Ec2Error("InvalidParameterValue", `Value (${cidr}) for parameter ${param} is invalid.`);
    return v6 ? 6 : 4;
  };
  if (family(r.sourceCidrBlock, "SourceCidrBlock") !== family(r.destinationCidrBlock, "DestinationCidrBlock"))
    throw new Ec2Error(
      "InvalidParameterValue",
      "SourceCidrBlock and DestinationCidrBlock must be of the same IP address family.",
    );
}

/**
 * Checks a seeded ENI's IPv6 side as EC2 describes one: addresses in canonical (RFC 5952) text,
 * prefixes delegated as /80s on their boundary, and no address or prefix on two ENIs.
 */
export function checkEniAddresses(enis: readonly NetworkInterface[]): void {
  const seen = new Map<string, string>();
  const once = (key: string, eni: string): void => {
    const other = seen.get(key);
    if (other !== undefined && other !== eni) throw new Error(`${key} is on both ${other} and ${eni}`);
    seen.set(key, eni);
  };
  for (const e of enis) {
    for (const a of e.ipv6Addresses ?? []) {
      const n = parseIp6(a);
      if (n === undefined || formatIp6(n) !== a)
        throw new Error(`${e.networkInterfaceId}: ${a} is not an IPv6 address as EC2 writes one`);
      once(a, e.networkInterfaceId);
    }
    for (const p of e.ipv6Prefixes ?? []) {
      const b = parseCidr6(p);
      if (b?.len !== 80 || formatBlock6(b) !== p)
        throw new Error(`${e.networkInterfaceId}: ${p} is not an IPv6 /80 prefix as EC2 delegates one`);
      once(p, e.networkInterfaceId);
    }
  }
}

/** Tags from `TagSpecification` for one resource type. */
export type Tags = Record<string, string>;

/** Everything the emulator holds. */
export class Ec2State {
  instances = new Map<string, Instance>();
  enis = new Map<string, NetworkInterface>();
  targets = new Map<string, MirrorTarget>();
  filters = new Map<string, MirrorFilter>();
  sessions = new Map<string, MirrorSession>();
  /** When each resource was created (ms), for eventual consistency. */
  createdAt = new Map<string, number>();
  /** ClientToken → what it created, for idempotency. */
  tokens = new Map<string, { action: string; fingerprint: string; id: string }>();
  /** Resources as they were created, by id (answers to repeated ClientTokens). */
  snapshots = new Map<string, unknown>();
  #seq = 0;
  ownerId = "123456789012";

  /** A new id of an EC2 kind, 17 hex digits like AWS's. */
  newId(prefix: string): string {
    this.#seq++;
    return `${prefix}-${this.#seq.toString(16).padStart(17, "0")}`;
  }

  /** Runs a create under a ClientToken: same token and parameters → the same resource. */
  idempotent(opts: { action: string; token?: string; fingerprint: string; create: () => string }): string {
    if (!opts.token) return opts.create();
    const seen = this.tokens.get(opts.token);
    if (seen) {
      if (seen.action !== opts.action || seen.fingerprint !== opts.fingerprint) {
        throw new Ec2Error(
          "IdempotentParameterMismatch",
          "The client token was already used with different parameters.",
        );
      }
      return seen.id;
    }
    const id = opts.create();
    this.tokens.set(opts.token, { action: opts.action, fingerprint: opts.fingerprint, id });
    const created = this.targets.get(id) ?? this.filters.get(id) ?? this.sessions.get(id);
    if (created) this.snapshots.set(id, structuredClone(created));
    return id;
  }

  /**
   * A resource as it is, or as it was created if it has been deleted since: a repeated ClientToken
   * is answered with the original result even when the resource is gone (as EC2 does), which is
   * why the operator must not reuse a token after deleting what it made.
   */
  asCreated<T>(id: string, current: Map<string, T>): T {
    const v = current.get(id) ?? (this.snapshots.get(id) as T | undefined);
    if (v === undefined) throw new Ec2Error("InternalError", `no record of ${id}`);
    return v;
  }

  eni(id: string): NetworkInterface {
    const e = this.enis.get(id);
    if (!e)
      throw new Ec2Error(
        "InvalidNetworkInterfaceID.NotFound",
        `The networkInterface ID '${id}' does not exist`,
      );
    return e;
  }

  target(id: string): MirrorTarget {
    const t = this.targets.get(id);
    if (!t)
      throw new Ec2Error(
        "InvalidTrafficMirrorTargetId.NotFound",
        `The traffic mirror target ID '${id}' does not exist.`,
      );
    return t;
  }

  filter(id: string): MirrorFilter {
    const f = this.filters.get(id);
    if (!f)
      throw new Ec2Error(
        "InvalidTrafficMirrorFilterId.NotFound",
        `The traffic mirror filter ID '${id}' does not exist.`,
      );
    return f;
  }

  session(id: string): MirrorSession {
    const s = this.sessions.get(id);
    if (!s)
      throw new Ec2Error(
        "InvalidTrafficMirrorSessionId.NotFound",
        `The traffic mirror session ID '${id}' does not exist.`,
      );
    return s;
  }

  #stamp(id: string, now: number): void {
    this.createdAt.set(id, now);
  }

  createTarget(
    t: Omit<MirrorTarget, "trafficMirrorTargetId" | "type" | "ownerId">,
    now: number,
  ): MirrorTarget {
    const kinds = [t.networkInterfaceId, t.networkLoadBalancerArn, t.gatewayLoadBalancerEndpointId].filter(
      Boolean,
    );
    if (kinds.length !== 1) {
      throw new Ec2Error(
        "InvalidParameterCombination",
        "Specify exactly one of NetworkInterfaceId, NetworkLoadBalancerArn or GatewayLoadBalancerEndpointId.",
      );
    }
    if (this.targets.size >= QUOTAS.targets)
      throw new Ec2Error("TrafficMirrorTargetLimitExceeded", "Traffic mirror target limit exceeded.");
    if (t.networkInterfaceId) {
      this.eni(t.networkInterfaceId);
      if ([...this.sessions.values()].some((s) => s.networkInterfaceId === t.networkInterfaceId)) {
        throw new Ec2Error(
          "InvalidParameterValue",
          `${t.networkInterfaceId} is a mirror source and cannot be a target.`,
        );
      }
    }
    const type = t.networkInterfaceId
      ? "network-interface"
      : t.networkLoadBalancerArn
        ? "network-load-balancer"
        : "gateway-load-balancer-endpoint";
    const target: MirrorTarget = {
      ...t,
      trafficMirrorTargetId: this.newId("tmt"),
      type,
      ownerId: this.ownerId,
    };
    this.targets.set(target.trafficMirrorTargetId, target);
    this.#stamp(target.trafficMirrorTargetId, now);
    return target;
  }

  deleteTarget(id: string): void {
    this.target(id);
    if ([...this.sessions.values()].some((s) => s.trafficMirrorTargetId === id)) {
      throw new Ec2Error(
        "TrafficMirrorTargetInUseException",
        `Traffic mirror target ${id} is in use by a session.`,
      );
    }
    this.targets.delete(id);
  }

  createFilter(f: { description?: string; tags: Tags }, now: number): MirrorFilter {
    if (this.filters.size >= QUOTAS.filters)
      throw new Ec2Error("TrafficMirrorFilterLimitExceeded", "Traffic mirror filter limit exceeded.");
    const filter: MirrorFilter = {
      trafficMirrorFilterId: this.newId("tmf"),
      ingressRules: [],
      egressRules: [],
      networkServices: [],
      ...f,
    };
    this.filters.set(filter.trafficMirrorFilterId, filter);
    this.#stamp(filter.trafficMirrorFilterId, now);
    return filter;
  }

  deleteFilter(id: string): void {
    this.filter(id);
    if ([...this.sessions.values()].some((s) => s.trafficMirrorFilterId === id)) {
      throw new Ec2Error("TrafficMirrorFilterInUse", `Traffic mirror filter ${id} is in use by a session.`);
    }
    this.filters.delete(id);
  }

  createFilterRule(filterId: string, r: Omit<FilterRule, "trafficMirrorFilterRuleId">): FilterRule {
    const f = this.filter(filterId);
    if (f.ingressRules.length + f.egressRules.length >= QUOTAS.rulesPerFilter) {
      throw new Ec2Error(
        "TrafficMirrorFilterRuleLimitExceeded",
        `Filter ${filterId} already has ${QUOTAS.rulesPerFilter} rules.`,
      );
    }
    const list = r.direction === "ingress" ? f.ingressRules : f.egressRules;
    if (list.some((x) => x.ruleNumber === r.ruleNumber)) {
      throw new Ec2Error(
        "TrafficMirrorFilterRuleAlreadyExists",
        `Rule number ${r.ruleNumber} already exists for ${r.direction}.`,
      );
    }
    if ((r.sourcePortRange || r.destinationPortRange) && r.protocol !== 6 && r.protocol !== 17) {
      throw new Ec2Error("InvalidParameterValue", "Port ranges are only valid for TCP and UDP.");
    }
    if (!(r.ruleNumber >= 1 && r.ruleNumber <= 32766))
      throw new Ec2Error("InvalidParameterValue", "RuleNumber must be between 1 and 32766.");
    checkRuleCidrs(r);
    const rule: FilterRule = { ...r, trafficMirrorFilterRuleId: this.newId("tmfr") };
    list.push(rule);
    list.sort((a, b) => a.ruleNumber - b.ruleNumber);
    return rule;
  }

  /**
   * `ModifyTrafficMirrorFilterRule`: sets the given fields and clears the removed ones, with the
   * checks of a create (the number free in the rule's direction, other rules than this one).
   */
  modifyFilterRule(
    ruleId: string,
    set: Partial<Omit<FilterRule, "trafficMirrorFilterRuleId">>,
    remove: readonly string[],
  ): { rule: FilterRule; filterId: string } {
    const at = this.#findRule(ruleId);
    const next: FilterRule = { ...at.rule };
    for (const [k, v] of Object.entries(set)) if (v !== undefined) Object.assign(next, { [k]: v });
    for (const field of remove) {
      if (field === "protocol") delete next.protocol;
      else if (field === "source-port-range") delete next.sourcePortRange;
      else if (field === "destination-port-range") delete next.destinationPortRange;
      else if (field === "description") delete next.description;
      else
        throw new Ec2Error("InvalidParameterValue", `Value (${field}) for parameter RemoveField is invalid.`);
    }
    const f = at.filter;
    const list = next.direction === "ingress" ? f.ingressRules : f.egressRules;
    if (list.some((x) => x !== at.rule && x.ruleNumber === next.ruleNumber)) {
      throw new Ec2Error(
        "TrafficMirrorFilterRuleAlreadyExists",
        `Rule number ${next.ruleNumber} already exists for ${next.direction}.`,
      );
    }
    if ((next.sourcePortRange || next.destinationPortRange) && next.protocol !== 6 && next.protocol !== 17) {
      throw new Ec2Error("InvalidParameterValue", "Port ranges are only valid for TCP and UDP.");
    }
    if (!(next.ruleNumber >= 1 && next.ruleNumber <= 32766))
      throw new Ec2Error("InvalidParameterValue", "RuleNumber must be between 1 and 32766.");
    checkRuleCidrs(next);
    // In place, or moved to the other direction's list; either kept in number order.
    at.list.splice(at.list.indexOf(at.rule), 1);
    list.push(next);
    list.sort((a, b) => a.ruleNumber - b.ruleNumber);
    return { rule: next, filterId: f.trafficMirrorFilterId };
  }

  #findRule(ruleId: string): { filter: MirrorFilter; list: FilterRule[]; rule: FilterRule } {
    for (const filter of this.filters.values())
      for (const list of [filter.ingressRules, filter.egressRules]) {
        const rule = list.find((r) => r.trafficMirrorFilterRuleId === ruleId);
        if (rule) return { filter, list, rule };
      }
    throw new Ec2Error(
      "InvalidTrafficMirrorFilterRuleId.NotFound",
      `The traffic mirror filter rule ID '${ruleId}' does not exist.`,
    );
  }

  /** Deletes a rule; the id of the filter that held it. */
  deleteFilterRule(ruleId: string): string {
    for (const f of this.filters.values()) {
      for (const list of [f.ingressRules, f.egressRules]) {
        const i = list.findIndex((r) => r.trafficMirrorFilterRuleId === ruleId);
        if (i >= 0) {
          list.splice(i, 1);
          return f.trafficMirrorFilterId;
        }
      }
    }
    throw new Ec2Error(
      "InvalidTrafficMirrorFilterRuleId.NotFound",
      `The traffic mirror filter rule ID '${ruleId}' does not exist.`,
    );
  }

  #checkSource(eniId: string): void {
    const eni = this.eni(eniId);
    if (eni.interfaceType !== "interface") {
      throw new Ec2Error(
        "InvalidParameterValue",
        `Network interface ${eniId} of type ${eni.interfaceType} cannot be a mirror source.`,
      );
    }
    const type = eni.instanceId ? this.instances.get(eni.instanceId)?.instanceType : undefined;
    if (type && !mirrorSourceSupport(type).supported) {
      throw new Ec2Error(
        "UnsupportedOperation",
        `Instance type ${type} is not supported as a traffic mirror source.`,
      );
    }
    if ([...this.targets.values()].some((t) => t.networkInterfaceId === eniId)) {
      throw new Ec2Error(
        "InvalidParameterValue",
        `Network interface ${eniId} is a mirror target and cannot be a source.`,
      );
    }
  }

  #checkSlots(
    s: { networkInterfaceId: string; sessionNumber: number; trafficMirrorTargetId: string },
    except?: string,
  ): void {
    const onEni = [...this.sessions.values()].filter(
      (x) => x.networkInterfaceId === s.networkInterfaceId && x.trafficMirrorSessionId !== except,
    );
    if (!except && onEni.length >= QUOTAS.sessionsPerEni) {
      throw new Ec2Error(
        "TrafficMirrorSessionsPerInterfaceLimitExceeded",
        `Network interface ${s.networkInterfaceId} already has ${QUOTAS.sessionsPerEni} sessions.`,
      );
    }
    if (onEni.some((x) => x.sessionNumber === s.sessionNumber)) {
      throw new Ec2Error(
        "InvalidParameterValue",
        `Session number ${s.sessionNumber} is already used on ${s.networkInterfaceId}.`,
      );
    }
    const target = this.target(s.trafficMirrorTargetId);
    if (target.type === "network-interface") {
      const sources = [...this.sessions.values()].filter(
        (x) =>
          x.trafficMirrorTargetId === target.trafficMirrorTargetId && x.trafficMirrorSessionId !== except,
      );
      if (sources.length >= QUOTAS.sourcesPerEniTarget) {
        throw new Ec2Error(
          "TrafficMirrorSourcesPerTargetLimitExceeded",
          `Target ${target.trafficMirrorTargetId} already has ${QUOTAS.sourcesPerEniTarget} sources.`,
        );
      }
    }
  }

  createSession(
    s: Omit<MirrorSession, "trafficMirrorSessionId" | "ownerId" | "virtualNetworkId"> & {
      virtualNetworkId?: number;
    },
    now: number,
  ): MirrorSession {
    if (this.sessions.size >= QUOTAS.sessions)
      throw new Ec2Error("TrafficMirrorSessionLimitExceeded", "Traffic mirror session limit exceeded.");
    if (!(s.sessionNumber >= 1 && s.sessionNumber <= 32766))
      throw new Ec2Error("InvalidParameterValue", "SessionNumber must be between 1 and 32766.");
    this.#checkSource(s.networkInterfaceId);
    this.filter(s.trafficMirrorFilterId);
    this.#checkSlots(s);
    const session: MirrorSession = {
      ...s,
      trafficMirrorSessionId: this.newId("tms"),
      virtualNetworkId: s.virtualNetworkId ?? 1 + ((this.#seq * 7919) % 0xfffffe),
      ownerId: this.ownerId,
    };
    this.sessions.set(session.trafficMirrorSessionId, session);
    this.#stamp(session.trafficMirrorSessionId, now);
    return session;
  }

  modifySession(id: string, changes: Partial<MirrorSession>, remove: string[]): MirrorSession {
    const current = this.session(id);
    const next = { ...current, ...changes };
    if (remove.includes("packet-length")) delete next.packetLength;
    if (remove.includes("description")) delete next.description;
    if (changes.trafficMirrorFilterId) this.filter(changes.trafficMirrorFilterId);
    this.#checkSlots(next, id);
    this.sessions.set(id, next);
    return next;
  }

  deleteSession(id: string): void {
    this.session(id);
    this.sessions.delete(id);
  }
}
