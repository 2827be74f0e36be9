#!/usr/bin/env node
/**
 * kubectl-trafficmirror: the kubectl plugin (`kubectl trafficmirror …`). Runs with the user's
 * kubeconfig and rights. `make plugin` bundles it into one file to copy onto PATH.
 *   capture -n NS -l SELECTOR --for 10m [--filter tcp/443] [--target NAME] -w FILE|-
 *   status [-n NS]
 *   why pod/NAME [-n NS]
 */
import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeRest } from "../k8s/rest.ts";
import { parseFilters, parseFor, parseSelector, UserError } from "../plugin/args.ts";
import { capture } from "../plugin/capture.ts";
import { PLUGIN_USER_AGENT } from "../plugin/cluster.ts";
import { portForward } from "../plugin/port-forward.ts";
import { collectorCounts, statusReport, whyReport } from "../plugin/status.ts";

const USAGE = `Usage:
  kubectl trafficmirror capture -n NAMESPACE -l SELECTOR [--for 10m] [--filter tcp/443]... [--target NAME] -w FILE|-
  kubectl trafficmirror status [-n NAMESPACE | -A]
  kubectl trafficmirror why pod/NAME [-n NAMESPACE]
Options:
  --collector-namespace NS   where the collector runs (default traffic-mirror-system)`;

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        namespace: { type: "string", short: "n" },
        "all-namespaces": { type: "boolean", short: "A" },
        selector: { type: "string", short: "l" },
        for: { type: "string", default: "10m" },
        filter: { type: "string", multiple: true, default: [] },
        target: { type: "string" },
        write: { type: "string", short: "w" },
        "collector-namespace": { type: "string", default: "traffic-mirror-system" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UserError(`${(err as Error).message}\n${USAGE}`);
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parse();
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    say(USAGE);
    return command || values.help ? 0 : 2;
  }
  const kc = new KubeConfig();
  try {
    kc.loadFromDefault();
  } catch (err) {
    throw new UserError(`cannot read your kubeconfig: ${(err as Error).message}`);
  }
  if (!kc.getCurrentCluster())
    throw new UserError("no cluster in your kubeconfig (set KUBECONFIG or a context)");
  const client = new KubeRest(kc, { userAgent: PLUGIN_USER_AGENT });
  const contextNs = kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  const namespace = values.namespace ?? contextNs;
  const collectorNs = values["collector-namespace"];
  const connect = (ns: string, pod: string, port: number) => portForward(kc, ns, pod, port);
  if (command === "status") {
    process.stdout.write(
      `${await statusReport(client, values["all-namespaces"] ? undefined : namespace, () => collectorCounts(client, collectorNs, connect))}\n`,
    );
    return 0;
  }
  if (command === "why") {
    if (rest.length !== 1)
      throw new UserError("why takes one pod: kubectl trafficmirror why pod/NAME -n NAMESPACE");
    process.stdout.write(`${await whyReport(client, namespace, rest[0]!)}\n`);
    return 0;
  }
  if (command !== "capture")
    throw new UserError(`unknown command ${command}; commands: capture, status, why`);
  if (!values.selector) throw new UserError("capture needs -l SELECTOR, e.g. -l app=web");
  if (!values.write) throw new UserError("capture needs -w FILE, or -w - for standard output");
  if (values.write === "-" && process.stdout.isTTY)
    throw new UserError(
      "-w - writes pcapng to standard output: pipe it (| wireshark -k -i -) or use -w FILE",
    );
  const request = {
    namespace,
    selector: parseSelector(values.selector),
    selectorText: values.selector,
    duration: parseFor(values.for),
    filters: parseFilters(values.filter),
    target: values.target,
    collectorNamespace: collectorNs,
    out: values.write === "-" ? process.stdout : createWriteStream(values.write, { mode: 0o600 }),
  };
  let interrupts = 0;
  let second: () => void = () => process.exit(130);
  let first: () => void = () => undefined;
  const interrupted = new Promise<void>((resolve) => (first = resolve));
  process.on("SIGINT", () => {
    interrupts++;
    if (interrupts === 1) {
      say("stopping: deleting the policy (Ctrl-C again to leave without waiting)");
      first();
    } else {
      second();
      process.exit(130);
    }
  });
  process.on("SIGTERM", () => first());
  const result = await capture(request, {
    rest: client,
    connect,
    say,
    interrupted,
    onSecondInterrupt: (fn) => (second = fn),
  });
  say(`wrote ${result.packets} packets of ${result.policy}`);
  await new Promise<void>((resolve) =>
    request.out === process.stdout ? resolve() : request.out.end(resolve),
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UserError) say(`error: ${err.message}`);
    else say(`error: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
