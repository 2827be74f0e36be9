/**
 * The plugin's view of the cluster, through the user's own kubeconfig and rights: policies,
 * targets, pods. Apiserver refusals become `UserError`s that say what the user may not do.
 */
import { API_VERSION, type PolicySpec, type PolicyStatus, type TargetSpec } from "../api/resources.ts";
import { ApiError, type KubeRest } from "../k8s/rest.ts";
import { UserError } from "./args.ts";

/** The plugin's User-Agent (and so the field manager of the policies it writes). */
export const PLUGIN_USER_AGENT = "kubectl-trafficmirror/0.1.0";
/** Label on the policies the plugin makes. */
export const CAPTURE_LABEL = "trafficmirror.twtech.io/capture";

/** A policy as the plugin reads it. */
export interface PolicyObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    finalizers?: string[];
    labels?: Record<string, string>;
  };
  spec: PolicySpec;
  status?: PolicyStatus;
}

/** A target as the plugin reads it. */
export interface TargetObject {
  metadata: { name: string };
  spec: TargetSpec;
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
}

/** A pod, as much as the plugin reads. */
export interface PodObject {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: {
    nodeName?: string;
    hostNetwork?: boolean;
    containers: { name: string; env?: { name: string; value?: string }[] }[];
  };
  status?: { phase?: string; podIP?: string };
}

/** Paths of the operator's kinds. */
export const paths = {
  policies: (ns?: string): string =>
    ns
      ? `/apis/${API_VERSION}/namespaces/${ns}/trafficmirrorpolicies`
      : `/apis/${API_VERSION}/trafficmirrorpolicies`,
  policy: (ns: string, name: string): string =>
    `/apis/${API_VERSION}/namespaces/${ns}/trafficmirrorpolicies/${name}`,
  targets: (): string => `/apis/${API_VERSION}/trafficmirrortargets`,
  target: (name: string): string => `/apis/${API_VERSION}/trafficmirrortargets/${name}`,
};

/**
 * Runs an apiserver call; a refusal becomes one sentence: `doing` says what was attempted
 * ("create TrafficMirrorPolicies in namespace shop").
 */
export async function asUser<T>(doing: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw explain(err, doing);
  }
}

function explainApiError(err: ApiError, doing: string): UserError {
  if (err.statusCode === 401)
    return new UserError(`the cluster did not accept your credentials (to ${doing})`);
  if (err.statusCode === 403) return new UserError(`you are not allowed to ${doing}`);
  if (
    err.statusCode === 404 &&
    /trafficmirror/.test(err.message) &&
    /the server could not find/i.test(err.message)
  )
    return new UserError("the traffic-mirror-operator's kinds are not installed in this cluster");
  const detail = /: \d+ (.*)$/.exec(err.message)?.[1] ?? err.message;
  return new UserError(`could not ${doing}: ${detail}`);
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ETIMEDOUT"]);

/** The sentence for an error of the apiserver or the connection to it. */
export function explain(err: unknown, doing: string): Error {
  if (err instanceof UserError) return err;
  if (err instanceof ApiError) return explainApiError(err, doing);
  // A WebSocket error event (a failed port-forward) is no Error but carries a message.
  const raw = (err as { message?: unknown } | undefined)?.message;
  const message = typeof raw === "string" ? raw : String(err);
  // A refused port-forward upgrade (the WebSocket handshake) carries only the HTTP status.
  const refused = /Unexpected server response: (40[13])/.exec(message)?.[1];
  if (refused === "403") return new UserError(`you are not allowed to ${doing}`);
  if (refused === "401") return new UserError(`the cluster did not accept your credentials (to ${doing})`);
  const code = (err as { code?: string } | undefined)?.code;
  if (code && NETWORK_CODES.has(code))
    return new UserError(`cannot reach the cluster's apiserver (${code}) to ${doing}`);
  return err instanceof Error ? err : new Error(message);
}

/** Whether an error is the apiserver's 404 for an object. */
export function isNotFound(err: unknown): boolean {
  return err instanceof ApiError && err.statusCode === 404;
}

/** Reads a policy, or undefined once it is gone. */
export async function readPolicy(
  rest: KubeRest,
  ns: string,
  name: string,
): Promise<PolicyObject | undefined> {
  try {
    return await rest.get<PolicyObject>(paths.policy(ns, name), `reading policy ${ns}/${name}`);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw explain(err, `read TrafficMirrorPolicy ${name} in namespace ${ns}`);
  }
}

/** The policy's Ready condition. */
export function readyOf(
  p: PolicyObject | undefined,
): { status: string; reason: string; message: string } | undefined {
  return p?.status?.conditions?.find((c) => c.type === "Ready");
}

/**
 * Whether the user may do something (a SelfSubjectAccessReview, which everyone may ask): checked
 * before a capture makes anything, so a missing right is one sentence and nothing to clean up.
 */
export async function mayI(
  rest: KubeRest,
  a: { verb: string; resource: string; group?: string; subresource?: string; namespace: string },
): Promise<boolean> {
  const review = await asUser("ask the apiserver what you may do", () =>
    rest.request<{ status?: { allowed?: boolean } }>({
      method: "POST",
      path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: { resourceAttributes: { group: "", ...a } },
      },
      what: "reviewing access",
    }),
  );
  return review.status?.allowed === true;
}
