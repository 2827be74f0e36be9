/**
 * A small JSON REST client over a KubeConfig: the operator lists in pages, patches status and
 * finalizers, and reads custom resources without deserialising into generated classes, so that a
 * page of pods can be turned into lean copies and dropped.
 */
import { request } from "node:https";
import { request as httpRequest, type RequestOptions } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node";

/** An error answer of the apiserver. */
export class ApiError extends Error {
  /** HTTP status code. */
  readonly statusCode: number;
  /** The `reason` of the Status object (e.g. `Conflict`, `NotFound`, `Expired`). */
  readonly reason: string | undefined;
  constructor(opts: { statusCode: number; reason?: string; message: string; what: string }) {
    super(`${opts.what}: ${opts.statusCode} ${opts.message}`);
    this.statusCode = opts.statusCode;
    this.reason = opts.reason;
  }
}

/** Whether an error is an apiserver answer with this status code. */
export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiError && err.statusCode === code;
}

/** A request of `KubeRest.request`. */
export interface RestRequest {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  body?: unknown;
  contentType?: string;
  /** What is being done, for error messages ("patching status of ns/name"). */
  what: string;
}

/**
 * The User-Agent of the operator's requests. The apiserver takes its first word as the field
 * manager of what a request writes, so `managedFields` show that the operator owns only status
 * and finalizers (Argo CD and other GitOps tools see no drift in spec).
 */
export const OPERATOR_USER_AGENT = "traffic-mirror-operator/0.1.0";

/** JSON over HTTPS with the KubeConfig's credentials. */
export class KubeRest {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #userAgent: string;

  constructor(kc: KubeConfig, opts: { userAgent?: string } = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.#kc = kc;
    this.#server = new URL(cluster.server);
    this.#userAgent = opts.userAgent ?? OPERATOR_USER_AGENT;
  }

  /** Sends one request and parses the JSON answer. */
  async request<T>(req: RestRequest): Promise<T> {
    const url = new URL(req.path, this.#server);
    const opts: RequestOptions & { headers: Record<string, string> } = {
      method: req.method,
      headers: { accept: "application/json", "user-agent": this.#userAgent },
    };
    await this.#kc.applyToHTTPSOptions(opts);
    const payload = req.body === undefined ? undefined : JSON.stringify(req.body);
    if (payload !== undefined) {
      opts.headers["content-type"] = req.contentType ?? "application/json";
      opts.headers["content-length"] = String(Buffer.byteLength(payload));
    }
    const text = await send(url, opts, payload);
    if (text.status >= 400) throw toApiError(text.status, text.body, req.what);
    return (text.body ? JSON.parse(text.body) : {}) as T;
  }

  /** GET a path. */
  get<T>(path: string, what: string): Promise<T> {
    return this.request<T>({ method: "GET", path, what });
  }

  /** JSON merge patch. */
  mergePatch<T>(path: string, body: unknown, what: string): Promise<T> {
    return this.request<T>({
      method: "PATCH",
      path,
      body,
      contentType: "application/merge-patch+json",
      what,
    });
  }
}

function send(url: URL, opts: RequestOptions, payload?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === "https:" ? request : httpRequest)(
      url,
      { ...opts, timeout: 60_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request to ${url.pathname} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

function toApiError(statusCode: number, body: string, what: string): ApiError {
  try {
    const status = JSON.parse(body) as { reason?: string; message?: string };
    return new ApiError({ statusCode, reason: status.reason, message: status.message ?? body, what });
  } catch {
    return new ApiError({ statusCode, message: body.slice(0, 200), what });
  }
}
