// How much memory the pod cache needs: 100,000 realistic pods kept as lean copies versus kept
// whole (what a plain informer does), measured in the same process with forced GCs.
// Run: node --expose-gc bench/cache/run.ts [pods]
import { leanPod } from "../../src/k8s/lean.ts";
import type { RawObject } from "../../src/k8s/reflector.ts";

const count = Number(process.argv[2] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

/** A pod as the apiserver sends it: managed fields, a container spec, status with conditions. */
function rawPod(i: number): RawObject {
  const ts = "2026-11-24T10:00:00Z";
  return JSON.parse(
    JSON.stringify({
      metadata: {
        name: `web-${i.toString(36)}-abcde`,
        namespace: `team-${i % 200}`,
        uid: `00000000-0000-0000-0000-${i.toString().padStart(12, "0")}`,
        resourceVersion: String(100000 + i),
        labels: { app: `web-${i % 50}`, "pod-template-hash": "7887448d46", tier: "frontend" },
        annotations: { "kubectl.kubernetes.io/restartedAt": ts },
        ownerReferences: [
          { apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-7887448d46", uid: "x", controller: true },
        ],
        managedFields: [
          {
            manager: "kube-controller-manager",
            operation: "Update",
            apiVersion: "v1",
            time: ts,
            fieldsType: "FieldsV1",
            fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:app": {} } } },
          },
        ],
      },
      spec: {
        nodeName: `ip-10-0-${i % 250}-${i % 200}.ec2.internal`,
        containers: [
          {
            name: "web",
            image: "registry.example/web:1.2.3",
            ports: [{ containerPort: 8080, protocol: "TCP" }],
            resources: { requests: { cpu: "100m", memory: "128Mi" } },
            env: [{ name: "MODE", value: "production" }],
            volumeMounts: [
              {
                name: "kube-api-access",
                mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
                readOnly: true,
              },
            ],
          },
        ],
        serviceAccountName: "default",
        tolerations: [
          {
            key: "node.kubernetes.io/not-ready",
            operator: "Exists",
            effect: "NoExecute",
            tolerationSeconds: 300,
          },
        ],
      },
      status: {
        phase: "Running",
        podIP: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
        podIPs: [{ ip: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}` }],
        hostIP: "10.0.0.4",
        conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
          type,
          status: "True",
          lastTransitionTime: ts,
        })),
        containerStatuses: [
          {
            name: "web",
            ready: true,
            restartCount: 0,
            image: "registry.example/web:1.2.3",
            imageID: "sha256:abc",
            containerID: "containerd://abc",
            started: true,
            state: { running: { startedAt: ts } },
          },
        ],
      },
    }),
  ) as RawObject;
}

function heapAfterGc(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

function measure(keep: (o: RawObject) => unknown): number {
  const base = heapAfterGc();
  const cache = new Map<string, unknown>();
  for (let i = 0; i < count; i++) {
    const raw = rawPod(i);
    cache.set(`${raw.metadata!.namespace}/${raw.metadata!.name}`, keep(raw));
  }
  const used = heapAfterGc() - base;
  if (cache.size !== count) throw new Error("cache lost entries");
  return used;
}

const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
// Whole objects first and lean second would favour lean through heap growth; alternate and repeat.
const results = { lean: [] as number[], whole: [] as number[] };
for (let round = 0; round < 3; round++) {
  results.whole.push(measure((o) => o));
  results.lean.push(measure(leanPod));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const lean = median(results.lean);
const whole = median(results.whole);
console.log(`pods: ${count}`);
console.log(`lean cache:  ${mib(lean)} MiB (${Math.round(lean / count)} B/pod), median of 3`);
console.log(`whole cache: ${mib(whole)} MiB (${Math.round(whole / count)} B/pod), median of 3`);
console.log(`ratio whole/lean: ${(whole / lean).toFixed(1)}x`);
