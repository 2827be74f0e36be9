/** Putting a plan's sessions and filters in key order, and choosing session VNIs. */
import type { MirrorFilter } from "../api/inventory.ts";
import { byString, Hash53 } from "./hash.ts";
import type { Outcome } from "./model.ts";
import { sortSmall } from "./sort.ts";
import type { DesiredFilter } from "./types.ts";

/**
 * Keys the plan makes per group on an ENI: a fixed prefix, the ENI id, "-", the group's hash (all
 * of one length). `eni[i]`, `hash[i]` are the pieces of `key(i)`.
 */
export interface PieceKeys {
  eni: readonly string[];
  hash: readonly string[];
  key: (i: number) => string;
}

/**
 * `byString` of two such keys from their pieces, without joining (and flattening) them: the same
 * ENI leaves the hashes to decide; different ENIs decide at their first differing character, unless
 * one id is a prefix of the other, when the whole keys are compared.
 */
function comparePieces(k: PieceKeys, a: number, b: number): number {
  const ea = k.eni[a]!;
  const eb = k.eni[b]!;
  if (ea === eb) return byString(k.hash[a]!, k.hash[b]!);
  if (ea.startsWith(eb) || eb.startsWith(ea)) return byString(k.key(a), k.key(b));
  return byString(ea, eb);
}

/**
 * Positions of the keys in ascending order, as a stable sort gives them. Keys come in runs (one
 * per ENI, ENIs in order) that mostly join up once each short run is sorted: then a check of the
 * joins replaces sorting tens of thousands of keys. If the joined runs are not strictly
 * ascending, a full stable sort decides.
 */
export function keyOrder(k: PieceKeys, runStarts: readonly number[]): number[] {
  const n = k.eni.length;
  const order: number[] = [];
  runStarts.forEach((start, r) => {
    const end = runStarts[r + 1] ?? n;
    if (end - start === 1) order.push(start);
    else if (end > start) {
      const run: number[] = [];
      for (let i = start; i < end; i++) run.push(i);
      sortSmall(run, (a, b) => comparePieces(k, a, b));
      for (const i of run) order.push(i);
    }
  });
  let ascending = order.length === n;
  for (let i = 1; ascending && i < n; i++) ascending = comparePieces(k, order[i - 1]!, order[i]!) < 0;
  if (ascending) return order;
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => byString(k.key(a), k.key(b)));
}

/**
 * Merges two lists of filters, each sorted by distinct keys (no key in both), carrying along the
 * owned filter found for each.
 */
export function mergeFilters(
  a: readonly { filter: DesiredFilter; existing: MirrorFilter | undefined }[],
  b: readonly { filter: DesiredFilter; existing: MirrorFilter | undefined }[],
): { filters: DesiredFilter[]; existing: (MirrorFilter | undefined)[] } {
  const filters: DesiredFilter[] = [];
  const existing: (MirrorFilter | undefined)[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x =
      j >= b.length || (i < a.length && byString(a[i]!.filter.key, b[j]!.filter.key) < 0) ? a[i++]! : b[j++]!;
    filters.push(x.filter);
    existing.push(x.existing);
  }
  return { filters, existing };
}

/**
 * Deterministic, stable VNIs: an existing session keeps its VNI; new ones hash their key. Returns
 * the positions of `out.sessions` in key order.
 */
export function assignVnis(out: Outcome): number[] {
  const { sessions, existing } = out;
  const used = new Set<number>();
  const order = keyOrder(
    {
      eni: out.groups.map((g) => g.eni.networkInterfaceId),
      hash: out.groups.map((g) => g.hash),
      key: (i) => sessions[i]!.key,
    },
    out.sessionRuns,
  );
  const pending: number[] = [];
  for (const i of order) {
    const s = sessions[i]!;
    const vni = existing[i]?.virtualNetworkId;
    if (vni !== undefined && vni > 0 && !used.has(vni)) {
      s.virtualNetworkId = vni;
      used.add(vni);
    } else {
      pending.push(i);
    }
  }
  for (const i of pending) {
    const s = sessions[i]!;
    const g = out.groups[i]!;
    // hash53(s.key), fed the pieces the key was made of.
    const h = new Hash53().add("session-").add(g.eni.networkInterfaceId).add("-").add(g.hash).value();
    let vni = (h % 0xfffffe) + 1;
    while (used.has(vni)) vni = (vni % 0xfffffe) + 1;
    s.virtualNetworkId = vni;
    used.add(vni);
  }
  return order;
}
