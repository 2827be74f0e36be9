// `make demo --once` from this checkout: its own control plane, the chart installed with helm, the
// operator and collector as processes, and mirrored pod traffic in a pcapng file tshark reads.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { REPO_ROOT } from "../harness/controlplane.ts";

it("runs the demo once: the policy becomes Ready and tshark reads the mirrored requests", async () => {
  const child = spawn(process.execPath, [join(REPO_ROOT, "test/demo/run.ts"), "--once"], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(code, out.slice(-3000)).toBe(0);
  expect(out).toContain("helm install traffic-mirror");
  expect(out).toMatch(/shop\/web-http\tReady=True/);
  const read = /tshark -r (\S+\.pcapng) reads (\d+) packets/.exec(out);
  expect(read, out.slice(-2000)).not.toBeNull();
  expect(Number(read![2])).toBeGreaterThan(0);
  expect(out).toMatch(/vni \d+\t10\.99\.0\.7\t10\.0\.\d+\.\d+\t\/orders\/\d+/);
}, 300_000);
