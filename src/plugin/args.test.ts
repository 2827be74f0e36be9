import { describe, expect, it } from "vitest";
import { parseFilters, parseFor, parseSelector, UserError } from "./args.ts";

describe("parseSelector", () => {
  it("reads kubectl's selector syntax", () => {
    expect(parseSelector("app=web,tier==front")).toEqual({ matchLabels: { app: "web", tier: "front" } });
    expect(parseSelector("app in (web, api),tier!=db,canary,!legacy,env notin (dev)")).toEqual({
      matchExpressions: [
        { key: "app", operator: "In", values: ["web", "api"] },
        { key: "tier", operator: "NotIn", values: ["db"] },
        { key: "canary", operator: "Exists" },
        { key: "legacy", operator: "DoesNotExist" },
        { key: "env", operator: "NotIn", values: ["dev"] },
      ],
    });
    expect(parseSelector("app.kubernetes.io/name=shop")).toEqual({
      matchLabels: { "app.kubernetes.io/name": "shop" },
    });
  });

  it("refuses what is not a selector, in one sentence", () => {
    expect(() => parseSelector("app=web,")).toThrow(new UserError("-l app=web, has an empty term"));
    expect(() => parseSelector("app=we b")).toThrow(UserError);
    expect(() => parseSelector("-app=web")).toThrow('"-app" in -l -app=web is not a label key');
  });
});

describe("parseFilters", () => {
  it("makes a port either side's: the pod's or the peer's", () => {
    expect(parseFilters(["tcp/443"])).toEqual([
      { direction: "both", action: "accept", protocol: "TCP", localPorts: { from: 443, to: 443 } },
      { direction: "both", action: "accept", protocol: "TCP", remotePorts: { from: 443, to: 443 } },
    ]);
    expect(parseFilters(["UDP/53-54", "icmp"])).toEqual([
      { direction: "both", action: "accept", protocol: "UDP", localPorts: { from: 53, to: 54 } },
      { direction: "both", action: "accept", protocol: "UDP", remotePorts: { from: 53, to: 54 } },
      { direction: "both", action: "accept", protocol: "ICMP" },
    ]);
  });

  it("refuses ports on protocols without them, bad ranges and more than the filter holds", () => {
    expect(() => parseFilters(["icmp/8"])).toThrow("--filter icmp/8: ports go with tcp or udp only");
    expect(() => parseFilters(["tcp/90-80"])).toThrow(
      "--filter tcp/90-80: ports are 0-65535, the lower one first",
    );
    expect(() => parseFilters(["tcp/1", "tcp/2", "tcp/3", "tcp/4", "tcp/5", "tcp/6"])).toThrow(
      "--filter gives more than 10 rules (each port counts twice)",
    );
  });
});

describe("parseFor", () => {
  it("takes what spec.duration takes", () => {
    expect(parseFor("1h30m")).toEqual({ text: "1h30m", ms: 5_400_000 });
    expect(() => parseFor("0s")).toThrow(UserError);
    expect(() => parseFor("10min")).toThrow(
      "--for 10min is not a duration such as 30s, 10m or 1h30m (1s to 8760h)",
    );
  });
});
