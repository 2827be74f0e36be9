/** Installs the project's generated CRDs into a control plane and waits until they are served. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseAllDocuments } from "yaml";
import { API_VERSION } from "../../src/api/resources.ts";
import { isStatus, type KubeRest } from "../../src/k8s/rest.ts";
import { REPO_ROOT } from "./controlplane.ts";

/** Creates the CRDs in `crds/` (existing ones are left alone) and waits until both kinds answer. */
export async function installCrds(rest: KubeRest): Promise<void> {
  const dir = join(REPO_ROOT, "crds");
  for (const f of readdirSync(dir)) {
    const crd = parseAllDocuments(readFileSync(join(dir, f), "utf8"))[0]!.toJS() as object;
    try {
      await rest.request({
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        body: crd,
        what: "creating CRD",
      });
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
    }
  }
  for (let i = 0; i < 200; i++) {
    try {
      await rest.get(`/apis/${API_VERSION}/trafficmirrortargets`, "probing");
      await rest.get(`/apis/${API_VERSION}/trafficmirrorpolicies`, "probing");
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error("CRDs were not served in time");
}
