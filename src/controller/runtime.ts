/**
 * The operator's runtime: watch caches for pods, nodes, policies and targets; one coalesced global
 * cycle driven by their changes and a periodic resync; leader election; probes. What a cycle does
 * (plan, apply, report) is injected, so this part is tested on its own.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { Watch } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { LeaderElector } from "../k8s/leader.ts";
import {
  leanCustom,
  leanNamespace,
  leanNode,
  leanPod,
  type LeanCustom,
  type LeanNamespace,
  type LeanNode,
  type LeanPod,
} from "../k8s/lean.ts";
import { Reflector, type RawObject } from "../k8s/reflector.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { apiServerSource } from "../k8s/source.ts";
import { CoalescingTrigger, type CycleResult } from "../k8s/trigger.ts";
import type { OperatorMetrics } from "./metrics.ts";

/** API group and version of the operator's resources. */
export const API_GROUP = "trafficmirror.twtech.io";
/** Served version. */
export const API_VERSION = "v1alpha1";

/** Everything a cycle reads: the caches' current contents. */
export interface ClusterSnapshot {
  pods: LeanPod[];
  nodes: LeanNode[];
  policies: LeanCustom[];
  targets: LeanCustom[];
  namespaces: LeanNamespace[];
}

/** One plan-and-apply cycle. */
export type Cycle = (
  snapshot: ClusterSnapshot,
  ctx: { log: Logger; reasons: ReadonlySet<string> },
) => Promise<CycleResult>;

/** What the runtime needs. */
export interface RuntimeDeps {
  kc: KubeConfig;
  rest: KubeRest;
  log: Logger;
  metrics: OperatorMetrics;
  cycle: Cycle;
  resyncMs: number;
  leaderElection?: { namespace: string; identity: string; leaseName?: string };
  /** Debounce of triggers (default 50 ms). */
  debounceMs?: number;
}

/** The watch caches and the loop, started and stopped as one. */
export class OperatorRuntime {
  readonly pods: Reflector<LeanPod>;
  readonly nodes: Reflector<LeanNode>;
  readonly policies: Reflector<LeanCustom>;
  readonly targets: Reflector<LeanCustom>;
  readonly namespaces: Reflector<LeanNamespace>;
  readonly #d: RuntimeDeps;
  readonly #trigger: CoalescingTrigger;
  #elector: LeaderElector | undefined;
  #running = false;
  #cycleSeq = 0;

  constructor(d: RuntimeDeps) {
    this.#d = d;
    const watch = new Watch(d.kc);
    const make = <L>(name: string, path: string, transform: (o: RawObject) => L): Reflector<L> =>
      new Reflector<L>({
        name,
        log: d.log,
        source: apiServerSource({ rest: d.rest, watch, path }),
        transform,
        onChange: (c) => this.#trigger.kick(`${name} ${c.key}`),
      });
    const crd = (plural: string): string => `/apis/${API_GROUP}/${API_VERSION}/${plural}`;
    this.pods = make("pods", "/api/v1/pods", leanPod);
    this.nodes = make("nodes", "/api/v1/nodes", leanNode);
    this.policies = make("policies", crd("trafficmirrorpolicies"), (o) => leanCustom(o));
    this.targets = make("targets", crd("trafficmirrortargets"), (o) => leanCustom(o));
    this.namespaces = make("namespaces", "/api/v1/namespaces", leanNamespace);
    this.#trigger = new CoalescingTrigger({
      log: d.log,
      resyncMs: d.resyncMs,
      debounceMs: d.debounceMs,
      run: (reasons) => this.#runCycle(reasons),
    });
  }

  #reflectors(): [string, Reflector<unknown>][] {
    return [
      ["pods", this.pods],
      ["nodes", this.nodes],
      ["policies", this.policies],
      ["targets", this.targets],
      ["namespaces", this.namespaces],
    ] as [string, Reflector<unknown>][];
  }

  /** Whether the caches are listed and watching, and (if leading) the loop runs. */
  healthy(): boolean {
    return this.#reflectors().every(([, r]) => r.healthy());
  }

  /** Whether this replica is the leader (always true without leader election). */
  get leading(): boolean {
    return this.#elector ? this.#elector.leading : this.#running;
  }

  /** Starts the caches, waits for leadership, then runs the loop. Resolves once the loop runs. */
  async start(): Promise<void> {
    for (const [, r] of this.#reflectors()) r.start();
    await Promise.all(this.#reflectors().map(([, r]) => r.synced()));
    this.#d.log.info(
      { pods: this.pods.size, nodes: this.nodes.size, policies: this.policies.size },
      "Caches synced",
    );
    const le = this.#d.leaderElection;
    if (le) {
      this.#elector = new LeaderElector({
        rest: this.#d.rest,
        namespace: le.namespace,
        name: le.leaseName ?? "traffic-mirror-operator",
        identity: le.identity,
        log: this.#d.log,
      });
      if (!(await this.#elector.acquire())) return;
    }
    this.#running = true;
    this.#d.metrics.leader.set(1);
    this.#trigger.start();
    this.#trigger.kick("start", 0);
  }

  /** Resolves if leadership is lost (the process should exit and start again as a candidate). */
  leadershipLost(): Promise<void> {
    return this.#elector?.lost ?? new Promise(() => {});
  }

  /** Stops the loop (waiting for a running cycle), the caches, and gives up leadership. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#trigger.stop();
    await this.#elector?.stop();
    await Promise.all(this.#reflectors().map(([, r]) => r.stop()));
    this.#d.metrics.leader.set(0);
  }

  /** The caches' current contents. */
  snapshot(): ClusterSnapshot {
    return {
      pods: [...this.pods.values()],
      nodes: [...this.nodes.values()],
      policies: [...this.policies.values()],
      targets: [...this.targets.values()],
      namespaces: [...this.namespaces.values()],
    };
  }

  async #runCycle(reasons: ReadonlySet<string>): Promise<CycleResult> {
    if (!this.#running) return {};
    const m = this.#d.metrics;
    const log = this.#d.log.child({ cycle: ++this.#cycleSeq });
    const end = m.cycleDuration.startTimer();
    this.#observeCaches();
    try {
      const result = await this.#d.cycle(this.snapshot(), { log, reasons });
      end({ outcome: "success" });
      m.cycles.inc({ outcome: "success" });
      return result;
    } catch (err) {
      end({ outcome: "error" });
      m.cycles.inc({ outcome: "error" });
      throw err;
    } finally {
      m.queueDepth.set(this.#trigger.depth);
    }
  }

  #observeCaches(): void {
    const m = this.#d.metrics;
    for (const [name, r] of this.#reflectors()) {
      m.cachedObjects.set({ resource: name }, r.size);
      m.watchRestarts.set({ resource: name }, r.stats.restarts);
    }
  }
}
