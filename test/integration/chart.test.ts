// The Helm chart and the kustomize bases against the real control plane: lint with the values
// schema, server-side validation of every rendered object, a real install whose collector lands
// only on collector nodes (kwok), upgrade, uninstall, and a bad value refused with a clear message.
// RBAC is checked for least privilege and for being the same in the chart and in config/.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { VNI_MAP_CONFIGMAP_KEY } from "../../src/api/vni-map.ts";
import {
  CollectorEnvSchema,
  loadCollectorConfig,
  loadOperatorConfig,
  OperatorEnvSchema,
} from "../../src/cmd/config.ts";
import { VNI_MAP_CONFIGMAP } from "../../src/controller/reconcile.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { eksNodeSpec, makeEksNode, type EksNodeSpec } from "../fixtures/eks.ts";
import { until } from "../fixtures/scenario.ts";
import { REPO_ROOT, TOOLS_BIN } from "../harness/controlplane.ts";
import { CHART_DIR, KUSTOMIZE_NAMESPACE, renderConfig } from "../tools/render-config.ts";

const run = promisify(execFile);
const kubeconfig = inject("kubeconfigPath");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const rest = new KubeRest(kc);

// Helm keeps its caches and repositories away from the user's own.
const helmHome = mkdtempSync(join(tmpdir(), "tmo-chart-helm-"));
const env = {
  ...process.env,
  PATH: `${TOOLS_BIN}:${process.env.PATH ?? ""}`,
  KUBECONFIG: kubeconfig,
  HELM_CACHE_HOME: join(helmHome, "cache"),
  HELM_CONFIG_HOME: join(helmHome, "config"),
  HELM_DATA_HOME: join(helmHome, "data"),
};

async function sh(cmd: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  const p = run(cmd, args, { env, cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
  if (input !== undefined) p.child.stdin?.end(input);
  return p;
}

/** A command's failure as text (stdout, stderr and message), or undefined if it succeeded. */
async function failure(cmd: string, args: string[], input?: string): Promise<string | undefined> {
  try {
    await sh(cmd, args, input);
    return undefined;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return `${e.stdout ?? ""}${e.stderr ?? ""}${e.message}`;
  }
}

type K8sObject = {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  spec?: Record<string, unknown>;
};
type Rule = { apiGroups?: string[]; resources?: string[]; verbs: string[]; resourceNames?: string[] };

function docs(yamlText: string): K8sObject[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

const CI_VALUES = join(CHART_DIR, "ci", "default-values.yaml");
const ns = "tmo-chart";
const release = "tmo";
// Collector nodes are chosen by a label of this test only, so nodes other suites leave behind
// with the product's default collector label cannot attract collector pods here.
const TEST_LABEL = "chart-test.twtech.io/collector";
// Indexes 740-749 are this suite's; 740-742 are collectors (742 also tainted), 743-744 are not.
const collectorIdx = [740, 741, 742];
const specs: EksNodeSpec[] = [740, 741, 742, 743, 744].map((i) =>
  eksNodeSpec(i, {
    prefix: "chart",
    labels: collectorIdx.includes(i) ? { [TEST_LABEL]: "true" } : { "example.com/pool": "chart" },
  }),
);

/** `helm template` of the chart with the CI values and `args`, as YAML text. */
async function helmTemplateText(...args: string[]): Promise<string> {
  return (await sh("helm", ["template", release, CHART_DIR, "-n", ns, "-f", CI_VALUES, ...args])).stdout;
}

async function helmTemplate(...args: string[]): Promise<K8sObject[]> {
  return docs(await helmTemplateText(...args));
}

function clusterRoleRules(objs: K8sObject[]): Rule[] {
  const roles = objs.filter((o) => o.kind === "ClusterRole");
  expect(roles).toHaveLength(1);
  return roles[0]!.rules ?? [];
}

/** Rules in a canonical form, so the chart's and kustomize's can be compared as sets. */
function canonical(rules: Rule[]): string[] {
  return rules
    .map((r) =>
      JSON.stringify({
        apiGroups: [...(r.apiGroups ?? [])].sort(),
        resources: [...(r.resources ?? [])].sort(),
        resourceNames: [...(r.resourceNames ?? [])].sort(),
        verbs: [...r.verbs].sort(),
      }),
    )
    .sort();
}

type EnvVar = { name: string; value?: string; valueFrom?: unknown };
type Container = {
  name: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { containerPort: number; hostPort?: number; protocol?: string }[];
  securityContext?: {
    runAsNonRoot?: boolean;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string }[];
};
type PodSpec = {
  hostNetwork?: boolean;
  automountServiceAccountToken?: boolean;
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; configMap?: { name: string; items?: { key: string; path: string }[] } }[];
};

function podSpec(objs: K8sObject[], kind: string): PodSpec {
  const o = objs.find((x) => x.kind === kind);
  expect(o, kind).toBeDefined();
  return (o!.spec as { template: { spec: PodSpec } }).template.spec;
}

const envOf = (c: Container): Record<string, string | undefined> =>
  Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

describe("Helm chart templates", () => {
  it("sets only variables the operator reads, with values its config loader accepts", async () => {
    const op = podSpec(
      await helmTemplate(
        "--set",
        "operator.metricsPort=9090,operator.sessionBudget=2500,aws.region=eu-west-1",
      ),
      "Deployment",
    ).containers[0]!;
    expect(op.args).toEqual(["operator"]);
    // Besides the operator's own, Node's NODE_OPTIONS: the heap's limit (ADR 25).
    const known = [...Object.keys(OperatorEnvSchema.shape), "NODE_OPTIONS"];
    expect((op.env ?? []).map((e) => e.name).filter((n) => !known.includes(n))).toEqual([]);
    expect(envOf(op)["NODE_OPTIONS"]).toBe("--max-old-space-size-percentage=30");
    // fieldRef values (namespace, pod name) as the kubelet would fill them in.
    const env = { ...envOf(op), TMO_NAMESPACE: ns, TMO_POD_NAME: "tmo-0" };
    const config = loadOperatorConfig(env, "fallback");
    expect(config).toMatchObject({
      clusterName: "ci",
      region: "eu-west-1",
      namespace: ns,
      identity: "tmo-0",
      leaderElection: true,
      dryRun: false,
      metrics: { port: 9090 },
      health: { port: 8081 },
      sessionBudget: 2500,
    });
  });

  it("passes the rate shares and per-action buckets to the operator", async () => {
    const op = podSpec(
      // `--set` passes 0.25 as a string, which the schema refuses: fractions go through --set-json
      // (or a values file), as the chart README says.
      await helmTemplate(
        "--set",
        [
          "operator.rateLimits.actions.CreateTrafficMirrorSession.burst=200",
          "operator.rateLimits.actions.CreateTrafficMirrorSession.rate=20",
          "operator.rateLimits.actions.DescribeInstances.burst=100",
        ].join(","),
        "--set-json",
        "operator.rateLimits.shares.shared=0.25",
        "--set-json",
        "operator.rateLimits.actions.DescribeInstances.rate=12.5",
      ),
      "Deployment",
    ).containers[0]!;
    const config = loadOperatorConfig({ ...envOf(op), TMO_NAMESPACE: ns }, "x");
    expect(config.rateLimits).toEqual({
      categories: {
        mutating: { burst: 50, ratePerSecond: 5 },
        nonMutating: { burst: 100, ratePerSecond: 20 },
      },
      actions: {
        CreateTrafficMirrorSession: { burst: 200, ratePerSecond: 20 },
        DescribeInstances: { burst: 100, ratePerSecond: 12.5 },
      },
      shares: { shared: 0.25, mirror: 0.85 },
    });
    // Without actions, no variable; a share above 1 is refused by the schema.
    const plain = podSpec(await helmTemplate(), "Deployment").containers[0]!;
    expect(envOf(plain).TMO_ACTION_RATE_LIMITS).toBeUndefined();
    const why = await failure("helm", [
      "template",
      release,
      CHART_DIR,
      "-n",
      ns,
      "-f",
      CI_VALUES,
      "--set",
      "operator.rateLimits.shares.mirror=1.5",
    ]);
    expect(why).toMatch(/values don't meet the specifications of the schema/);
    expect(why).toMatch(/shares\/mirror/);
  });

  it("runs the operator restricted, with probes on the health port", async () => {
    const spec = podSpec(await helmTemplate(), "Deployment");
    const op = spec.containers[0]! as Container & {
      livenessProbe: { httpGet: { path: string; port: string } };
      readinessProbe: { httpGet: { path: string; port: string } };
    };
    expect(op.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(op.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health" });
    expect(op.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
    expect(op.ports?.find((p) => p.containerPort === 8081)).toBeDefined();
  });

  it("gives the collector the env contract, the VNI map through the apiserver, UDP 4789 on the host", async () => {
    const spec = podSpec(await helmTemplate(), "DaemonSet");
    const c = spec.containers[0]!;
    expect(c.args).toEqual(["collector"]);
    expect(spec.hostNetwork).toBe(true);
    expect(envOf(c)).toMatchObject({
      TMO_COLLECTOR_VNI_MAP_CONFIGMAP: VNI_MAP_CONFIGMAP,
      TMO_COLLECTOR_DIR: "/var/lib/traffic-mirror/captures",
      TMO_COLLECTOR_PORT: "4789",
      TMO_COLLECTOR_METRICS_ADDR: ":9102",
    });
    expect(c.env?.find((e) => e.name === "TMO_NAMESPACE")?.valueFrom).toEqual({
      fieldRef: { fieldPath: "metadata.namespace" },
    });
    // Every variable the chart sets is one the collector reads (and the values pass its schema).
    const env = envOf(c);
    const known = new Set(Object.keys(CollectorEnvSchema.shape));
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    expect(() =>
      loadCollectorConfig(
        Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>,
      ),
    ).not.toThrow();
    expect(c.ports).toContainEqual({ name: "vxlan", containerPort: 4789, hostPort: 4789, protocol: "UDP" });
    // A token to watch the map, and no map volume.
    expect(spec.automountServiceAccountToken).toBe(true);
    expect(spec.volumes!.find((v) => v.configMap)).toBeUndefined();
    expect(c.volumeMounts).toContainEqual(
      expect.objectContaining({ mountPath: "/var/lib/traffic-mirror/captures" }),
    );
    // Userspace mode: non-root, no capabilities at all.
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(c.securityContext?.capabilities?.add).toBeUndefined();
  });

  it("mounts the VNI map as a file, with no token and no role, when asked", async () => {
    const objs = await helmTemplate("--set", "collector.vniMapFrom=file");
    const spec = podSpec(objs, "DaemonSet");
    const c = spec.containers[0]!;
    expect(envOf(c)).toMatchObject({ TMO_COLLECTOR_VNI_MAP_FILE: "/etc/traffic-mirror/vni-map.json.gz" });
    expect(envOf(c)["TMO_COLLECTOR_VNI_MAP_CONFIGMAP"]).toBeUndefined();
    expect(spec.automountServiceAccountToken).toBe(false);
    const vniVolume = spec.volumes!.find((v) => v.configMap)!;
    expect(vniVolume.configMap).toMatchObject({
      name: VNI_MAP_CONFIGMAP,
      items: [{ key: VNI_MAP_CONFIGMAP_KEY, path: "vni-map.json.gz" }],
    });
    expect(c.volumeMounts).toContainEqual(
      expect.objectContaining({ name: vniVolume.name, mountPath: "/etc/traffic-mirror" }),
    );
    expect(objs.filter((o) => o.kind === "Role").map((o) => o.metadata.name)).toEqual([
      `${release}-traffic-mirror-operator`,
    ]);
  });

  it("adds NET_ADMIN only in kernel mode", async () => {
    const c = podSpec(await helmTemplate("--set", "collector.kernelMode.enabled=true"), "DaemonSet")
      .containers[0]!;
    expect(c.securityContext?.capabilities).toEqual({ drop: ["ALL"], add: ["NET_ADMIN"] });
    expect(envOf(c).TMO_COLLECTOR_MODE).toBe("kernel");
  });

  it("keeps one operator replica through drains, but lets a drain evict unready ones", async () => {
    const pdb = (objs: K8sObject[]) => objs.find((o) => o.kind === "PodDisruptionBudget")?.spec;
    // Without AlwaysAllow a drain waits for unready replicas to become ready: with both unready, forever.
    expect(pdb(await helmTemplate())).toMatchObject({
      minAvailable: 1,
      unhealthyPodEvictionPolicy: "AlwaysAllow",
    });
    const clusterDefault = pdb(
      await helmTemplate("--set", "operator.podDisruptionBudget.unhealthyPodEvictionPolicy="),
    );
    expect(clusterDefault).toBeDefined();
    expect(clusterDefault).not.toHaveProperty("unhealthyPodEvictionPolicy");
    const typo = await failure("helm", [
      "template",
      release,
      CHART_DIR,
      "-f",
      CI_VALUES,
      "--set",
      "operator.podDisruptionBudget.unhealthyPodEvictionPolicy=Always",
    ]);
    expect(typo).toMatch(/podDisruptionBudget\/unhealthyPodEvictionPolicy': value must be one of/);
  });

  it("renders ServiceMonitors only when enabled and the cluster serves their API", async () => {
    const monitors = (objs: K8sObject[]): number => objs.filter((o) => o.kind === "ServiceMonitor").length;
    expect(monitors(await helmTemplate("--set", "metrics.serviceMonitor.enabled=true"))).toBe(0);
    const api = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
    expect(monitors(await helmTemplate(...api))).toBe(0);
    expect(monitors(await helmTemplate(...api, "--set", "metrics.serviceMonitor.enabled=true"))).toBe(2);
  });
});

describe("Helm chart", () => {
  let valuesFile: string;
  /** `helm install|upgrade` arguments for the test release with the CI and test values, then `extra`. */
  const releaseArgs = (verb: "install" | "upgrade", ...extra: string[]): string[] => [
    verb,
    release,
    CHART_DIR,
    "-n",
    ns,
    "-f",
    CI_VALUES,
    "-f",
    valuesFile,
    ...extra,
  ];

  beforeAll(async () => {
    valuesFile = join(helmHome, "test-values.yaml");
    writeFileSync(
      valuesFile,
      [
        "collector:",
        "  nodeSelector:",
        "    traffic-mirror.twtech.io/collector: null",
        `    ${TEST_LABEL}: "true"`,
        "",
      ].join("\n"),
    );
    for (const s of specs) {
      const node = makeEksNode(s);
      // A tainted collector node: the chart's default toleration must let the collector on.
      if (s === specs[2])
        node.spec!.taints = [{ key: "traffic-mirror.twtech.io/collector", effect: "NoSchedule" }];
      await rest.request({ method: "POST", path: "/api/v1/nodes", body: node, what: `creating ${s.name}` });
    }
  });

  afterAll(async () => {
    await sh("helm", ["uninstall", release, "-n", ns, "--wait", "--no-hooks"]).catch(() => undefined);
    await sh("kubectl", ["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]).catch(
      () => undefined,
    );
    for (const s of specs)
      await rest
        .request({ method: "DELETE", path: `/api/v1/nodes/${s.name}`, what: "deleting node" })
        .catch(() => undefined);
    rmSync(helmHome, { recursive: true, force: true });
  });

  it("passes helm lint --strict with its values schema", async () => {
    const { stdout } = await sh("helm", ["lint", "--strict", CHART_DIR, "-f", CI_VALUES]);
    expect(stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it("renders objects the apiserver accepts (server-side dry run), in every storage and mode", async () => {
    await sh("kubectl", ["create", "namespace", ns]);
    const variants = [
      [],
      [
        "--set",
        "networkPolicy.enabled=true,collector.kernelMode.enabled=true,collector.storage.type=emptyDir",
        "--set",
        "operator.serviceAccount.roleArn=arn:aws:iam::123456789012:role/tmo",
      ],
      [
        "--set",
        "collector.storage.type=persistentVolumeClaim,collector.storage.persistentVolumeClaim.claimName=caps",
      ],
      ["--set", "collector.enabled=false,metrics.service.enabled=false,operator.replicas=1"],
    ];
    for (const v of variants) {
      const stdout = await helmTemplateText(...v);
      const out = await sh(
        "kubectl",
        ["apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-"],
        stdout,
      );
      expect(out.stdout, v.join(" ")).toMatch(
        /deployment.apps\/tmo-traffic-mirror-operator created \(server dry run\)/,
      );
    }
  });

  it("grants no secrets and no wildcards, and kustomize grants exactly the same", async () => {
    const objs = await helmTemplate();
    const roles = objs.filter((o) => o.kind === "ClusterRole" || o.kind === "Role");
    expect(roles.map((r) => r.kind).sort()).toEqual(["ClusterRole", "Role", "Role"]);
    for (const r of roles.flatMap((x) => x.rules ?? [])) {
      expect(r.resources).not.toContain("secrets");
      expect(r.resources).not.toContain("*");
      expect(r.verbs).not.toContain("*");
      expect(r.apiGroups).not.toContain("*");
    }
    // The namespaced rights (leases, the VNI map) are in the Role, never cluster-wide.
    const clusterResources = clusterRoleRules(objs).flatMap((r) => r.resources ?? []);
    expect(clusterResources).not.toContain("configmaps");
    expect(clusterResources).not.toContain("leases");

    const { stdout } = await sh("kubectl", ["kustomize", "config/default"]);
    const kustomized = docs(stdout);
    expect(canonical(clusterRoleRules(kustomized))).toEqual(canonical(clusterRoleRules(objs)));
    const rolesOf = (list: K8sObject[]): Rule[] =>
      list.filter((o) => o.kind === "Role").flatMap((o) => o.rules ?? []);
    expect(canonical(rolesOf(kustomized))).toEqual(canonical(rolesOf(objs)));
    // The collector's Role: reading the one map ConfigMap, nothing else.
    const collectorRole = objs.find((o) => o.kind === "Role" && o.metadata.name?.endsWith("-collector"))!;
    expect(collectorRole.rules).toEqual([
      {
        apiGroups: [""],
        resources: ["configmaps"],
        resourceNames: [VNI_MAP_CONFIGMAP],
        verbs: ["get", "list", "watch"],
      },
    ]);
  });

  it("has kustomize bases the apiserver accepts (server-side dry run of config/default)", async () => {
    const { stdout } = await sh("kubectl", ["kustomize", "config/default"]);
    const objs = docs(stdout);
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
      ].sort(),
    );
    // A dry run cannot create the namespace its namespaced objects go into: make it for real,
    // and remove it again only if it was not there before.
    const created = await sh("kubectl", ["create", "namespace", KUSTOMIZE_NAMESPACE]).then(
      () => true,
      () => false,
    );
    try {
      const out = await sh("kubectl", ["apply", "--dry-run=server", "--validate=strict", "-f", "-"], stdout);
      expect(out.stdout).toMatch(
        /deployment.apps\/traffic-mirror-operator (created|configured|unchanged) \(server dry run\)/,
      );
      expect(out.stdout).toMatch(/daemonset.apps\/traffic-mirror-operator-collector/);
    } finally {
      if (created) await sh("kubectl", ["delete", "namespace", KUSTOMIZE_NAMESPACE, "--wait=false"]);
    }
  });

  it("takes the overlay documented in config/default (cluster name and IRSA role)", async () => {
    const overlay = mkdtempSync(join(tmpdir(), "tmo-overlay-"));
    try {
      // The example from config/default/kustomization.yaml, pointing at the local base.
      const comment = readFileSync(join(REPO_ROOT, "config/default/kustomization.yaml"), "utf8")
        .split("\n")
        .filter((l) => l.startsWith("#   "))
        .map((l) => l.slice(4))
        .join("\n")
        .replace(
          /^resources: .*$/m,
          `resources: [${relative(overlay, join(REPO_ROOT, "config", "default"))}]`,
        );
      writeFileSync(join(overlay, "kustomization.yaml"), comment + "\n");
      const { stdout } = await sh("kubectl", ["kustomize", overlay]);
      const objs = docs(stdout);
      const op = podSpec(objs, "Deployment").containers[0]!;
      expect(envOf(op).TMO_CLUSTER_NAME).toBe("my-cluster");
      const sa = objs.find(
        (o) => o.kind === "ServiceAccount" && o.metadata.name === "traffic-mirror-operator",
      ) as { metadata: { annotations?: Record<string, string> } } | undefined;
      expect(sa?.metadata.annotations?.["eks.amazonaws.com/role-arn"]).toMatch(/^arn:aws:iam::\d{12}:role\//);
    } finally {
      rmSync(overlay, { recursive: true, force: true });
    }
  });

  it("ships e2e scripts that parse, and a real-EKS smoke test that skips unless asked", async () => {
    for (const f of ["test/e2e/kind.sh", "test/e2e/real-eks.sh"]) await sh("bash", ["-n", f]);
    // Node leaves undefined variables out of a child's environment.
    const unasked: NodeJS.ProcessEnv = { ...env, TMO_REAL_EKS: undefined };
    const out = await run("bash", ["test/e2e/real-eks.sh"], { env: unasked, cwd: REPO_ROOT });
    expect(out.stdout).toMatch(/skipped: set TMO_REAL_EKS=1/);
  });

  it("has kustomize bases that match a fresh render of the chart (run `make kustomize`)", () => {
    const drifted = [...renderConfig(join(TOOLS_BIN, "helm"))].filter(
      ([path, text]) => readFileSync(join(REPO_ROOT, "config", path), "utf8") !== text,
    );
    expect(drifted.map(([p]) => p)).toEqual([]);
  });

  it("installs: 2 operator replicas, and collector pods on the collector nodes only", async () => {
    await sh("helm", releaseArgs("install", "--wait", "--timeout", "90s"));
    const deploy = await rest.get<{ spec: { replicas: number }; status: { readyReplicas?: number } }>(
      `/apis/apps/v1/namespaces/${ns}/deployments/${release}-traffic-mirror-operator`,
      "reading the operator deployment",
    );
    expect(deploy.spec.replicas).toBe(2);
    expect(deploy.status.readyReplicas).toBe(2);
    const wanted = specs
      .filter((_, i) => i < collectorIdx.length)
      .map((s) => s.name)
      .sort();
    const nodes = await until("a collector pod on each collector node", async () => {
      const pods = await rest.get<{ items: { spec: { nodeName?: string }; status: { phase?: string } }[] }>(
        `/api/v1/namespaces/${ns}/pods?labelSelector=app.kubernetes.io/component%3Dcollector`,
        "listing collector pods",
      );
      const running = pods.items.filter((p) => p.status.phase === "Running").map((p) => p.spec.nodeName!);
      return running.length === wanted.length ? running.sort() : undefined;
    });
    expect(nodes).toEqual(wanted);
  });

  it("upgrades: a changed value reaches the running objects", async () => {
    await sh(
      "helm",
      releaseArgs(
        "upgrade",
        "--set",
        "operator.logLevel=debug,operator.replicas=3",
        "--wait",
        "--timeout",
        "90s",
      ),
    );
    const deploy = await rest.get<{
      spec: {
        replicas: number;
        template: { spec: { containers: { env: { name: string; value?: string }[] }[] } };
      };
    }>(`/apis/apps/v1/namespaces/${ns}/deployments/${release}-traffic-mirror-operator`, "reading");
    expect(deploy.spec.replicas).toBe(3);
    const envVars = deploy.spec.template.spec.containers[0]!.env;
    expect(envVars.find((e) => e.name === "TMO_LOG_LEVEL")?.value).toBe("debug");
    await until("3 operator pods running", async () => {
      const pods = await rest.get<{ items: { status: { phase?: string } }[] }>(
        `/api/v1/namespaces/${ns}/pods?labelSelector=app.kubernetes.io/component%3Doperator`,
        "listing operator pods",
      );
      return pods.items.filter((p) => p.status.phase === "Running").length === 3 ? true : undefined;
    });
  });

  it("refuses a bad value with a message that names it, and leaves the release as it was", async () => {
    const why = await failure("helm", releaseArgs("upgrade", "--set", "operator.replicas=two"));
    expect(why).toMatch(/values don't meet the specifications of the schema/);
    expect(why).toMatch(/\/operator\/replicas.*got string, want integer/);
    // A fresh install is refused too, before anything reaches the cluster.
    const noName = await failure("helm", ["install", "tmo-bad", CHART_DIR, "-n", ns]);
    expect(noName).toMatch(/values don't meet the specifications of the schema/);
    expect(noName).toMatch(/\/clusterName/);
    const typo = await failure("helm", [
      "install",
      "tmo-bad",
      CHART_DIR,
      "-n",
      ns,
      "-f",
      CI_VALUES,
      "--set",
      "collector.nodeSelecter.a=b",
    ]);
    expect(typo).toMatch(/additional properties 'nodeSelecter' not allowed/);
    expect(await failure("helm", ["status", "tmo-bad", "-n", ns])).toMatch(/release: not found/);
    const { stdout } = await sh("helm", ["status", release, "-n", ns, "-o", "json"]);
    expect((JSON.parse(stdout) as { version: number }).version).toBe(2);
  });

  it("uninstalls: the operator, the collector and the cluster-wide RBAC are gone", async () => {
    // --no-hooks: the pre-delete uninstall check is code, and kwok's pods run none (other suites'
    // policies on this control plane would stop it, too). test/integration/real-node.test.ts runs it.
    await sh("helm", ["uninstall", release, "-n", ns, "--wait", "--timeout", "90s", "--no-hooks"]);
    const gone = async (path: string): Promise<boolean> =>
      rest.get(path, "probing").then(
        () => false,
        () => true,
      );
    expect(await gone(`/apis/apps/v1/namespaces/${ns}/deployments/${release}-traffic-mirror-operator`)).toBe(
      true,
    );
    expect(
      await gone(`/apis/apps/v1/namespaces/${ns}/daemonsets/${release}-traffic-mirror-operator-collector`),
    ).toBe(true);
    expect(
      await gone(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${release}-traffic-mirror-operator`),
    ).toBe(true);
    // CRDs stay (Helm never deletes them): policies in other namespaces keep their data.
    expect(
      await gone(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trafficmirrorpolicies.trafficmirror.twtech.io",
      ),
    ).toBe(false);
  });
});

describe("Helm chart and the namespace's Pod Security level", () => {
  const base = "tmo-chart-psa";
  const made: string[] = [];
  const makeNamespace = async (name: string, enforce?: string): Promise<void> => {
    await sh("kubectl", ["create", "namespace", name]);
    made.push(name);
    if (enforce)
      await sh("kubectl", ["label", "namespace", name, `pod-security.kubernetes.io/enforce=${enforce}`]);
  };
  /** `helm install` of a release named after the namespace; `--dry-run=server` still runs `lookup`. */
  const install = (namespace: string, ...extra: string[]): string[] => [
    "install",
    namespace,
    CHART_DIR,
    "-n",
    namespace,
    "-f",
    CI_VALUES,
    ...extra,
  ];
  const LABEL_FIX = (namespace: string): string =>
    `kubectl label namespace ${namespace} pod-security.kubernetes.io/enforce=privileged`;

  beforeAll(async () => {
    await makeNamespace(`${base}-baseline`, "baseline");
    await makeNamespace(`${base}-restricted`, "restricted");
    await makeNamespace(`${base}-privileged`, "privileged");
    await makeNamespace(`${base}-unlabelled`);
  });

  afterAll(async () => {
    for (const n of made)
      await sh("kubectl", ["delete", "namespace", n, "--wait=false", "--ignore-not-found"]).catch(
        () => undefined,
      );
  });

  it("is needed: the apiserver refuses the collector's pod below privileged, and admits the operator's at restricted", async () => {
    const objs = await helmTemplate();
    const podOf = (kind: string, namespace: string): string =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `psa-${kind.toLowerCase()}`, namespace },
        // Without the release's ServiceAccount, which Pod Security does not look at.
        spec: { ...podSpec(objs, kind), serviceAccountName: undefined },
      });
    const create = (kind: string, namespace: string): Promise<string | undefined> =>
      failure("kubectl", ["create", "--dry-run=server", "-f", "-"], podOf(kind, namespace));
    expect(await create("DaemonSet", `${base}-baseline`)).toMatch(
      /violates PodSecurity "baseline:latest": host namespaces \(hostNetwork=true\)/,
    );
    expect(await create("DaemonSet", `${base}-privileged`)).toBeUndefined();
    expect(await create("Deployment", `${base}-restricted`)).toBeUndefined();
  });

  it("refuses to install into a namespace that enforces baseline or restricted, saying how to fix it", async () => {
    for (const level of ["baseline", "restricted"]) {
      const namespace = `${base}-${level}`;
      const why = await failure("helm", install(namespace));
      expect(why, level).toMatch(
        new RegExp(
          `namespace ${namespace} enforces Pod Security "${level}" \\(label pod-security.kubernetes.io/enforce\\)`,
        ),
      );
      expect(why, level).toContain(`${LABEL_FIX(namespace)} --overwrite`);
      expect(why, level).toMatch(/collector.enabled=false.*collector.podSecurityCheck=false/);
      expect(await failure("helm", ["status", namespace, "-n", namespace]), level).toMatch(
        /release: not found/,
      );
      const ds = await sh("kubectl", ["-n", namespace, "get", "daemonsets", "-o", "name"]);
      expect(ds.stdout, level).toBe("");
    }
  });

  it("installs there without the collector, or with the check off for an exempted namespace", async () => {
    const namespace = `${base}-baseline`;
    await sh("helm", install(namespace, "--dry-run=server", "--set", "collector.enabled=false"));
    await sh("helm", install(namespace, "--dry-run=server", "--set", "collector.podSecurityCheck=false"));
  });

  it("installs into a privileged namespace with no Pod Security hint in the notes", async () => {
    const { stdout } = await sh("helm", install(`${base}-privileged`, "--dry-run=server"));
    expect(stdout).toMatch(/^NOTES:/m);
    expect(stdout).not.toContain("Pod Security");
  });

  it("says in the notes how to label an unlabelled namespace, as --create-namespace makes it", async () => {
    const unlabelled = `${base}-unlabelled`;
    const existing = await sh("helm", install(unlabelled, "--dry-run=server"));
    expect(existing.stdout).toContain(
      `namespace ${unlabelled} has no pod-security.kubernetes.io/enforce label`,
    );
    expect(existing.stdout).toContain(LABEL_FIX(unlabelled));
    // Helm renders before it creates the namespace: a first install with --create-namespace sees none.
    const fresh = `${base}-fresh`;
    const created = await sh("helm", install(fresh, "--dry-run=server", "--create-namespace"));
    expect(created.stdout).toContain(LABEL_FIX(fresh));
  });
});
