// A killed test run must leave no process behind: a child process starts its own control plane,
// is killed with SIGKILL (no handler runs), and every process it started must be gone.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { isAlive, reapAbandoned } from "../harness/processes.ts";

const starter = fileURLToPath(new URL("../harness/start-for-test.ts", import.meta.url));

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(100);
  }
  return cond();
}

function recordedPids(stateDir: string): number[] {
  const file = join(stateDir, "pids.json");
  return existsSync(file)
    ? Object.values(JSON.parse(readFileSync(file, "utf8")) as Record<string, number>)
    : [];
}

describe("harness process hygiene", () => {
  const root = mkdtempSync(join(tmpdir(), "tmo-hygiene-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("leaves no process behind when the test process is killed with SIGKILL", async () => {
    const stateDir = join(root, "tmo-harness-killed");
    const child = spawn(process.execPath, [starter, stateDir], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    expect(await waitFor(() => out.includes("READY"), 90_000)).toBe(true);
    const pids = recordedPids(stateDir);
    expect(pids.length).toBe(5); // etcd, apiserver, scheduler, controller-manager, kwok
    expect(pids.every((p) => isAlive(p))).toBe(true);

    child.kill("SIGKILL");
    const allGone = await waitFor(() => pids.every((p) => !isAlive(p)), 10_000);
    expect(allGone, `still alive: ${pids.filter((p) => isAlive(p)).join(",")}`).toBe(true);
  });

  it("reaps processes of an abandoned state directory whose owner is dead", async () => {
    const stateDir = join(root, "tmo-harness-orphan");
    // An owner that has exited, and a process recorded as one of its components.
    const sleeper = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", stateDir], {
      detached: true,
      stdio: "ignore",
    });
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, "owner.pid"), "999999999");
    writeFileSync(join(stateDir, "pids.json"), JSON.stringify({ sleeper: sleeper.pid }));
    expect(isAlive(sleeper.pid!, stateDir)).toBe(true);

    expect(reapAbandoned(root, "tmo-harness-")).toBeGreaterThanOrEqual(1);
    expect(await waitFor(() => !isAlive(sleeper.pid!), 5_000)).toBe(true);
    expect(existsSync(stateDir)).toBe(false);
  });
});
