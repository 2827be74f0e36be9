/**
 * When a time-boxed policy ends: `spec.duration` counts from the policy's creationTimestamp (kept
 * by the apiserver, so the end survives operator restarts and does not move when the spec is
 * edited), `spec.expiresAt` is a fixed time; with both, the earlier one wins.
 */
import type { PolicySpec } from "./resources.ts";

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000 };

/** Milliseconds of a duration as the CRD admits it (`1h30m`, `10m`, `90s`), or undefined. */
export function parseDuration(text: string): number | undefined {
  if (!/^([0-9]+h)?([0-9]+m)?([0-9]+s)?$/.test(text) || text === "") return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/([0-9]+)([hms])/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms;
}

/** The end of a policy's mirroring and what set it, or undefined when it does not end. */
export function policyEnd(
  spec: Pick<PolicySpec, "duration" | "expiresAt">,
  createdAt: string | undefined,
): { atMs: number; by: "duration" | "expiresAt" } | undefined {
  const created = createdAt ? Date.parse(createdAt) : NaN;
  const ms = spec.duration ? parseDuration(spec.duration) : undefined;
  const fromDuration = ms !== undefined && Number.isFinite(created) ? created + ms : undefined;
  const fixed = spec.expiresAt ? Date.parse(spec.expiresAt) : NaN;
  const fromFixed = Number.isFinite(fixed) ? fixed : undefined;
  if (fromDuration === undefined && fromFixed === undefined) return undefined;
  if (fromFixed === undefined || (fromDuration !== undefined && fromDuration <= fromFixed))
    return { atMs: fromDuration!, by: "duration" };
  return { atMs: fromFixed, by: "expiresAt" };
}
