// The same contract checks against two emulators: ours and moto (which nobody here wrote), for the
// calls moto implements (targets and filters). Where moto differs from AWS, the test says so.
import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ownershipTags } from "../../src/api/tags.ts";
import { makeEc2Client } from "../../src/aws/client.ts";
import { Ec2MirrorApi } from "../../src/aws/ec2-adapter.ts";
import { errorCode } from "../../src/aws/errors.ts";
import { startEc2Sim, type Ec2Sim } from "../ec2-sim/server.ts";
import { freePorts, TOOLS_BIN } from "../harness/controlplane.ts";

let moto: ChildProcess;
let motoUrl: string;
let sim: Ec2Sim;

beforeAll(async () => {
  const [port] = await freePorts(1);
  motoUrl = `http://127.0.0.1:${port}`;
  moto = spawn(
    "setpriv",
    ["--pdeathsig", "SIGKILL", "--", `${TOOLS_BIN}/moto_server`, "-H", "127.0.0.1", "-p", String(port)],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`${motoUrl}/moto-api/reset`, { method: "POST" }).catch(() => undefined))?.ok) break;
    await sleep(200);
  }
  sim = await startEc2Sim();
});

afterAll(async () => {
  moto?.kill("SIGKILL");
  await sim?.stop();
});

const backends = [
  ["our emulator", () => sim.url],
  ["moto", () => motoUrl],
] as const;

function adapter(url: string, cluster: string): Ec2MirrorApi {
  return new Ec2MirrorApi({
    client: makeEc2Client({
      endpoint: url,
      credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
    }),
    cluster,
  });
}

const NLB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ids/0123456789abcdef";

describe.each(backends)("MirrorApi contract on %s", (_name, url) => {
  it("creates an NLB target with ownership tags and reads it back by id", async () => {
    const api = adapter(url(), "contract-a");
    const t = await api.createTarget({
      key: "t1",
      owners: ["ids"],
      networkLoadBalancerArn: NLB,
      description: "ids fleet",
    });
    expect(t.trafficMirrorTargetId).toMatch(/^(tmt-|traf-mir-tar-)/); // moto's ids differ from AWS's
    const [read] = await api.describeTargets([t.trafficMirrorTargetId]);
    expect(read).toMatchObject({
      type: "network-load-balancer",
      networkLoadBalancerArn: NLB,
      description: "ids fleet",
    });
    expect(read!.tags).toEqual(ownershipTags("contract-a", "t1", ["ids"]));
  });

  it("creates a filter with ownership tags and finds it among what the cluster owns", async () => {
    const api = adapter(url(), "contract-b");
    const f = await api.createFilter({ key: "f1", rules: [], networkServices: [], description: "empty" });
    const owned = await api.describeOwned();
    const mine = owned.filters.find((x) => x.trafficMirrorFilterId === f.trafficMirrorFilterId);
    expect(mine?.tags).toEqual(ownershipTags("contract-b", "f1"));
    expect(mine?.description).toBe("empty");
  });
});

describe("where moto and AWS differ", () => {
  it("our emulator honours ClientToken (one target for a repeated create); moto makes two", async () => {
    for (const [name, url] of backends) {
      const api = adapter(url(), `token-${name.length}`);
      const a = await api.createTarget({
        key: "same",
        owners: [],
        networkLoadBalancerArn: NLB,
        description: "",
      });
      const b = await api.createTarget({
        key: "same",
        owners: [],
        networkLoadBalancerArn: NLB,
        description: "",
      });
      if (name === "moto") expect(a.trafficMirrorTargetId).not.toBe(b.trafficMirrorTargetId);
      else expect(a.trafficMirrorTargetId).toBe(b.trafficMirrorTargetId);
    }
  });

  it("our emulator filters Describe by tag; moto returns other clusters' filters too", async () => {
    for (const [name, url] of backends) {
      await adapter(url(), "tags-x").createFilter({
        key: "x",
        rules: [],
        networkServices: [],
        description: "",
      });
      const seen = (await adapter(url(), "tags-y").describeOwned()).filters.filter(
        (f) => f.tags["traffic-mirror.twtech.io/cluster"] === "tags-x",
      );
      expect(seen.length).toBe(name === "moto" ? 1 : 0);
    }
  });

  it("by ids that do not exist, our emulator answers EC2's NotFound codes; moto an empty list; the adapter takes both as gone", async () => {
    const { DescribeTrafficMirrorFiltersCommand, DescribeTrafficMirrorTargetsCommand } =
      await import("@aws-sdk/client-ec2");
    for (const [name, url] of backends) {
      const client = makeEc2Client({
        endpoint: url(),
        credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
      });
      const filters = await client
        .send(new DescribeTrafficMirrorFiltersCommand({ TrafficMirrorFilterIds: ["tmf-0000000000000dead"] }))
        .then((r) => r.TrafficMirrorFilters ?? [], errorCode);
      const targets = await client
        .send(new DescribeTrafficMirrorTargetsCommand({ TrafficMirrorTargetIds: ["tmt-0000000000000dead"] }))
        .then((r) => r.TrafficMirrorTargets ?? [], errorCode);
      if (name === "moto") {
        expect(filters).toEqual([]);
        expect(targets).toEqual([]);
      } else {
        expect(filters).toBe("InvalidTrafficMirrorFilterId.NotFound");
        expect(targets).toBe("InvalidTrafficMirrorTargetId.NotFound");
      }
      const api = adapter(url(), "gone");
      expect(await api.describeTargets(["tmt-0000000000000dead"])).toEqual([]);
    }
  });

  // moto 5.2.1 handles CreateTrafficMirrorFilter/Target and their Describe calls only
  // (moto/ec2/responses/traffic_mirrors.py): any rule call is an unhandled action, answered with an
  // HTML page and status 500, not an EC2 error. If moto learns rules, this fails: then test the
  // edits against it as well.
  it("moto implements no filter rules: ModifyTrafficMirrorFilterRule and CreateTrafficMirrorFilterRule answer 500, so rule edits are checked against our emulator only (ec2-contract)", async () => {
    const sdk = await import("@aws-sdk/client-ec2");
    const client = makeEc2Client({
      endpoint: motoUrl,
      credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
    });
    const f = await adapter(motoUrl, "rules").createFilter({
      key: "f",
      rules: [],
      networkServices: [],
      description: "",
    });
    const status = (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode;
    const modify = await client
      .send(
        new sdk.ModifyTrafficMirrorFilterRuleCommand({
          TrafficMirrorFilterRuleId: "tmfr-0000000000000dead",
          RuleNumber: 2,
        }),
      )
      .then(() => "OK", status);
    const create = await client
      .send(
        new sdk.CreateTrafficMirrorFilterRuleCommand({
          TrafficMirrorFilterId: f.trafficMirrorFilterId,
          TrafficDirection: "ingress",
          RuleNumber: 1,
          RuleAction: "accept",
          SourceCidrBlock: "0.0.0.0/0",
          DestinationCidrBlock: "0.0.0.0/0",
        }),
      )
      .then(() => "OK", status);
    expect([modify, create]).toEqual([500, 500]);
  });
});
