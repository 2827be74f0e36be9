/**
 * vitest globalSetup of the integration project: one real control plane for the whole run,
 * reaping whatever an earlier, killed run left behind first.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startControlPlane } from "./controlplane.ts";
import { reapAbandoned } from "./processes.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** An admin kubeconfig for the shared control plane. */
    kubeconfigPath: string;
    /** A kubeconfig for the user `tenant-a` (group `tenants`), which has no rights until granted. */
    tenantKubeconfigPath: string;
    /** The apiserver URL. */
    apiServer: string;
    /** The harness state directory (logs of every component). */
    harnessStateDir: string;
  }
}

/** Prefix of harness state directories under the system temp directory. */
export const STATE_PREFIX = "tmo-harness-";

/** Starts the control plane; the returned function stops it. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const reaped = reapAbandoned(tmpdir(), STATE_PREFIX);
  if (reaped > 0) console.warn(`Reaped ${reaped} processes left by an interrupted run`);
  const stateDir = mkdtempSync(join(tmpdir(), STATE_PREFIX));
  const started = Date.now();
  const cp = await startControlPlane({ stateDir, users: { "tenant-a": ["tenants"] } });
  console.log(`Control plane ready at ${cp.server} in ${Date.now() - started} ms (logs in ${stateDir})`);
  project.provide("kubeconfigPath", cp.kubeconfigPath);
  project.provide("tenantKubeconfigPath", cp.userKubeconfig("tenant-a"));
  project.provide("apiServer", cp.server);
  project.provide("harnessStateDir", stateDir);
  return async () => {
    await cp.stop();
    if (!process.env.TMO_KEEP_HARNESS) rmSync(stateDir, { recursive: true, force: true });
  };
}
