/**
 * `make kustomize`: renders the Helm chart once with fixed values and writes the result as the
 * kustomize bases under config/ (rbac, manager, collector), so that `kubectl apply -k
 * config/default` installs what `helm install` does. The chart is the one source; the chart test
 * fails when the committed files differ from a fresh render.
 *
 * config/crd gets copies of crds/: kustomize loads files only from a kustomization's directory or
 * below, and a kustomization.yaml inside crds/ would break `kubectl apply -f crds/` and Helm.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The chart rendered into config/. */
export const CHART_DIR = join(ROOT, "charts", "traffic-mirror-operator");
/** Namespace of the kustomize install (the operator's default TMO_NAMESPACE). */
export const KUSTOMIZE_NAMESPACE = "traffic-mirror-system";

const HEADER =
  "# Generated from charts/traffic-mirror-operator by `make kustomize` (test/tools/render-config.ts).\n" +
  "# Do not edit: change the chart and run `make kustomize`. Override values in an overlay.\n";

// Labels that name Helm or a chart version: meaningless, and churn, outside a Helm release.
const HELM_LABELS = ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"];

type Doc = {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: { template?: { metadata?: { labels?: Record<string, string> } } };
};

function clean(d: Doc): Doc {
  // kustomize's `namespace:` sets it (and the RoleBinding subjects') in config/default.
  delete d.metadata.namespace;
  for (const labels of [d.metadata.labels, d.spec?.template?.metadata?.labels])
    for (const l of HELM_LABELS) if (labels) delete labels[l];
  return d;
}

function baseOf(d: Doc): string {
  const component = d.metadata.labels?.["app.kubernetes.io/component"];
  if (["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(d.kind)) return "rbac";
  if (d.kind === "ServiceAccount") return component === "collector" ? "collector" : "rbac";
  return component === "collector" ? "collector" : "manager";
}

function fileOf(d: Doc): string {
  const snake = d.kind.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  return d.kind === "Service" ? "metrics_service.yaml" : `${snake}.yaml`;
}

/** Renders the chart with `helm template`; returns the file contents by path under config/. */
export function renderConfig(helm = "helm"): Map<string, string> {
  const out = execFileSync(
    helm,
    [
      "template",
      "traffic-mirror-operator",
      CHART_DIR,
      "--namespace",
      KUSTOMIZE_NAMESPACE,
      "--set",
      "clusterName=example-cluster",
      "--set",
      "fullnameOverride=traffic-mirror-operator",
    ],
    { encoding: "utf8" },
  );
  const files = new Map<string, Doc[]>();
  for (const raw of parseAllDocuments(out)) {
    const d = raw.toJS() as Doc | null;
    // Helm hooks (the uninstall check) mean something only to Helm.
    if (!d || d.metadata.annotations?.["helm.sh/hook"]) continue;
    const path = `${baseOf(d)}/${fileOf(d)}`;
    files.set(path, [...(files.get(path) ?? []), clean(d)]);
  }
  const rendered = new Map<string, string>();
  const byBase = new Map<string, string[]>();
  for (const [path, docs] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    rendered.set(path, HEADER + docs.map((d) => stringify(d, { lineWidth: 0 })).join("---\n"));
    const [base, file] = path.split("/") as [string, string];
    byBase.set(base, [...(byBase.get(base) ?? []), file]);
  }
  const crds = readdirSync(join(ROOT, "crds"))
    .filter((f) => f.endsWith(".yaml"))
    .sort();
  for (const f of crds) rendered.set(`crd/${f}`, readFileSync(join(ROOT, "crds", f), "utf8"));
  byBase.set("crd", crds);
  for (const [base, list] of byBase)
    rendered.set(
      `${base}/kustomization.yaml`,
      HEADER +
        stringify({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources: list }),
    );
  return rendered;
}

/** Writes the rendered bases into config/. */
export function writeConfig(rendered: Map<string, string>): void {
  for (const [path, text] of rendered) {
    const file = join(ROOT, "config", path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rendered = renderConfig();
  writeConfig(rendered);
  console.log(`Wrote ${rendered.size} files under config/`);
}
