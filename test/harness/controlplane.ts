/**
 * A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, real certificates and
 * service-account keys), kube-scheduler, kube-controller-manager and kwok, from the pinned tools in
 * `.tools/bin`. Used by the integration tests' global setup and by `make sandbox-up`.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer, type AddressInfo, type Server } from "node:net";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { makePki, type Pki } from "./certs.ts";
import { startProcess, stopProcess, type Managed } from "./processes.ts";

/** The repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** Where `make tools` links the pinned binaries. */
export const TOOLS_BIN = join(REPO_ROOT, ".tools", "bin");

/** A running control plane. */
export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  server: string;
  /** An admin (system:masters) kubeconfig. */
  kubeconfigPath: string;
  /** The admin bearer token. */
  adminToken: string;
  /** Writes a kubeconfig for another user (already in the token file). */
  userKubeconfig(user: string): string;
  stateDir: string;
  pki: Pki;
  /** Stops the apiserver, waits `downMs`, starts it again on the same port and waits until ready. */
  restartApiserver(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** What `startControlPlane` needs. */
export interface ControlPlaneOptions {
  /** A directory of its own; created if missing. */
  stateDir: string;
  /** Extra users (name → groups) given tokens, for RBAC tests. */
  users?: Record<string, string[]>;
  /** Start kube-scheduler, kube-controller-manager and kwok too (default true). */
  full?: boolean;
  log?: (msg: string) => void;
}

function tool(name: string): string {
  const p = join(TOOLS_BIN, name);
  if (!existsSync(p)) throw new Error(`${p} is missing: run \`make tools\` first`);
  return p;
}

/** Finds `n` distinct free TCP ports on 127.0.0.1. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((res, rej) => {
          const s = createServer();
          s.once("error", rej);
          s.listen(0, "127.0.0.1", () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  return ports;
}

interface Probe {
  url: string;
  ca?: string;
  token?: string;
}

/** One GET; resolves to the status code, or 0 when nothing answered. */
function probe(p: Probe): Promise<number> {
  return new Promise((res) => {
    const opts = {
      ca: p.ca,
      headers: p.token ? { authorization: `Bearer ${p.token}` } : {},
      timeout: 2_000,
    };
    const req = (p.url.startsWith("https:") ? request : httpRequest)(p.url, opts, (r) => {
      r.resume();
      res(r.statusCode ?? 0);
    });
    req.on("error", () => res(0));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

/** Polls until `p` answers 200, the process died, or the deadline passed. */
async function waitReady(p: Probe, m: Managed, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (m.child.exitCode !== null) {
      throw new Error(`${m.name} exited with ${m.child.exitCode}; see ${m.logPath}:\n${tail(m.logPath)}`);
    }
    if ((await probe(p)) === 200) return;
    await sleep(200);
  }
  throw new Error(
    `${m.name} not ready at ${p.url} after ${timeoutMs} ms; see ${m.logPath}:\n${tail(m.logPath)}`,
  );
}

function tail(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
}

function kubeconfig(opts: { server: string; ca: string; user: string; token: string }): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "tmo", cluster: { server: opts.server, "certificate-authority": opts.ca } }],
    users: [{ name: opts.user, user: { token: opts.token } }],
    contexts: [{ name: "tmo", context: { cluster: "tmo", user: opts.user } }],
    "current-context": "tmo",
  });
}

function startEtcd(stateDir: string, clientPort: number, peerPort: number): Managed {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return startProcess({
    name: "etcd",
    command: tool("etcd"),
    stateDir,
    args: [
      `--data-dir=${join(stateDir, "etcd")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=default=${peer}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
    ],
  });
}

interface ApiserverArgs {
  stateDir: string;
  pki: Pki;
  etcdPort: number;
  port: number;
  tokenFile: string;
}

function startApiserver(a: ApiserverArgs): Managed {
  return startProcess({
    name: "kube-apiserver",
    command: tool("kube-apiserver"),
    stateDir: a.stateDir,
    args: [
      `--etcd-servers=http://127.0.0.1:${a.etcdPort}`,
      `--secure-port=${a.port}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--cert-dir=${join(a.stateDir, "apiserver-certs")}`,
      `--tls-cert-file=${a.pki.serverCert}`,
      `--tls-private-key-file=${a.pki.serverKey}`,
      `--client-ca-file=${a.pki.caCert}`,
      "--service-cluster-ip-range=10.96.0.0/16",
      "--authorization-mode=RBAC",
      `--token-auth-file=${a.tokenFile}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${a.pki.saPub}`,
      `--service-account-signing-key-file=${a.pki.saKey}`,
      "--allow-privileged=true",
      "--v=1",
    ],
  });
}

function startHelpers(stateDir: string, pki: Pki, kc: string): Managed[] {
  return [
    startProcess({
      name: "kube-scheduler",
      command: tool("kube-scheduler"),
      stateDir,
      args: [`--kubeconfig=${kc}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
    }),
    startProcess({
      name: "kube-controller-manager",
      command: tool("kube-controller-manager"),
      stateDir,
      args: [
        `--kubeconfig=${kc}`,
        "--leader-elect=false",
        "--secure-port=0",
        `--service-account-private-key-file=${pki.saKey}`,
        `--root-ca-file=${pki.caCert}`,
        "--use-service-account-credentials=false",
        "--v=1",
      ],
    }),
    startProcess({
      name: "kwok",
      command: tool("kwok"),
      stateDir,
      args: [
        `--kubeconfig=${kc}`,
        // Only the fake nodes (every fixture node carries this annotation): a real kubelet may join
        // this control plane too (test/harness/real-node.ts).
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        `--config=${join(REPO_ROOT, "test", "harness", "kwok-config.yaml")}`,
        `--config=${join(REPO_ROOT, "test", "harness", "kwok-stages.yaml")}`,
      ],
    }),
  ];
}

/** Starts the control plane and waits until the apiserver is ready. */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const { stateDir } = opts;
  const log = opts.log ?? (() => {});
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stateDir, "owner.pid"), String(process.pid));
  const pki = makePki(stateDir);
  const adminToken = randomBytes(24).toString("hex");
  const tokens = new Map<string, { token: string; groups: string[] }>([
    ["admin", { token: adminToken, groups: ["system:masters"] }],
  ]);
  for (const [user, groups] of Object.entries(opts.users ?? {})) {
    tokens.set(user, { token: randomBytes(24).toString("hex"), groups });
  }
  const tokenFile = join(stateDir, "tokens.csv");
  writeFileSync(
    tokenFile,
    [...tokens].map(([u, t]) => `${t.token},${u},${u},"${t.groups.join(",")}"`).join("\n") + "\n",
    { mode: 0o600 },
  );
  const [etcdPort, peerPort, apiPort] = (await freePorts(3)) as [number, number, number];
  const procs: Managed[] = [];
  const stopAll = async (): Promise<void> => {
    for (const m of procs.reverse()) await stopProcess(m);
    procs.length = 0;
  };
  try {
    const etcd = startEtcd(stateDir, etcdPort, peerPort);
    procs.push(etcd);
    await waitReady({ url: `http://127.0.0.1:${etcdPort}/health` }, etcd, 30_000);
    log(`etcd ready on ${etcdPort}`);
    const api = startApiserver({ stateDir, pki, etcdPort, port: apiPort, tokenFile });
    procs.push(api);
    const server = `https://127.0.0.1:${apiPort}`;
    const ca = readFileSync(pki.caCert, "utf8");
    await waitReady({ url: `${server}/readyz`, ca, token: adminToken }, api, 90_000);
    log(`kube-apiserver ready at ${server}`);
    const userKubeconfig = (user: string): string => {
      const t = tokens.get(user);
      if (!t) throw new Error(`no token for user ${user}`);
      const path = join(stateDir, `kubeconfig-${user}`);
      writeFileSync(path, kubeconfig({ server, ca: pki.caCert, user, token: t.token }), { mode: 0o600 });
      return path;
    };
    const kubeconfigPath = join(stateDir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig({ server, ca: pki.caCert, user: "admin", token: adminToken }), {
      mode: 0o600,
    });
    if (opts.full !== false) procs.push(...startHelpers(stateDir, pki, kubeconfigPath));
    const restartApiserver = async (downMs = 0): Promise<void> => {
      const i = procs.findIndex((m) => m.name === "kube-apiserver");
      await stopProcess(procs[i]!);
      await sleep(downMs);
      const again = startApiserver({ stateDir, pki, etcdPort, port: apiPort, tokenFile });
      procs[i] = again;
      await waitReady({ url: `${server}/readyz`, ca, token: adminToken }, again, 90_000);
    };
    return {
      server,
      kubeconfigPath,
      adminToken,
      userKubeconfig,
      stateDir,
      pki,
      restartApiserver,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
