/**
 * `make sandbox-up` / `make sandbox-down`: a local control plane for people, in `.sandbox/`.
 * `up` starts a detached `serve` process that owns the control plane (its children die with it)
 * and waits until it is ready; `down` stops it by pid.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { eksNodeSpec, makeEksNode } from "../fixtures/eks.ts";
import { REPO_ROOT, startControlPlane } from "./controlplane.ts";
import { isAlive, reapStateDir } from "./processes.ts";

const SANDBOX = join(REPO_ROOT, ".sandbox");
const STATE = join(SANDBOX, "controlplane");
const PID_FILE = join(SANDBOX, "serve.pid");
const READY_FILE = join(SANDBOX, "ready");
const KUBECONFIG = join(SANDBOX, "kubeconfig");

function servePid(): number | undefined {
  if (!existsSync(PID_FILE)) return undefined;
  const pid = Number(readFileSync(PID_FILE, "utf8"));
  return Number.isInteger(pid) && isAlive(pid, "cli.ts") ? pid : undefined;
}

async function up(): Promise<void> {
  if (servePid() !== undefined) {
    console.log(`Sandbox already running; KUBECONFIG=${KUBECONFIG}`);
    return;
  }
  if (existsSync(STATE)) reapStateDir(STATE);
  rmSync(SANDBOX, { recursive: true, force: true });
  mkdirSync(SANDBOX, { recursive: true, mode: 0o700 });
  const out = openSync(join(SANDBOX, "serve.log"), "a");
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "serve"], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  child.unref();
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    if (existsSync(READY_FILE)) {
      console.log(`Sandbox ready: export KUBECONFIG=${KUBECONFIG}`);
      return;
    }
    if (child.exitCode !== null || (child.pid !== undefined && !isAlive(child.pid))) break;
    await sleep(250);
  }
  throw new Error(`sandbox did not start; see ${join(SANDBOX, "serve.log")}`);
}

async function seedNodes(kubeconfigPath: string, count: number): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < count; i++) {
    const labels: Record<string, string> = i === 0 ? { "traffic-mirror.twtech.io/collector": "true" } : {};
    await core.createNode({ body: makeEksNode(eksNodeSpec(i, { labels })) });
  }
}

async function serve(): Promise<void> {
  writeFileSync(PID_FILE, String(process.pid));
  const cp = await startControlPlane({ stateDir: STATE, log: (m) => console.log(m) });
  await seedNodes(cp.kubeconfigPath, 3);
  writeFileSync(KUBECONFIG, readFileSync(cp.kubeconfigPath), { mode: 0o600 });
  writeFileSync(READY_FILE, cp.server);
  const stop = (): void => {
    void cp.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // Keep the event loop alive until signalled.
  setInterval(() => {}, 1 << 30);
}

async function down(): Promise<void> {
  const pid = servePid();
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 30_000;
    while (isAlive(pid) && Date.now() < deadline) await sleep(200);
    if (isAlive(pid)) process.kill(pid, "SIGKILL");
  }
  const killed = existsSync(STATE) ? reapStateDir(STATE) : 0;
  rmSync(SANDBOX, { recursive: true, force: true });
  console.log(pid === undefined && killed === 0 ? "No sandbox was running" : "Sandbox stopped");
}

const commands: Record<string, () => Promise<void>> = { up, down, serve };
const cmd = commands[process.argv[2] ?? ""];
if (!cmd) {
  console.error("usage: cli.ts up|down");
  process.exit(2);
}
await cmd();
