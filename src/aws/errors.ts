/**
 * AWS error codes grouped into named sets, with helpers, so callers branch on meaning rather than
 * on strings. Codes from the EC2 API reference and the Traffic Mirroring guide.
 */

/** The error code of an SDK error (`name` on SDK v3 service exceptions), if any. */
export function errorCode(err: unknown): string | undefined {
  const e = err as { name?: string; Code?: string; code?: string } | undefined;
  return e?.Code ?? e?.code ?? e?.name;
}

/** HTTP status of an SDK error, if any. */
export function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

const NOT_FOUND = new Set([
  "InvalidTrafficMirrorSessionId.NotFound",
  "InvalidTrafficMirrorTargetId.NotFound",
  "InvalidTrafficMirrorFilterId.NotFound",
  "InvalidTrafficMirrorFilterRuleId.NotFound",
  "InvalidNetworkInterfaceID.NotFound",
  "InvalidInstanceID.NotFound",
]);
const THROTTLED = new Set(["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"]);
const LIMIT = new Set([
  "TrafficMirrorSessionsPerInterfaceLimitExceeded",
  "TrafficMirrorSessionsPerTargetLimitExceeded",
  "TrafficMirrorSourcesPerTargetLimitExceeded",
  "TrafficMirrorSessionLimitExceeded",
  "TrafficMirrorFilterLimitExceeded",
  "TrafficMirrorFilterRuleLimitExceeded",
  "TrafficMirrorTargetLimitExceeded",
]);
const IN_USE = new Set(["TrafficMirrorFilterInUse", "TrafficMirrorTargetInUseException"]);
const UNAUTHORIZED = new Set([
  "UnauthorizedOperation",
  "AuthFailure",
  "AccessDenied",
  "AccessDeniedException",
]);

/** The resource does not exist (already deleted, or not yet visible). */
export const isNotFound = (err: unknown): boolean => NOT_FOUND.has(errorCode(err) ?? "");
/** AWS throttled the call. */
export const isThrottled = (err: unknown): boolean => THROTTLED.has(errorCode(err) ?? "");
/** An AWS quota was reached. */
export const isLimitExceeded = (err: unknown): boolean => LIMIT.has(errorCode(err) ?? "");
/** The resource is used by another and cannot be deleted yet. */
export const isInUse = (err: unknown): boolean => IN_USE.has(errorCode(err) ?? "");
/** A ClientToken was reused with other parameters. */
export const isIdempotencyMismatch = (err: unknown): boolean =>
  errorCode(err) === "IdempotentParameterMismatch";
/** The credentials may not do this. */
export const isUnauthorized = (err: unknown): boolean => UNAUTHORIZED.has(errorCode(err) ?? "");
/** A DryRun call that would have succeeded. */
export const isDryRunOk = (err: unknown): boolean => errorCode(err) === "DryRunOperation";
/**
 * A request that may not have reached EC2 or whose answer was lost: the connection reset, refused
 * or timed out, or the name did not resolve (Node's socket error codes; the SDK's `TimeoutError`).
 * The operator's writes are safe to repeat (creates carry a ClientToken, a delete of what is gone
 * is done, a rule modify sets absolute values).
 */
const NETWORK = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "TimeoutError",
]);
/** The request failed on the way, not at EC2. */
export const isNetworkError = (err: unknown): boolean => NETWORK.has(errorCode(err) ?? "");

/** Worth retrying: throttling, a server-side failure, or a connection that failed on the way. */
export const isRetryable = (err: unknown): boolean => {
  const status = httpStatus(err) ?? 0;
  return (
    isThrottled(err) ||
    status >= 500 ||
    errorCode(err) === "InternalError" ||
    errorCode(err) === "ServiceUnavailable" ||
    isNetworkError(err)
  );
};
