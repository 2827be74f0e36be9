// The emulator as people run it (`make ec2-sim`): a program on loopback, seeded and reset through
// its admin API, answering the real SDK, and stopping on SIGTERM.
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { describe, expect, it } from "vitest";
import { makeEc2Client } from "../../src/aws/client.ts";
import { freePorts, REPO_ROOT } from "../harness/controlplane.ts";
import { makeWorld } from "../fixtures/world.ts";

describe("ec2-sim program", () => {
  it("serves the SDK, takes seeds, resets, and exits on SIGTERM", async () => {
    const [port] = (await freePorts(1)) as [number];
    const url = `http://127.0.0.1:${port}`;
    const proc = spawn(
      "setpriv",
      ["--pdeathsig", "SIGKILL", "--", process.execPath, "test/ec2-sim/main.ts", "--port", String(port)],
      { cwd: REPO_ROOT, stdio: "ignore" },
    );
    try {
      for (let i = 0; i < 100 && !(await fetch(`${url}/_sim/calls`).catch(() => undefined))?.ok; i++)
        await sleep(100);
      const world = makeWorld({ nodes: 3, podsPerNode: 0 });
      const seeded = await fetch(`${url}/_sim/seed`, {
        method: "POST",
        body: JSON.stringify(world.inventory),
      });
      expect(await seeded.json()).toEqual({ instances: 3, networkInterfaces: 6 });
      const client = makeEc2Client({
        endpoint: url,
        credentials: { accessKeyId: "t", secretAccessKey: "t" },
      });
      const out = await client.send(new DescribeInstancesCommand({}));
      expect(out.Reservations?.flatMap((r) => r.Instances ?? []).map((i) => i.InstanceType)).toEqual([
        "m5.large",
        "m5.large",
        "m5.large",
      ]);
      await fetch(`${url}/_sim/reset`, { method: "POST" });
      const after = await client.send(new DescribeInstancesCommand({}));
      expect(after.Reservations ?? []).toHaveLength(0);
      expect((await fetch(`${url}/_sim/nope`)).status).toBe(404);
    } finally {
      const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
      proc.kill("SIGTERM");
      expect(await exited).toBe(0);
    }
  });
});
