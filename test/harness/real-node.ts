/**
 * A real node beside the kwok nodes: the pinned kubelet with containerd 2.x and runc joins a test
 * control plane, so the chart's pods run as real containers. Pods reach the apiserver (which
 * listens on 127.0.0.1) by the `kubernetes` Service address and the EC2 emulator by the pod
 * network's gateway, through DNAT on the host (there is no kube-proxy).
 *
 * It changes the host: iptables rules, sysctls, the cni0 bridge, mounts, network namespaces and
 * cgroups. What it finds is saved first (`host.json` in its state directory) and restored by
 * `stop()`; a run that was killed is undone by the next one before it starts. One real node per
 * machine (fixed ports 10250 and 10248, and the pods' host ports): a lock file serialises runs.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { TOOLS_BIN } from "./controlplane.ts";
import { startProcess, stopProcess, type Managed } from "./processes.ts";

/** Label of the real node; the chart's pods select it. */
export const REAL_NODE_LABEL = { "tmo.test/real-node": "true" } as const;
/** Taint of the real node, so that only pods that mean to run there do (other suites' DaemonSets stay off). */
export const REAL_NODE_TAINT = { key: "tmo.test/real-node", value: "true", effect: "NoSchedule" } as const;
/** The pod network of the real node; its first address is the bridge (the pods' gateway). */
export const POD_CIDR = "10.244.0.0/24";
export const POD_GATEWAY = "10.244.0.1";
/** The `kubernetes` Service address pods are given (the apiserver's certificate names it). */
const SERVICE_IP = "10.96.0.1";
const PAUSE_IMAGE = "localhost/tmo-pause:1";
/** Comment on every iptables rule added here. */
const RULE_TAG = "tmo-real-node";
const SYSCTLS = [
  "net.ipv4.ip_forward",
  "net.ipv4.conf.all.route_localnet",
  // The kubelet sets these three (protectKernelDefaults is off).
  "vm.overcommit_memory",
  "kernel.panic",
  "kernel.panic_on_oops",
];
const IPT_TABLES = ["nat", "filter", "mangle"];

/** Where the real node keeps its state; fixed, so that a later run finds what a killed one left. */
export const REAL_NODE_DIR = join(tmpdir(), "tmo-real-node");
const RUN_DIR = "/run/tmo-real-node";
const SOCK = join(RUN_DIR, "containerd.sock");
const LOCK = "/run/lock/tmo-real-node.lock";

/** What the host looked like before the real node, to put back. */
interface HostState {
  sysctls: Record<string, string>;
  iptables: Record<string, string[]>;
  cni0: boolean;
  netns: string[];
  cgroups: string[];
}

/** Why a real node cannot run on this machine, or undefined when it can. */
export function realNodeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (iptables, mounts, cgroups, a kubelet)";
  if (!existsSync("/sys/fs/cgroup/memory") && !existsSync("/sys/fs/cgroup/cgroup.controllers"))
    return "no cgroups mounted at /sys/fs/cgroup";
  const tools = ["kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "podman"];
  const missing = tools.filter((t) => !existsSync(join(TOOLS_BIN, t)));
  if (missing.length > 0)
    return `${missing.join(", ")} missing: run \`bash test/tools/install.sh real-node\` (as root)`;
  if (!existsSync("/usr/lib/cni/bridge"))
    return "no CNI plugins in /usr/lib/cni (Debian: containernetworking-plugins)";
  return undefined;
}

/** A running real node. */
export interface RealNode {
  name: string;
  ip: string;
  /** Kubelet and containerd logs. */
  stateDir: string;
  /** Undoes everything: pods, processes, host changes. */
  stop(): Promise<void>;
}

/** What `startRealNode` needs. */
export interface RealNodeOptions {
  /** https://127.0.0.1:PORT */
  server: string;
  /** An admin kubeconfig. */
  kubeconfigPath: string;
  /** The control plane's CA, which signs the kubelet's client certificate. */
  caCert: string;
  caKey: string;
  /** podman images to hand to containerd. */
  images: string[];
  /** Loopback TCP ports pods reach at POD_GATEWAY (e.g. the EC2 emulator's). */
  gatewayPorts?: number[];
  log?: (msg: string) => void;
}

const run = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
const tryRun = (cmd: string, args: string[]): boolean => {
  try {
    run(cmd, args);
    return true;
  } catch {
    return false;
  }
};
const bin = (t: string): string => join(TOOLS_BIN, t);
const ctr = (...args: string[]): string => run(bin("ctr"), ["--address", SOCK, "-n", "k8s.io", ...args]);

/** Takes the machine-wide lock; resolves to its holder process (the lock lives as long as it does). */
async function lock(log: (m: string) => void): Promise<ChildProcess> {
  mkdirSync("/run/lock", { recursive: true });
  // One process holds the lock (sh execs into sleep, keeping the descriptor flock locked), and
  // it dies with this one.
  const holder = spawn(
    "setpriv",
    [
      ...["--pdeathsig", "SIGKILL", "--", "sh", "-c"],
      `exec 9>>${LOCK} && flock -w 500 9 && echo locked && exec sleep 2147483647`,
    ],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  let waited = false;
  const timer = setTimeout(() => {
    waited = true;
    log("waiting for another real node run to finish");
  }, 1_000);
  await new Promise<void>((res, rej) => {
    holder.stdout.once("data", () => res());
    holder.once("exit", () => rej(new Error(`could not take ${LOCK}`)));
  });
  clearTimeout(timer);
  if (waited) log("lock taken");
  return holder;
}

function sysctl(key: string): string {
  return run("sysctl", ["-n", key]).trim();
}

function iptablesRules(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const ipt of ["iptables", "ip6tables"])
    for (const t of IPT_TABLES) out[`${ipt} ${t}`] = run(ipt, ["-w", "-t", t, "-S"]).trim().split("\n");
  return out;
}

function kubepodsCgroups(): string[] {
  const found: string[] = [];
  for (const c of readdirSync("/sys/fs/cgroup")) {
    const d = join("/sys/fs/cgroup", c);
    try {
      for (const e of readdirSync(d)) if (e.startsWith("kubepods")) found.push(join(d, e));
    } catch {
      // Not a directory (or a cgroup v2 file).
    }
  }
  return found;
}

function netns(): string[] {
  return existsSync("/run/netns") ? readdirSync("/run/netns") : [];
}

function snapshot(): HostState {
  return {
    sysctls: Object.fromEntries(SYSCTLS.map((k) => [k, sysctl(k)])),
    iptables: iptablesRules(),
    cni0: existsSync("/sys/class/net/cni0"),
    netns: netns(),
    cgroups: kubepodsCgroups(),
  };
}

/** Every pid in a cgroup tree. */
function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string): void => {
    try {
      for (const l of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) if (l) pids.push(Number(l));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      // Gone meanwhile.
    }
  };
  walk(dir);
  return pids;
}

function rmdirTree(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) rmdirTree(join(dir, e.name));
    execFileSync("rmdir", [dir], { stdio: "ignore" });
  } catch {
    // Busy or gone: reported by the check of the caller.
  }
}

/** Processes whose command line names `marker`. */
function pidsNaming(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0").includes(marker)) out.push(Number(e));
    } catch {
      // Exited.
    }
  }
  return out;
}

function killAll(pids: number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Unmounts what the node mounted (containers' roots, volumes, pod network namespaces). */
function unmountOurs(before: HostState): void {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter(
      (m) =>
        m.startsWith(`${REAL_NODE_DIR}/`) ||
        m.startsWith(`${RUN_DIR}/`) ||
        (m.startsWith("/run/netns/") && !before.netns.includes(m.slice("/run/netns/".length))),
    )
    .sort()
    .reverse();
  for (const m of mounts) tryRun("umount", ["-l", m]);
}

/**
 * Removes the iptables rules that were not there before and are ours, the CNI plugins' or the
 * kubelet's; then their chains that were not there before.
 */
function removeAddedRules(before: HostState): void {
  const ours = (r: string): boolean => r.includes(RULE_TAG) || /\b(CNI|KUBE)-/.test(r);
  for (const [key, rules] of Object.entries(iptablesRules())) {
    const [ipt, table] = key.split(" ") as [string, string];
    const had = new Set(before.iptables[key] ?? []);
    for (const r of rules)
      if (r.startsWith("-A ") && !had.has(r) && ours(r))
        tryRun("sh", ["-c", `${ipt} -w -t ${table} ${r.replace(/^-A /, "-D ")}`]);
    for (const r of rules) {
      const chain = /^-N ((?:CNI|KUBE)-\S+)$/.exec(r)?.[1];
      if (chain && !had.has(r)) {
        tryRun(ipt, ["-w", "-t", table, "-F", chain]);
        tryRun(ipt, ["-w", "-t", table, "-X", chain]);
      }
    }
  }
}

/**
 * Puts the host back as `host.json` describes it: kills what is left of the node's processes and
 * containers, unmounts, removes the bridge, the iptables rules and chains and the cgroups that
 * were not there before, and restores the sysctls.
 */
export function restoreHost(log: (m: string) => void = () => {}): void {
  const file = join(REAL_NODE_DIR, "host.json");
  if (!existsSync(file)) return;
  const before = JSON.parse(readFileSync(file, "utf8")) as HostState;
  // Shims of this containerd (they outlive it), then whatever runs in the pods' cgroups.
  killAll(pidsNaming(SOCK));
  for (const c of kubepodsCgroups()) killAll(cgroupPids(c));
  unmountOurs(before);
  for (const n of netns()) if (!before.netns.includes(n)) rmSync(join("/run/netns", n), { force: true });
  if (!before.cni0) tryRun("ip", ["link", "del", "cni0"]);
  removeAddedRules(before);
  for (const c of kubepodsCgroups()) if (!before.cgroups.includes(c)) rmdirTree(c);
  for (const [k, v] of Object.entries(before.sysctls)) tryRun("sysctl", ["-qw", `${k}=${v}`]);
  rmSync(RUN_DIR, { recursive: true, force: true });
  for (const d of ["containerd", "kubelet", "cni-ipam"])
    rmSync(join(REAL_NODE_DIR, d), { recursive: true, force: true });
  rmSync(file);
  log("host restored");
}

/** What differs from the host as saved (empty when restored); for tests of the teardown. */
export function hostChanges(before: HostState): string[] {
  const now = snapshot();
  const out: string[] = [];
  for (const k of SYSCTLS)
    if (now.sysctls[k] !== before.sysctls[k]) out.push(`sysctl ${k}=${now.sysctls[k]}`);
  for (const [key, rules] of Object.entries(now.iptables)) {
    const had = new Set(before.iptables[key] ?? []);
    for (const r of rules) if (!had.has(r)) out.push(`${key}: ${r}`);
  }
  if (now.cni0 && !before.cni0) out.push("cni0");
  for (const n of now.netns) if (!before.netns.includes(n)) out.push(`netns ${n}`);
  for (const c of now.cgroups) if (!before.cgroups.includes(c)) out.push(`cgroup ${c}`);
  if (pidsNaming(SOCK).length > 0) out.push("containerd shims");
  return out;
}

/** The host pid of a container's first process (`containerd://<id>` of a pod's status). */
export function containerPid(containerId: string): number {
  const id = containerId.replace(/^containerd:\/\//, "");
  const line = ctr("tasks", "ls")
    .split("\n")
    .find((l) => l.startsWith(`${id} `));
  if (!line) throw new Error(`no task ${id} in containerd`);
  return Number(line.trim().split(/\s+/)[1]);
}

/** Reads the host as it is now (what `hostChanges` compares with). */
export const hostSnapshot = snapshot;

function nodeIp(): string {
  const m = / src (\d+\.\d+\.\d+\.\d+)/.exec(run("ip", ["-4", "route", "get", "1.1.1.1"]));
  if (!m) throw new Error("cannot find this machine's address (ip route get 1.1.1.1)");
  return m[1]!;
}

function writeConfigs(dir: string): void {
  writeFileSync(
    join(dir, "containerd.toml"),
    `version = 3
root = "${dir}/containerd"
state = "${RUN_DIR}/state"
[grpc]
  address = "${SOCK}"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  # Root may lack CAP_SYS_RESOURCE in a VM or container: negative OOM scores would fail.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "${bin("runc")}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${dir}/net.d"
`,
  );
  mkdirSync(join(dir, "net.d"), { recursive: true });
  writeFileSync(
    join(dir, "net.d", "10-tmo.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: RULE_TAG,
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: POD_CIDR, gateway: POD_GATEWAY }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(dir, "cni-ipam"),
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
        { type: "loopback" },
      ],
    }),
  );
  const cgroupV1 = !existsSync("/sys/fs/cgroup/cgroup.controllers");
  writeFileSync(
    join(dir, "kubelet.yaml"),
    `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
${cgroupV1 ? "# This machine mounts cgroup v1, which kubelet 1.35+ refuses unless told.\nfailCgroupV1: false\n" : ""}cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${SOCK}
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
failSwapOn: false
podLogsDir: ${dir}/pod-logs
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
registerWithTaints:
  - {key: ${REAL_NODE_TAINT.key}, value: "${REAL_NODE_TAINT.value}", effect: ${REAL_NODE_TAINT.effect}}
`,
  );
}

/** The kubelet's identity: a client certificate from the control plane's CA, O=system:nodes. */
function kubeletIdentity(dir: string, o: RealNodeOptions, name: string): string {
  const pki = join(dir, "pki");
  mkdirSync(pki, { recursive: true });
  const p = (f: string): string => join(pki, f);
  run("openssl", [
    "req",
    ...["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", p("kubelet.key"), "-out", p("kubelet.csr")],
    ...["-subj", `/O=system:nodes/CN=system:node:${name}`],
  ]);
  writeFileSync(p("client.ext"), "extendedKeyUsage=clientAuth\n");
  run("openssl", [
    ...["x509", "-req", "-in", p("kubelet.csr"), "-CA", o.caCert, "-CAkey", o.caKey, "-CAcreateserial"],
    ...["-out", p("kubelet.crt"), "-days", "2", "-extfile", p("client.ext")],
  ]);
  const kc = join(dir, "kubelet.kubeconfig");
  writeFileSync(
    kc,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "tmo", cluster: { server: o.server, "certificate-authority": o.caCert } }],
      users: [
        { name: "kubelet", user: { "client-certificate": p("kubelet.crt"), "client-key": p("kubelet.key") } },
      ],
      contexts: [{ name: "tmo", context: { cluster: "tmo", user: "kubelet" } }],
      "current-context": "tmo",
    }),
    { mode: 0o600 },
  );
  return kc;
}

/** The sandbox (pause) image, made from Debian's busybox-static: PID 1 of every pod, sleeping. */
function pauseImage(dir: string): void {
  if (tryRun(bin("podman"), ["image", "exists", PAUSE_IMAGE])) return;
  const root = join(dir, "pause-root");
  mkdirSync(root, { recursive: true });
  run("cp", ["/bin/busybox", join(root, "busybox")]);
  run("tar", ["-C", root, "-cf", join(dir, "pause.tar"), "busybox"]);
  run(bin("podman"), [
    "import",
    ...["--change", "USER 65535:65535"],
    ...["--change", 'ENTRYPOINT ["/busybox", "sleep", "2147483647"]'],
    join(dir, "pause.tar"),
    PAUSE_IMAGE,
  ]);
}

async function waitFor(what: string, ok: () => boolean, timeoutMs: number, logPath?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) {
      const tail =
        logPath && existsSync(logPath) ? readFileSync(logPath, "utf8").split("\n").slice(-20).join("\n") : "";
      throw new Error(`timed out waiting for ${what}${logPath ? `; ${logPath}:\n${tail}` : ""}`);
    }
    await sleep(250);
  }
}

/** Joins a real node to the control plane; see the file's comment. */
export async function startRealNode(o: RealNodeOptions): Promise<RealNode> {
  const why = realNodeUnavailable();
  if (why) throw new Error(`no real node here: ${why}`);
  const log = o.log ?? (() => {});
  const holder = await lock(log);
  const dir = REAL_NODE_DIR;
  const procs: Managed[] = [];
  const name = hostname();
  const kubectl = (...args: string[]): string =>
    run(bin("kubectl"), ["--kubeconfig", o.kubeconfigPath, ...args]);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const kubelet = procs.find((m) => m.name === "kubelet");
    if (kubelet && kubelet.child.exitCode === null) {
      // Pods first, while the kubelet runs, so that their networks are torn down by CNI.
      tryRun(bin("kubectl"), [
        ...[
          "--kubeconfig",
          o.kubeconfigPath,
          "delete",
          "pods",
          "-A",
          "--field-selector",
          `spec.nodeName=${name}`,
        ],
        ...["--grace-period=5", "--wait=true", "--timeout=60s"],
      ]);
      tryRun(bin("kubectl"), ["--kubeconfig", o.kubeconfigPath, "delete", "node", name, "--wait=false"]);
    }
    if (kubelet) await stopProcess(kubelet);
    if (existsSync(SOCK)) {
      // DaemonSet pods come back until the node is gone: stop what is left through containerd.
      try {
        for (const id of ctr("tasks", "ls", "-q").split("\n").filter(Boolean)) {
          tryRun(bin("ctr"), ["--address", SOCK, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id]);
          tryRun(bin("ctr"), ["--address", SOCK, "-n", "k8s.io", "tasks", "delete", "-f", id]);
        }
      } catch {
        // containerd is gone; the cgroups sweep below finds what is left.
      }
    }
    for (const m of procs.reverse()) await stopProcess(m);
    restoreHost(log);
    holder.kill("SIGKILL");
  };
  try {
    // What a killed run left, first.
    restoreHost(log);
    rmSync(join(dir, "pids.json"), { force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    mkdirSync(RUN_DIR, { recursive: true });
    writeFileSync(join(dir, "host.json"), JSON.stringify(snapshot()));
    writeFileSync(join(dir, "owner.pid"), String(process.pid));
    const ip = nodeIp();
    writeConfigs(dir);
    pauseImage(dir);

    const env = { ...process.env, PATH: `${TOOLS_BIN}:${process.env.PATH ?? ""}` };
    const containerd = startProcess({
      name: "containerd",
      command: bin("containerd"),
      args: ["--config", join(dir, "containerd.toml")],
      stateDir: dir,
      env,
    });
    procs.push(containerd);
    await waitFor(
      "containerd",
      () => tryRun(bin("ctr"), ["--address", SOCK, "version"]),
      30_000,
      containerd.logPath,
    );
    for (const image of [PAUSE_IMAGE, ...o.images]) {
      const archive = join(dir, "image.tar");
      rmSync(archive, { force: true });
      run(bin("podman"), ["save", "-q", "--format", "docker-archive", "-o", archive, image]);
      ctr("images", "import", archive);
      rmSync(archive);
    }
    log(`containerd ready with ${o.images.length + 1} images`);

    const kc = kubeletIdentity(dir, o, name);
    // The test apiserver authorizes by RBAC only (no Node authorizer): bind the node's user.
    run(
      bin("kubectl"),
      ["--kubeconfig", o.kubeconfigPath, "apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: `tmo-real-node:${name}` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:node" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: `system:node:${name}` }],
      }),
    );

    // Pods reach the apiserver by the Service address and the emulator by their gateway; both
    // listen on 127.0.0.1, which route_localnet lets a packet from cni0 reach.
    run("sysctl", ["-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.ip_forward=1"]);
    const apiPort = new URL(o.server).port;
    const dnat = (chain: string, match: string[], to: string): void => {
      const rule = [
        chain,
        ...match,
        "-m",
        "comment",
        "--comment",
        RULE_TAG,
        "-j",
        "DNAT",
        "--to-destination",
        to,
      ];
      run(bin("iptables"), ["-w", "-t", "nat", "-A", ...rule]);
    };
    const service = ["-d", `${SERVICE_IP}/32`, "-p", "tcp", "--dport", "443"];
    dnat("PREROUTING", ["-s", POD_CIDR, ...service], `127.0.0.1:${apiPort}`);
    dnat("OUTPUT", service, `127.0.0.1:${apiPort}`); // host-network pods
    for (const port of o.gatewayPorts ?? [])
      dnat(
        "PREROUTING",
        ["-s", POD_CIDR, "-d", `${POD_GATEWAY}/32`, "-p", "tcp", "--dport", String(port)],
        `127.0.0.1:${port}`,
      );

    log(`starting kubelet as ${name} (${ip})`);
    const labels = Object.entries(REAL_NODE_LABEL).map(([k, v]) => `${k}=${v}`);
    const kubelet = startProcess({
      name: "kubelet",
      command: bin("kubelet"),
      args: [
        `--config=${join(dir, "kubelet.yaml")}`,
        `--kubeconfig=${kc}`,
        `--root-dir=${join(dir, "kubelet")}`,
        // The host name: the apiserver reaches the kubelet (logs, exec) at the node's Hostname.
        `--hostname-override=${name}`,
        `--node-ip=${ip}`,
        `--node-labels=${labels.join(",")}`,
        "--v=1",
      ],
      stateDir: dir,
      env,
    });
    procs.push(kubelet);
    await waitFor(
      `node ${name} Ready`,
      () => {
        if (kubelet.child.exitCode !== null) throw new Error(`kubelet exited; see ${kubelet.logPath}`);
        try {
          const ready = kubectl(
            "get",
            "node",
            name,
            "-o",
            `jsonpath={.status.conditions[?(@.type=="Ready")].status}`,
          );
          return ready === "True";
        } catch {
          return false;
        }
      },
      120_000,
      kubelet.logPath,
    );
    log(`node ${name} Ready`);
    return { name, ip, stateDir: dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
