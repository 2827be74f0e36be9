// Leader election against the real apiserver: one leader among candidates, immediate hand-over on
// release, takeover after a leader stops renewing as if it had crashed, no lease kept by a
// replica that won it while stopping, and a release that a renewal in flight does not defeat.
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { LeaderElector } from "../../src/k8s/leader.ts";
import { KubeRest } from "../../src/k8s/rest.ts";

const kc = new KubeConfig();
kc.loadFromFile(inject("kubeconfigPath"));
const log = pino({ level: "silent" });
const namespace = "leader-test";

function elector(identity: string, name: string): LeaderElector {
  return new LeaderElector({
    rest: new KubeRest(kc),
    namespace,
    name,
    identity,
    log,
    leaseDurationSeconds: 3,
    renewMs: 500,
    retryMs: 250,
    renewDeadlineMs: 2_000,
  });
}

describe("LeaderElector", () => {
  beforeAll(async () => {
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace });
  });

  it("elects exactly one leader and hands over at once on release", async () => {
    const a = elector("a", "handover");
    const b = elector("b", "handover");
    expect(await a.acquire()).toBe(true);
    const bWon = b.acquire();
    await new Promise((r) => setTimeout(r, 1_500));
    expect([a.leading, b.leading]).toEqual([true, false]);
    const t0 = Date.now();
    await a.stop();
    expect(await bWon).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await b.stop();
  });

  it("takes over after the leader stops renewing without releasing (a crash)", async () => {
    const a = elector("a", "crash");
    const b = elector("b", "crash");
    await a.acquire();
    const bWon = b.acquire();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(b.leading).toBe(false);
    const t0 = Date.now();
    await a.stop(false);
    expect(await bWon).toBe(true);
    const failoverMs = Date.now() - t0;
    // Lease duration 3 s plus one retry period: well within the 30 s the operator promises.
    expect(failoverMs).toBeGreaterThan(1_000);
    expect(failoverMs).toBeLessThan(5_000);
    await b.stop();
  });

  it("releases a lease it wins while stopping (a campaign in flight when stop is called)", async () => {
    // The replica campaigns through a slow apiserver, is stopped while its attempt is in flight,
    // and the attempt wins the free lease: it must not keep it (a rolling update stops both old
    // replicas at once; the one that wins the leader's released lease would hold it, unrenewed,
    // for a whole lease duration).
    class SlowRest extends KubeRest {
      override async get<T>(path: string, what: string): Promise<T> {
        await new Promise((r) => setTimeout(r, 500));
        return super.get<T>(path, what);
      }
    }
    const rest = new KubeRest(kc);
    const c = new LeaderElector({ rest: new SlowRest(kc), namespace, name: "stopping", identity: "c", log });
    const won = c.acquire();
    await new Promise((r) => setTimeout(r, 100));
    await c.stop();
    expect(await won).toBe(false);
    expect(c.leading).toBe(false);
    const lease = await rest.get<{ spec: { holderIdentity?: string | null } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/stopping`,
      "reading lease",
    );
    expect(lease.spec.holderIdentity ?? null).toBeNull();
  });

  it("releases the lease when stopped while a renewal is in flight", async () => {
    // The leader's renewal is on its way when the pod is told to stop: the release must not read
    // the lease before the renewal lands and then write over it with an old resourceVersion (a
    // 409 left the lease held, unrenewed, for a whole lease duration: the other replica waited).
    let renewing: (() => void) | undefined;
    class RacingRest extends KubeRest {
      override async request<T>(req: Parameters<KubeRest["request"]>[0]): Promise<T> {
        if (req.what === "renewing the leader lease" && renewing === undefined) {
          // Let the test stop the elector now, then send the renewal a little later.
          await new Promise<void>((r) => (renewing = r));
          await new Promise((r) => setTimeout(r, 200));
        } else if (req.what === "releasing the leader lease") await new Promise((r) => setTimeout(r, 400));
        return super.request<T>(req);
      }
    }
    const d = new LeaderElector({
      rest: new RacingRest(kc),
      namespace,
      name: "renewing",
      identity: "d",
      log,
      leaseDurationSeconds: 30,
      renewMs: 100,
    });
    expect(await d.acquire()).toBe(true);
    while (renewing === undefined) await new Promise((r) => setTimeout(r, 20));
    const stopped = d.stop();
    renewing();
    await stopped;
    const lease = await new KubeRest(kc).get<{ spec: { holderIdentity?: string | null } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/renewing`,
      "reading lease",
    );
    expect(lease.spec.holderIdentity ?? null).toBeNull();
  });
});
