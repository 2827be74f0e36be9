// Time to a ready control plane (etcd + kube-apiserver /readyz, then scheduler, controller-manager
// and kwok started) with the tool cache warm. Run: node bench/harness/run.ts [runs]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane } from "../../test/harness/controlplane.ts";

const runs = Number(process.argv[2] ?? 5);
const times: number[] = [];
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), "tmo-harness-bench-"));
  const t0 = performance.now();
  const cp = await startControlPlane({ stateDir: dir });
  times.push(performance.now() - t0);
  await cp.stop();
  rmSync(dir, { recursive: true, force: true });
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
console.log(
  `control plane ready: median ${(median / 1000).toFixed(2)} s, min ${(times[0]! / 1000).toFixed(2)} s, max ${(times.at(-1)! / 1000).toFixed(2)} s over ${runs} runs`,
);
