/**
 * Child processes of the harness, started so that none outlives it: each runs under
 * `setpriv --pdeathsig SIGKILL` (the kernel kills it when its parent dies, even by SIGKILL), in its
 * own process group, and its pid is recorded in the state directory so that a later run or
 * `sandbox-down` can reap what an interrupted run left.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A process the harness started. */
export interface Managed {
  name: string;
  child: ChildProcess;
  logPath: string;
}

/** What `startProcess` needs. */
export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  stateDir: string;
  env?: NodeJS.ProcessEnv;
}

const PIDS_FILE = "pids.json";

/** Starts a process tied to this one's life, logging to `<stateDir>/<name>.log`. */
export function startProcess(opts: StartOptions): Managed {
  const logPath = join(opts.stateDir, `${opts.name}.log`);
  const log = createWriteStream(logPath, { flags: "a" });
  const child = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", opts.command, ...opts.args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: opts.env ?? process.env,
    detached: true,
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on("error", (err) => log.write(`spawn error: ${err.message}\n`));
  if (child.pid !== undefined) recordPid(opts.stateDir, opts.name, child.pid);
  return { name: opts.name, child, logPath };
}

function readPids(stateDir: string): Record<string, number> {
  const file = join(stateDir, PIDS_FILE);
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}

function recordPid(stateDir: string, name: string, pid: number): void {
  const pids = readPids(stateDir);
  pids[name] = pid;
  writeFileSync(join(stateDir, PIDS_FILE), JSON.stringify(pids));
}

/** Whether a pid is alive and still runs a command naming `marker` (guards against pid reuse). */
export function isAlive(pid: number, marker?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (marker === undefined) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker);
  } catch {
    return false;
  }
}

/** Stops a process group: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProcess(m: Managed, graceMs = 5_000): Promise<void> {
  const pid = m.child.pid;
  if (pid === undefined || m.child.exitCode !== null || m.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => m.child.once("exit", () => resolve()));
  signalGroup(pid, "SIGTERM");
  const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut) {
    signalGroup(pid, "SIGKILL");
    await exited;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/**
 * Kills every process recorded in a state directory whose command line still names that
 * directory, then removes the record. Returns how many were killed.
 */
export function reapStateDir(stateDir: string): number {
  let killed = 0;
  for (const pid of Object.values(readPids(stateDir))) {
    if (!isAlive(pid, stateDir)) continue;
    signalGroup(pid, "SIGKILL");
    killed++;
  }
  rmSync(join(stateDir, PIDS_FILE), { force: true });
  return killed;
}

/**
 * Reaps state directories under `root` (named `prefix…`) whose owning harness process is dead:
 * what a killed test run left behind.
 */
export function reapAbandoned(root: string, prefix: string): number {
  if (!existsSync(root)) return 0;
  let killed = 0;
  for (const entry of readdirSync(root)) {
    if (!entry.startsWith(prefix)) continue;
    const dir = join(root, entry);
    const ownerFile = join(dir, "owner.pid");
    const owner = existsSync(ownerFile) ? Number(readFileSync(ownerFile, "utf8")) : NaN;
    if (Number.isInteger(owner) && isAlive(owner)) continue;
    killed += reapStateDir(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  return killed;
}
