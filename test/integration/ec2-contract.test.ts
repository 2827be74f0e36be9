// The EC2 port through the real @aws-sdk/client-ec2 against the emulator: inventory, creates with
// ownership tags and ClientTokens, AWS's limits and error codes, retries, throttling, and the whole
// plan → apply → plan loop.
import { setTimeout as sleep } from "node:timers/promises";
import { DescribeNetworkInterfacesCommand } from "@aws-sdk/client-ec2";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { ownershipTags } from "../../src/api/tags.ts";
import { makeEc2Client } from "../../src/aws/client.ts";
import { causeCode, Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { isDryRunOk, isUnauthorized } from "../../src/aws/errors.ts";
import { loadInventory } from "../../src/aws/inventory.ts";
import { KeptInventory } from "../../src/aws/kept-inventory.ts";
import type { MirrorApi } from "../../src/aws/port.ts";
import { applyPlanDiff, pool } from "../../src/controller/apply.ts";
import type { FilterRule, MirrorFilter } from "../../src/api/inventory.ts";
import { canonicalRule, type DesiredRule } from "../../src/plan/filters.ts";
import { isEmptyDiff } from "../../src/plan/diff.ts";
import { indexInventory } from "../../src/plan/inventory-index.ts";
import { planMirroring } from "../../src/plan/plan.ts";
import { planRuleEdits } from "../../src/plan/rule-edits.ts";
import { seed, startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { makeCollectorTarget, makePolicy, makeWorld, planInputOf, type World } from "../fixtures/world.ts";

const cluster = "contract";
const log = pino({ level: "silent" });
let sim: Ec2Sim;

function adapter(
  opts: {
    limits?: ConstructorParameters<typeof Ec2MirrorApi>[0]["limits"];
    backoffMs?: number;
    endpoint?: string;
  } = {},
): Ec2MirrorApi {
  const client = makeEc2Client({
    endpoint: opts.endpoint ?? sim.url,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  return new Ec2MirrorApi({
    client,
    cluster,
    backoffMs: opts.backoffMs ?? 5,
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
}

let world: World;
beforeAll(async () => {
  sim = await startEc2Sim();
});
afterAll(async () => sim.stop());
beforeEach(() => {
  for (const m of [sim.state.targets, sim.state.filters, sim.state.sessions]) m.clear();
  sim.state.tokens.clear();
  sim.calls.length = 0;
  for (const k of Object.keys(sim.knobs)) delete sim.knobs[k as keyof typeof sim.knobs];
  world = makeWorld({ nodes: 3, podsPerNode: 4, collectors: [0] });
  seed(sim.state, world.inventory);
});

const eni = (i: number) => world.inventory.networkInterfaces[i]!.networkInterfaceId;

async function basics(api: MirrorApi, sourceEni = eni(2), suffix = "") {
  const target = await api.createTarget({
    key: `t1${suffix}`,
    owners: ["collector"],
    networkInterfaceId: eni(0),
    description: "t",
  });
  const filter = await api.createFilter({
    key: `f1${suffix}`,
    rules: [
      {
        direction: "ingress",
        ruleNumber: 100,
        action: "accept",
        protocol: 6,
        sourceCidrBlock: "0.0.0.0/0",
        destinationCidrBlock: "10.0.64.64/28",
        destinationPortRange: { fromPort: 80, toPort: 80 },
      },
      {
        direction: "egress",
        ruleNumber: 100,
        action: "accept",
        sourceCidrBlock: "10.0.64.64/28",
        destinationCidrBlock: "0.0.0.0/0",
      },
    ],
    networkServices: ["amazon-dns"],
    description: "f",
  });
  const session = (n: number, key = `s${n}`) =>
    api.createSession({
      key,
      owners: ["shop/web"],
      networkInterfaceId: sourceEni,
      trafficMirrorTargetId: target.trafficMirrorTargetId,
      trafficMirrorFilterId: filter.trafficMirrorFilterId,
      sessionNumber: n,
      virtualNetworkId: 1000 + n,
      description: "s",
    });
  return { target, filter, session };
}

/** An owned filter's rules as the emulator holds them now. */
async function rulesNow(api: Ec2MirrorApi, filterId: string): Promise<FilterRule[]> {
  const f = (await api.describeOwned()).filters.find((x) => x.trafficMirrorFilterId === filterId)!;
  return [...f.ingressRules, ...f.egressRules];
}

/** Edits a filter to `rules` as the planner would: edits planned from a read, applied without one. */
async function editTo(api: Ec2MirrorApi, filterId: string, key: string, rules: DesiredRule[]): Promise<void> {
  const current = await rulesNow(api, filterId);
  await api.editFilter({
    filterId,
    key,
    rules: planRuleEdits(current, rules),
    addNetworkServices: [],
    removeNetworkServices: [],
    state: current.map((r) => r.trafficMirrorFilterRuleId).join(),
  });
}

const texts = (rules: readonly DesiredRule[]): string[] => rules.map(canonicalRule).sort();

describe("MirrorApi on the EC2 emulator", () => {
  it("reads instances and ENIs of the nodes, with secondary IPs and prefixes", async () => {
    const api = adapter();
    const inv = await loadInventory(api, { nodes: world.nodes });
    expect(inv.instances.map((i) => i.instanceId).sort()).toEqual(
      world.inventory.instances.map((i) => i.instanceId).sort(),
    );
    expect(inv.networkInterfaces).toHaveLength(6);
    const e = inv.networkInterfaces.find((x) => x.networkInterfaceId === eni(1))!;
    expect(e).toMatchObject({
      instanceId: world.inventory.instances[0]!.instanceId,
      deviceIndex: 1,
      ipv4Prefixes: world.inventory.networkInterfaces[1]!.ipv4Prefixes,
    });
  });

  it("reads an IPv6 cluster's ENIs with their IPv6 addresses and /80 prefixes, and finds them by IPv6 address", async () => {
    const six = makeWorld({ nodes: 2, podsPerNode: 2, collectors: [0], ipFamily: "IPv6" });
    seed(sim.state, six.inventory);
    const api = adapter();
    const inv = await loadInventory(api, { nodes: six.nodes });
    expect(inv.networkInterfaces.map((e) => [e.ipv6Addresses, e.ipv6Prefixes])).toEqual(
      six.inventory.networkInterfaces.map((e) => [e.ipv6Addresses, e.ipv6Prefixes]),
    );
    // EC2's filter by IPv6 address, through the SDK.
    const found = await makeEc2Client({
      endpoint: sim.url,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    }).send(
      new DescribeNetworkInterfacesCommand({
        Filters: [
          {
            Name: "ipv6-addresses.ipv6-address",
            Values: [six.inventory.networkInterfaces[1]!.ipv6Addresses![0]!],
          },
        ],
      }),
    );
    expect(found.NetworkInterfaces?.map((e) => e.NetworkInterfaceId)).toEqual([
      six.inventory.networkInterfaces[1]!.networkInterfaceId,
    ]);
  });

  it("refuses a seed EC2 could not describe: an IPv6 prefix that is not a /80, an address written otherwise, one on two ENIs", () => {
    const six = makeWorld({ nodes: 2, podsPerNode: 1, ipFamily: "IPv6" });
    const [a, b] = six.inventory.networkInterfaces;
    const bad =
      (change: Partial<typeof a>, other: Partial<typeof b> = {}) =>
      () =>
        seed(sim.state, {
          instances: six.inventory.instances,
          networkInterfaces: [
            { ...a!, ...change },
            { ...b!, ...other },
          ],
        });
    expect(bad({ ipv6Prefixes: ["2600:1f14:abc:de00::/64"] })).toThrow(/not an IPv6 \/80 prefix/);
    expect(bad({ ipv6Prefixes: ["2600:1f14:abc:de00:1::1/80"] })).toThrow(/not an IPv6 \/80 prefix/);
    expect(bad({ ipv6Addresses: ["2600:1F14:abc:de00::4"] })).toThrow(/as EC2 writes one/);
    expect(bad({}, { ipv6Prefixes: a!.ipv6Prefixes! })).toThrow(/is on both/);
  });

  it("takes filter rules with IPv6 CIDRs, and refuses a rule that mixes families or is no CIDR", async () => {
    const api = adapter();
    const f = await api.createFilter({ key: "f6", rules: [], networkServices: [], description: "" });
    const rule = (source: string, destination: string) => ({
      direction: "ingress" as const,
      ruleNumber: 1,
      action: "accept" as const,
      sourceCidrBlock: source,
      destinationCidrBlock: destination,
    });
    const edit = (r: ReturnType<typeof rule>) =>
      api.editFilter({
        filterId: f.trafficMirrorFilterId,
        key: "f6",
        rules: [{ op: "create", rule: r }],
        addNetworkServices: [],
        removeNetworkServices: [],
        state: `${r.sourceCidrBlock}${r.destinationCidrBlock}`,
      });
    const made = await edit(rule("::/0", "2600:1f14:abc:de00:1::5/128"));
    expect(made[0]).toMatchObject({
      sourceCidrBlock: "::/0",
      destinationCidrBlock: "2600:1f14:abc:de00:1::5/128",
    });
    for (const [src, dst] of [
      ["0.0.0.0/0", "2600:1f14:abc:de00:1::5/128"],
      ["::/0", "10.0.0.1/32"],
      ["::/0", "2600::zz/128"],
    ] as const) {
      const err = await edit({ ...rule(src, dst), ruleNumber: 2 }).catch((e: unknown) => e);
      expect(causeCode(err), `${src} ${dst}`).toBe("InvalidParameterValue");
    }
  });

  it("creates with ownership tags, and reads back only what this cluster owns", async () => {
    const api = adapter();
    const { session } = await basics(api);
    const s = await session(1);
    expect(s.tags).toEqual(ownershipTags(cluster, "s1", ["shop/web"]));
    const other = new Ec2MirrorApi({
      client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
      cluster: "someone-else",
    });
    expect((await other.describeOwned()).sessions).toHaveLength(0);
    const mine = await api.describeOwned();
    expect(mine.sessions.map((x) => x.trafficMirrorSessionId)).toEqual([s.trafficMirrorSessionId]);
    expect(mine.filters[0]!.ingressRules[0]).toMatchObject({
      protocol: 6,
      destinationPortRange: { fromPort: 80, toPort: 80 },
    });
    expect(mine.filters[0]!.networkServices).toEqual(["amazon-dns"]);
  });

  it("makes exactly one session when a create is retried after a lost response", async () => {
    const api = adapter();
    const { session } = await basics(api);
    sim.knobs.faults = [{ action: "CreateTrafficMirrorSession", times: 1, afterApply: true, status: 500 }];
    await session(1);
    expect(sim.calls.filter((c) => c.action === "CreateTrafficMirrorSession").map((c) => c.code)).toEqual([
      "InternalError",
      "OK",
    ]);
    expect(sim.state.sessions.size).toBe(1);
    // A repeated create (e.g. after an operator crash) is also answered with the same session.
    await session(1);
    expect(sim.state.sessions.size).toBe(1);
  });

  it.each([
    ["before", false],
    ["after", true],
  ])(
    "retries a call whose connection is reset %s the change is made, and makes exactly one session",
    async (_when, afterApply) => {
      const api = adapter();
      const { session } = await basics(api);
      sim.knobs.faults = [{ action: "CreateTrafficMirrorSession", times: 1, reset: true, afterApply }];
      await session(1);
      expect(sim.calls.filter((c) => c.action === "CreateTrafficMirrorSession").map((c) => c.code)).toEqual([
        "ConnectionReset",
        "OK",
      ]);
      expect(sim.state.sessions.size).toBe(1);
    },
  );

  it.each([
    ["a fourth session on one ENI", "TrafficMirrorSessionsPerInterfaceLimitExceeded"],
    ["a reused session number", "InvalidParameterValue"],
  ])("refuses %s with AWS's code", async (what, code) => {
    const api = adapter();
    const { session } = await basics(api);
    await session(1);
    await session(2);
    if (what.startsWith("a fourth")) await session(3);
    const err = await (what.startsWith("a fourth") ? session(4) : session(2, "other-key")).catch(
      (e: unknown) => e,
    );
    expect(causeCode(err)).toBe(code);
  });

  it("refuses an 11th rule, deleting a filter or target in use, a target ENI as source, an unsupported instance type", async () => {
    const api = adapter();
    const { target, filter, session } = await basics(api);
    await session(1);
    const rules = Array.from({ length: 8 }, (_, i) => ({
      direction: "ingress" as const,
      ruleNumber: 200 + i,
      action: "accept" as const,
      sourceCidrBlock: "0.0.0.0/0",
      destinationCidrBlock: "0.0.0.0/0",
    }));
    await editTo(api, filter.trafficMirrorFilterId, "f1", [
      ...rules,
      ...rules.slice(0, 2).map((r) => ({ ...r, direction: "egress" as const })),
    ]);
    const eleventh = await editTo(api, filter.trafficMirrorFilterId, "f2", [
      ...rules,
      ...rules.slice(0, 3).map((r) => ({ ...r, direction: "egress" as const })),
    ]).catch((e: unknown) => e);
    expect(causeCode(eleventh)).toBe("TrafficMirrorFilterRuleLimitExceeded");
    await expect(
      api.deleteFilter(filter.trafficMirrorFilterId).catch((e: unknown) => causeCode(e)),
    ).resolves.toBe("TrafficMirrorFilterInUse");
    await expect(
      api.deleteTarget(target.trafficMirrorTargetId).catch((e: unknown) => causeCode(e)),
    ).resolves.toBe("TrafficMirrorTargetInUseException");
    const fromTarget = await basics(api, eni(0), "-b")
      .then((b) => b.session(5))
      .catch((e: unknown) => e);
    expect(causeCode(fromTarget), String((fromTarget as Error).cause)).toBe("InvalidParameterValue");
    sim.state.instances.get(world.inventory.instances[2]!.instanceId)!.instanceType = "m6i.large";
    const unsupported = await basics(api, eni(4), "-c")
      .then((b) => b.session(6))
      .catch((e: unknown) => e);
    expect(causeCode(unsupported)).toBe("UnsupportedOperation");
  });

  it("treats deleting what is already gone as done, and answers a reused token with other parameters with a mismatch", async () => {
    const api = adapter();
    await expect(api.deleteSession("tms-00000000000000000")).resolves.toBeUndefined();
    const { session } = await basics(api);
    await session(1);
    sim.state.sessions.clear(); // someone else deleted it; the same token now describes other parameters
    const client = makeEc2Client({
      endpoint: sim.url,
      credentials: { accessKeyId: "t", secretAccessKey: "t" },
    });
    const { CreateTrafficMirrorFilterCommand } = await import("@aws-sdk/client-ec2");
    await client.send(new CreateTrafficMirrorFilterCommand({ ClientToken: "tok-1", Description: "a" }));
    const err = await client
      .send(new CreateTrafficMirrorFilterCommand({ ClientToken: "tok-1", Description: "b" }))
      .catch((e: unknown) => e);
    expect((err as Error).name).toBe("IdempotentParameterMismatch");
  });

  it("makes a session again after deleting it, although EC2 answers an old token with the old result", async () => {
    const api = adapter();
    const { session } = await basics(api);
    const first = await session(1);
    await api.deleteSession(first.trafficMirrorSessionId);
    const again = await session(1);
    expect(again.trafficMirrorSessionId).not.toBe(first.trafficMirrorSessionId);
    expect([...sim.state.sessions.keys()]).toEqual([again.trafficMirrorSessionId]);
  });

  it("heals a create whose token was used before by another process: after the reuse window, a new token", async () => {
    const make = (reuseMs: number) =>
      new Ec2MirrorApi({
        client: makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } }),
        cluster,
        backoffMs: 5,
        tokenReuseMs: reuseMs,
      });
    const before = make(60_000);
    const { session } = await basics(before);
    const first = await session(1);
    await before.deleteSession(first.trafficMirrorSessionId);
    // A restarted operator does not know the token was spent: its first create gets the deleted session back…
    const after = make(0);
    const { session: again } = await basics(after);
    const stale = await again(1);
    expect(stale.trafficMirrorSessionId).toBe(first.trafficMirrorSessionId);
    expect(sim.state.sessions.size).toBe(0);
    // …and its next try, the session still missing, uses a new token.
    const fresh = await again(1);
    expect(sim.state.sessions.has(fresh.trafficMirrorSessionId)).toBe(true);
  });

  it("refuses an 11th source on an ENI target with AWS's code", async () => {
    const api = adapter();
    const big = makeWorld({ nodes: 8, podsPerNode: 0 });
    seed(sim.state, big.inventory);
    const target = await api.createTarget({
      key: "eni-t",
      owners: [],
      networkInterfaceId: big.inventory.networkInterfaces[0]!.networkInterfaceId,
      description: "",
    });
    const filter = await api.createFilter({ key: "f", rules: [], networkServices: [], description: "" });
    const create = (i: number) =>
      api.createSession({
        key: `src${i}`,
        owners: [],
        networkInterfaceId: big.inventory.networkInterfaces[i]!.networkInterfaceId,
        trafficMirrorTargetId: target.trafficMirrorTargetId,
        trafficMirrorFilterId: filter.trafficMirrorFilterId,
        sessionNumber: 1,
        virtualNetworkId: i,
        description: "",
      });
    for (let i = 1; i <= 10; i++) await create(i);
    expect(causeCode(await create(11).catch((e: unknown) => e))).toBe(
      "TrafficMirrorSourcesPerTargetLimitExceeded",
    );
  });

  it("classifies an IAM denial and answers DryRun without changing anything", async () => {
    const api = adapter();
    const { session } = await basics(api);
    sim.knobs.deny = ["CreateTrafficMirrorSession"];
    const denied = await session(1).catch((e: unknown) => e);
    expect(causeCode(denied)).toBe("UnauthorizedOperation");
    expect(isUnauthorized((denied as Error).cause)).toBe(true);
    expect(sim.calls.filter((c) => c.action === "CreateTrafficMirrorSession")).toHaveLength(1); // not retried
    delete sim.knobs.deny;
    const client = makeEc2Client({
      endpoint: sim.url,
      credentials: { accessKeyId: "t", secretAccessKey: "t" },
    });
    const { CreateTrafficMirrorFilterCommand } = await import("@aws-sdk/client-ec2");
    const dry = await client
      .send(new CreateTrafficMirrorFilterCommand({ DryRun: true }))
      .catch((e: unknown) => e);
    expect(isDryRunOk(dry)).toBe(true);
    expect(sim.state.filters.size).toBe(1); // only the one basics() made
  });

  it("retries throttled and failing calls, and gives up on others at once", async () => {
    const api = adapter();
    sim.knobs.faults = [
      { action: "DescribeTrafficMirrorSessions", times: 2, code: "RequestLimitExceeded", status: 503 },
    ];
    await api.describeSessionsOnInterfaces([eni(2)]);
    expect(sim.calls.filter((c) => c.action === "DescribeTrafficMirrorSessions").map((c) => c.code)).toEqual([
      "RequestLimitExceeded",
      "RequestLimitExceeded",
      "OK",
    ]);
    const before = sim.calls.length;
    await api.deleteFilter("tmf-doesnotexist000000").catch(() => undefined);
    expect(sim.calls.length - before).toBe(1);
  });

  it("stays inside the account's token bucket: a burst of creates meets no RequestLimitExceeded", async () => {
    // AWS's mutating bucket (50 burst, 5/s) scaled 10× in rate and burst so the test takes seconds:
    // the arithmetic is the same; the 500-session burst at real rates is in bench/ec2.
    // The adapter may take the whole of each bucket here (capped at 95%, see below); the emulator
    // keeps one bucket for all mutating actions, the pessimistic model.
    const limits = {
      categories: {
        mutating: { burst: 50, ratePerSecond: 50 },
        nonMutating: { burst: 100, ratePerSecond: 200 },
      },
      shares: { shared: 1, mirror: 1 },
    };
    // An emulator of its own: no call left in flight by another test may take from its bucket.
    const sim = await startEc2Sim({
      knobs: {
        throttle: {
          mutating: { burst: 50, ratePerSecond: 50 },
          describe: { burst: 100, ratePerSecond: 200 },
        },
      },
    });
    onTestFinished(() => sim.stop());
    const api = adapter({ limits, endpoint: sim.url });
    const t = await api.createTarget({
      key: "nlb",
      owners: [],
      networkLoadBalancerArn:
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/x/0123456789abcdef",
      description: "",
    });
    const f = await api.createFilter({ key: "f", rules: [], networkServices: [], description: "" });
    // The two creates above drew 2 tokens from the emulator's one mutating bucket, and none from
    // the adapter's session bucket (it keeps one per action, as AWS now does): the burst starts
    // once the emulator's bucket is full again (40 ms at 50/s), or the 5% headroom (2.5 tokens)
    // would be all that is left of the margin, and a fast machine met a throttle at the 53rd call.
    await sleep(100);
    const big = makeWorld({ nodes: 100, podsPerNode: 0 });
    seed(sim.state, big.inventory);
    const enis = big.inventory.networkInterfaces.slice(0, 200);
    const started = performance.now();
    // As the operator applies: TMO_APPLY_CONCURRENCY (4) calls in flight. (All 200 at once queued
    // the first 47 in the SDK for tens of milliseconds while later tokens accrued, and the emulator,
    // in this process, met them together: more than the headroom covers.)
    await pool(enis, 4, async (e) => {
      const i = enis.indexOf(e);
      await api.createSession({
        key: `b${i}`,
        owners: [],
        networkInterfaceId: e.networkInterfaceId,
        trafficMirrorTargetId: t.trafficMirrorTargetId,
        trafficMirrorFilterId: f.trafficMirrorFilterId,
        sessionNumber: 1,
        virtualNetworkId: i + 1,
        description: "",
      });
    });
    const seconds = (performance.now() - started) / 1000;
    expect(sim.calls.filter((c) => c.code === "RequestLimitExceeded")).toEqual([]);
    expect(sim.state.sessions.size).toBe(200);
    // The adapter keeps 5% headroom (47 burst, 47.5/s) so network jitter never empties the
    // account's bucket; two creates above used 2 tokens. Lower bound: its own pacing; upper
    // bound: 1.1× what the account's bucket allows for these 200 calls.
    const own = (200 - 45) / 47.5;
    const bucketAllows = (200 - 48) / 50;
    expect(seconds).toBeGreaterThanOrEqual(own * 0.95);
    expect(seconds).toBeLessThanOrEqual(bucketAllows * 1.1);
  });

  it("plan → apply → plan: the second plan asks for nothing", async () => {
    const api = adapter();
    const policies = [
      makePolicy("web", { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "collector" } }),
    ];
    const input = async () =>
      planInputOf(world, {
        cluster,
        policies,
        targets: [makeCollectorTarget()],
        inventory: await loadInventory(api, { nodes: world.nodes }),
      });
    const first = planMirroring(await input());
    expect(first.diff.createSessions.length).toBeGreaterThan(0);
    const inv1 = (await input()).inventory;
    const result = await applyPlanDiff(first.diff, {
      api,
      idx: indexInventory(inv1, cluster),
      concurrency: 4,
      log,
    });
    expect(result.failures).toEqual([]);
    const second = planMirroring(await input());
    expect(isEmptyDiff(second.diff)).toBe(true);
    expect(sim.state.sessions.size).toBe(first.diff.createSessions.length);
    // And when the policy goes, everything it made goes too.
    policies.length = 0;
    const third = planMirroring(await input());
    const inv3 = (await input()).inventory;
    expect(
      (await applyPlanDiff(third.diff, { api, idx: indexInventory(inv3, cluster), concurrency: 4, log }))
        .failures,
    ).toEqual([]);
    expect(sim.state.sessions.size).toBe(0);
    expect(sim.state.filters.size).toBe(0);
  });
});

describe("editing a filter's rules in place", () => {
  const rule = (direction: "ingress" | "egress", ruleNumber: number, local: string): DesiredRule => ({
    direction,
    ruleNumber,
    action: "accept",
    sourceCidrBlock: direction === "ingress" ? "0.0.0.0/0" : local,
    destinationCidrBlock: direction === "ingress" ? local : "0.0.0.0/0",
  });

  it("kept inventory: after creates, edits, modifies and deletes it equals a fresh read, without a Describe", async () => {
    const api = adapter();
    const kept = new KeptInventory({ api, cluster, resyncMs: 300_000 });
    await kept.read({ nodes: world.nodes, pods: [] });
    const { target, filter, session } = await basics(kept.api);
    const s1 = await session(1);
    await session(2);
    await kept.api.modifySession(s1.trafficMirrorSessionId, { packetLength: 128, virtualNetworkId: 77 });
    await kept.api.modifySession(s1.trafficMirrorSessionId, { packetLength: null });
    const current = await rulesNow(api, filter.trafficMirrorFilterId);
    await kept.api.editFilter({
      filterId: filter.trafficMirrorFilterId,
      key: "f1",
      rules: planRuleEdits(current, [
        rule("ingress", 1234, "10.0.64.70/32"),
        rule("egress", 1234, "10.0.64.70/32"),
        rule("egress", 1300, "10.0.64.71/32"),
      ]),
      addNetworkServices: [],
      removeNetworkServices: ["amazon-dns"],
      state: "s",
    });
    const other = await kept.api.createFilter({ key: "f2", rules: [], networkServices: [], description: "" });
    await kept.api.deleteFilter(other.trafficMirrorFilterId);
    sim.calls.length = 0;
    const held = await kept.read({ nodes: world.nodes, pods: [] });
    expect(sim.calls.filter((c) => c.action.startsWith("Describe"))).toEqual([]);
    const fresh = await loadInventory(api, { nodes: world.nodes });
    const byId = <T>(xs: T[], id: (x: T) => string) => [...xs].sort((a, b) => id(a).localeCompare(id(b)));
    const sessionId = (x: { trafficMirrorSessionId: string }) => x.trafficMirrorSessionId;
    expect(byId(held.sessions, sessionId)).toEqual(byId(fresh.sessions, sessionId));
    const canonical = (f: MirrorFilter) => ({
      ...f,
      ingressRules: byId(f.ingressRules, (r) => r.trafficMirrorFilterRuleId!),
      egressRules: byId(f.egressRules, (r) => r.trafficMirrorFilterRuleId!),
    });
    expect(held.filters.map(canonical)).toEqual(fresh.filters.map(canonical));
    expect(held.targets.find((t) => t.trafficMirrorTargetId === target.trafficMirrorTargetId)).toEqual(
      fresh.targets.find((t) => t.trafficMirrorTargetId === target.trafficMirrorTargetId),
    );
  });

  it("a pod replacing another is two ModifyTrafficMirrorFilterRule calls, and nothing is read", async () => {
    const api = adapter();
    const { filter } = await basics(api);
    const before = await rulesNow(api, filter.trafficMirrorFilterId);
    const want = [rule("ingress", 1234, "10.0.64.70/32"), rule("egress", 1234, "10.0.64.70/32")];
    sim.calls.length = 0;
    await api.editFilter({
      filterId: filter.trafficMirrorFilterId,
      key: "f1",
      rules: planRuleEdits(before, want),
      addNetworkServices: [],
      removeNetworkServices: ["amazon-dns"],
      state: "s",
    });
    // The emulator's log names the filter whose rules a call changed (the scale benchmark counts by it).
    const id = filter.trafficMirrorFilterId;
    expect(sim.calls.map((c) => [c.action, c.code, c.filterId])).toEqual([
      ["ModifyTrafficMirrorFilterNetworkServices", "OK", undefined],
      ["ModifyTrafficMirrorFilterRule", "OK", id],
      ["ModifyTrafficMirrorFilterRule", "OK", id],
    ]);
    const after = await rulesNow(api, filter.trafficMirrorFilterId);
    // The same rules, rewritten: protocol and port range cleared (RemoveField), number changed.
    expect(texts(after)).toEqual(texts(want));
    expect(after.map((r) => r.trafficMirrorFilterRuleId).sort()).toEqual(
      before.map((r) => r.trafficMirrorFilterRuleId).sort(),
    );
    expect(sim.state.filters.get(filter.trafficMirrorFilterId)!.networkServices).toEqual([]);
  });

  it("moves a rule to the other direction, and refuses a number taken in that direction", async () => {
    const api = adapter();
    const { filter } = await basics(api);
    const [ingress] = await rulesNow(api, filter.trafficMirrorFilterId);
    const edit = (rules: Parameters<Ec2MirrorApi["editFilter"]>[0]["rules"]) =>
      api.editFilter({
        filterId: filter.trafficMirrorFilterId,
        key: "f1",
        rules,
        addNetworkServices: [],
        removeNetworkServices: [],
        state: "s",
      });
    // basics made ingress 100 and egress 100: moving ingress 100 to egress 100 collides.
    const taken = await edit([
      {
        op: "modify",
        ruleId: ingress!.trafficMirrorFilterRuleId!,
        rule: rule("egress", 100, "10.0.64.64/28"),
        removeFields: ["protocol", "destination-port-range"],
      },
    ]).catch((e: unknown) => e);
    expect(causeCode(taken)).toBe("TrafficMirrorFilterRuleAlreadyExists");
    expect((taken as Error).message).toBe(
      `modifying rule ${ingress!.trafficMirrorFilterRuleId} of filter ${filter.trafficMirrorFilterId} to egress 100`,
    );
    await edit([
      {
        op: "modify",
        ruleId: ingress!.trafficMirrorFilterRuleId!,
        rule: rule("egress", 101, "10.0.64.64/28"),
        removeFields: ["protocol", "destination-port-range"],
      },
    ]);
    const f = sim.state.filters.get(filter.trafficMirrorFilterId)!;
    expect(f.ingressRules).toEqual([]);
    expect(f.egressRules.map((r) => r.ruleNumber)).toEqual([100, 101]);
  });

  it("does not read the filter: an edit planned from a stale inventory fails with what it was doing", async () => {
    const api = adapter();
    const { filter } = await basics(api);
    const before = await rulesNow(api, filter.trafficMirrorFilterId);
    const edits = planRuleEdits(before, [rule("ingress", 7, "10.0.64.70/32")]);
    // Someone deletes the rule the plan would modify (the inventory has not seen it yet).
    const modified = edits.find((e) => e.op === "modify")!;
    if (modified.op !== "modify") throw new Error("expected a modify");
    sim.state.deleteFilterRule(modified.ruleId);
    sim.calls.length = 0;
    const stale = await api
      .editFilter({
        filterId: filter.trafficMirrorFilterId,
        key: "f1",
        rules: edits,
        addNetworkServices: [],
        removeNetworkServices: [],
        state: "s",
      })
      .catch((e: unknown) => e);
    expect(causeCode(stale)).toBe("InvalidTrafficMirrorFilterRuleId.NotFound");
    expect((stale as Error).message).toContain(`of filter ${filter.trafficMirrorFilterId}`);
    expect(sim.calls.some((c) => c.action.startsWith("Describe"))).toBe(false);
    // A filter that is gone: the create says so, again without a read.
    sim.calls.length = 0;
    const gone = await api
      .editFilter({
        filterId: "tmf-0000000000000dead",
        key: "gone",
        rules: [{ op: "create", rule: rule("ingress", 1, "0.0.0.0/0") }],
        addNetworkServices: [],
        removeNetworkServices: [],
        state: "s",
      })
      .catch((e: unknown) => e);
    expect(causeCode(gone)).toBe("InvalidTrafficMirrorFilterId.NotFound");
    expect(sim.calls.map((c) => c.action)).toEqual(["CreateTrafficMirrorFilterRule"]);
  });

  it("plan → apply → plan as pods leave and come back: at most two rule calls each, no filter read", async () => {
    const api = adapter();
    const policies = [
      makePolicy("web", { podSelector: { matchLabels: { app: "web" } }, targetRef: { name: "collector" } }),
    ];
    // Every pod of a source node selected, so that its ENIs hold several selected pods.
    const node = world.nodes[1]!.name;
    for (const p of world.pods) if (p.nodeName === node) p.labels = { app: "web" };
    const cycle = async () => {
      const inventory = await loadInventory(api, { nodes: world.nodes });
      const plan = planMirroring(
        planInputOf(world, { cluster, policies, targets: [makeCollectorTarget()], inventory }),
      );
      sim.calls.length = 0;
      const result = await applyPlanDiff(plan.diff, {
        api,
        idx: indexInventory(inventory, cluster),
        concurrency: 4,
        log,
      });
      expect(result.failures).toEqual([]);
      return { plan, calls: [...sim.calls] };
    };
    const { plan } = await cycle();
    expect((await cycle()).calls).toEqual([]);
    // The pods of the ENI that holds most of them leave one at a time, then come back (a pod
    // stays, so the session and filter stay): each is one event followed by a cycle.
    const byEni = new Map<string, string[]>();
    for (const s of plan.policies.get("shop/web")!.sources)
      if (s.networkInterfaceId && s.name.length > 0)
        byEni.set(s.networkInterfaceId, [...(byEni.get(s.networkInterfaceId) ?? []), s.name]);
    const names = [...byEni.values()].sort((x, y) => y.length - x.length)[0]!.slice(1);
    expect(names.length).toBeGreaterThan(0);
    const leaving = world.pods.filter((p) => names.includes(`${p.namespace}/${p.name}`));
    expect(leaving.length).toBe(names.length);
    const perEvent: string[][] = [];
    for (const p of leaving) {
      world.pods = world.pods.filter((x) => x !== p);
      perEvent.push((await cycle()).calls.map((c) => `${c.action} ${c.code}`));
    }
    for (const p of [...leaving].reverse()) {
      world.pods.push(p);
      perEvent.push((await cycle()).calls.map((c) => `${c.action} ${c.code}`));
    }
    // Each event is one pod's rule pair: created, deleted, or rewritten where blocks merge or
    // split; never a filter read, never a rule deleted and made again.
    for (const calls of perEvent) {
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.length).toBeLessThanOrEqual(2);
      for (const c of calls) expect(c).toMatch(/^(Create|Delete|Modify)TrafficMirrorFilterRule OK$/);
    }
    expect((await cycle()).calls).toEqual([]);
  });
});

/** A raw SDK client on the emulator, without the adapter's buckets and retries. */
const raw = () =>
  makeEc2Client({ endpoint: sim.url, credentials: { accessKeyId: "t", secretAccessKey: "t" } });
/** "OK", or the AWS error code a call was answered with. */
const code = (p: Promise<unknown>): Promise<string> =>
  p.then(() => "OK").catch((e: unknown) => causeCode({ cause: e }) ?? String(e));

describe("the emulator's throttling, through the SDK", () => {
  it("per action, as AWS applies it: hammering one action is throttled, another action still succeeds", async () => {
    const { CreateTrafficMirrorFilterCommand, CreateTrafficMirrorTargetCommand } =
      await import("@aws-sdk/client-ec2");
    // Mutating buckets of 5 that hardly refill, so the test does not race the clock.
    sim.knobs.throttle = { model: "per-action", mutating: { burst: 5, ratePerSecond: 0.001 } };
    const client = raw();
    const filters: string[] = [];
    for (let i = 0; i < 6; i++)
      filters.push(await code(client.send(new CreateTrafficMirrorFilterCommand({ Description: `f${i}` }))));
    expect(filters).toEqual(["OK", "OK", "OK", "OK", "OK", "RequestLimitExceeded"]);
    const target = new CreateTrafficMirrorTargetCommand({ NetworkInterfaceId: eni(0) });
    expect(await code(client.send(target))).toBe("OK");
  });

  it("per category (the pessimistic knob): the other mutating action shares the drained bucket", async () => {
    const { CreateTrafficMirrorFilterCommand, CreateTrafficMirrorTargetCommand } =
      await import("@aws-sdk/client-ec2");
    sim.knobs.throttle = { mutating: { burst: 5, ratePerSecond: 0.001 } };
    const client = raw();
    for (let i = 0; i < 5; i++)
      expect(await code(client.send(new CreateTrafficMirrorFilterCommand({ Description: `f${i}` })))).toBe(
        "OK",
      );
    const target = new CreateTrafficMirrorTargetCommand({ NetworkInterfaceId: eni(0) });
    expect(await code(client.send(target))).toBe("RequestLimitExceeded");
    // Describe calls have no bucket under this knob: not throttled at all.
    expect(await code(adapter().describeOwned())).toBe("OK");
  });

  it("at AWS's defaults, unfiltered unpaginated DescribeInstances draw on a bucket of 50 of their own", async () => {
    const { DescribeInstancesCommand } = await import("@aws-sdk/client-ec2");
    sim.knobs.throttle = { model: "per-action" };
    const client = raw();
    // 70 at once: 50 from the burst, and a refill of 10 a second cannot cover the other 20.
    const answers = await Promise.all(
      Array.from({ length: 70 }, () => code(client.send(new DescribeInstancesCommand({})))),
    );
    const ok = answers.filter((a) => a === "OK").length;
    expect(ok).toBeGreaterThanOrEqual(50);
    expect(ok).toBeLessThan(70);
    expect(answers.filter((a) => a !== "OK").every((a) => a === "RequestLimitExceeded")).toBe(true);
    // A filtered call uses DescribeInstances' standard bucket (100), still full; so does the adapter.
    const filtered = new DescribeInstancesCommand({
      Filters: [{ Name: "instance-id", Values: [world.inventory.instances[0]!.instanceId] }],
    });
    expect(await code(client.send(filtered))).toBe("OK");
    expect(await adapter().describeInstances([world.inventory.instances[0]!.instanceId])).toHaveLength(1);
  });
});

describe("Describe by ids that do not exist", () => {
  it("the emulator answers by ids with EC2's NotFound codes, and through Filters with an empty list", async () => {
    const sdk = await import("@aws-sdk/client-ec2");
    const client = raw();
    const api = adapter();
    const { target, filter, session } = await basics(api);
    const s = await session(1);
    const known = world.inventory.instances[0]!.instanceId;
    expect(
      await Promise.all([
        code(
          client.send(
            new sdk.DescribeTrafficMirrorSessionsCommand({
              TrafficMirrorSessionIds: ["tms-0000000000000dead"],
            }),
          ),
        ),
        code(
          client.send(
            new sdk.DescribeTrafficMirrorFiltersCommand({
              TrafficMirrorFilterIds: ["tmf-0000000000000dead"],
            }),
          ),
        ),
        code(
          client.send(
            new sdk.DescribeTrafficMirrorTargetsCommand({
              TrafficMirrorTargetIds: ["tmt-0000000000000dead"],
            }),
          ),
        ),
        code(
          client.send(
            new sdk.DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: ["eni-0000000000000dead"] }),
          ),
        ),
        code(client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [known, "i-0000000000000dead"] }))),
      ]),
    ).toEqual([
      "InvalidTrafficMirrorSessionId.NotFound",
      "InvalidTrafficMirrorFilterId.NotFound",
      "InvalidTrafficMirrorTargetId.NotFound",
      "InvalidNetworkInterfaceID.NotFound",
      "InvalidInstanceID.NotFound",
    ]);
    // Known ids are answered.
    const byId = await client.send(
      new sdk.DescribeTrafficMirrorSessionsCommand({ TrafficMirrorSessionIds: [s.trafficMirrorSessionId] }),
    );
    expect(byId.TrafficMirrorSessions).toHaveLength(1);
    const f = await client.send(
      new sdk.DescribeTrafficMirrorFiltersCommand({ TrafficMirrorFilterIds: [filter.trafficMirrorFilterId] }),
    );
    expect(f.TrafficMirrorFilters).toHaveLength(1);
    const t = await client.send(
      new sdk.DescribeTrafficMirrorTargetsCommand({ TrafficMirrorTargetIds: [target.trafficMirrorTargetId] }),
    );
    expect(t.TrafficMirrorTargets).toHaveLength(1);
    // Filters by id: an empty list, no error.
    const viaFilter = await client.send(
      new sdk.DescribeTrafficMirrorSessionsCommand({
        Filters: [{ Name: "traffic-mirror-session-id", Values: ["tms-0000000000000dead"] }],
      }),
    );
    expect(viaFilter.TrafficMirrorSessions).toEqual([]);
  });

  it("the emulator answers NotFound for a resource that is not visible yet (eventual consistency)", async () => {
    const sdk = await import("@aws-sdk/client-ec2");
    sim.knobs.eventualConsistencyMs = 60_000;
    const f = await adapter().createFilter({ key: "late", rules: [], networkServices: [], description: "" });
    const answer = await code(
      raw().send(
        new sdk.DescribeTrafficMirrorFiltersCommand({ TrafficMirrorFilterIds: [f.trafficMirrorFilterId] }),
      ),
    );
    expect(answer).toBe("InvalidTrafficMirrorFilterId.NotFound");
  });

  // The adapter asks through Filters, which EC2 answers with an empty list; a NotFound (injected
  // here, as EC2 answers when asked by id) must not lose the ids of the batch that exist.
  const cases = [
    {
      name: "describeInstances",
      action: "DescribeInstances",
      notFound: "InvalidInstanceID.NotFound",
      known: () => world.inventory.instances.map((i) => i.instanceId),
      missing: "i-0000000000000dead",
      read: (api: Ec2MirrorApi, ids: string[]) =>
        api.describeInstances(ids).then((xs) => xs.map((x) => x.instanceId)),
    },
    {
      name: "describeNetworkInterfaces",
      action: "DescribeNetworkInterfaces",
      notFound: "InvalidInstanceID.NotFound",
      known: () => world.inventory.instances.map((i) => i.instanceId),
      missing: "i-0000000000000dead",
      read: (api: Ec2MirrorApi, ids: string[]) =>
        api.describeNetworkInterfaces(ids).then((xs) => [...new Set(xs.map((x) => x.instanceId!))]),
    },
    {
      name: "describeSessionsOnInterfaces",
      action: "DescribeTrafficMirrorSessions",
      notFound: "InvalidNetworkInterfaceID.NotFound",
      known: () => [...sim.state.sessions.values()].map((s) => s.networkInterfaceId),
      missing: "eni-0000000000000dead",
      read: (api: Ec2MirrorApi, ids: string[]) =>
        api.describeSessionsOnInterfaces(ids).then((xs) => xs.map((x) => x.networkInterfaceId)),
    },
    {
      name: "describeTargets",
      action: "DescribeTrafficMirrorTargets",
      notFound: "InvalidTrafficMirrorTargetId.NotFound",
      known: () => [...sim.state.targets.keys()],
      missing: "tmt-0000000000000dead",
      read: (api: Ec2MirrorApi, ids: string[]) =>
        api.describeTargets(ids).then((xs) => xs.map((x) => x.trafficMirrorTargetId)),
    },
  ];

  it.each(cases)(
    "$name: an unknown id is left out, whether EC2 answers an empty list or NotFound",
    async (c) => {
      const api = adapter();
      const { session } = await basics(api);
      await session(1);
      const known = c.known();
      expect(known.length).toBeGreaterThan(0);
      const ids = [...known, c.missing];
      // The emulator's own answer to a filter: the unknown id finds nothing.
      expect((await c.read(api, ids)).sort()).toEqual([...known].sort());
      expect(await c.read(api, [c.missing])).toEqual([]);
      // EC2's answer when asked by id: NotFound for the batch; the known ids are still read.
      sim.calls.length = 0;
      sim.knobs.faults = [{ action: c.action, times: 1, code: c.notFound, status: 400 }];
      expect((await c.read(api, ids)).sort()).toEqual([...known].sort());
      expect(sim.calls[0]).toEqual({ action: c.action, code: c.notFound });
      sim.knobs.faults = [{ action: c.action, times: 1, code: c.notFound, status: 400 }];
      expect(await c.read(api, [c.missing])).toEqual([]);
    },
  );
});
