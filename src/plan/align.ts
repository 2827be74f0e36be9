/**
 * What changed between two lists of records that keep their identity while unchanged (the watch
 * caches' lean copies, the kept EC2 inventory's records): a walk in step, resynchronised by a short
 * look-ahead and, past a large gap, by an identity map. Costs one comparison per record when the
 * lists differ in a few places.
 */

/** Records removed from `prev` and added in `next` (by position, ascending); a record in both is unchanged. */
export interface Alignment {
  removed: number[];
  added: number[];
}

const LOOK_AHEAD = 8;

/**
 * Aligns `next` with `prev`, matching records by identity in order. Undefined once more than
 * `limit` records were removed or added (the caller does better starting over). A record moved
 * within the list counts as removed and added. The common head and tail are skipped in a tight
 * loop first (a pod list of 100,000 changes at one or two places per event).
 */
export function align<T>(prev: readonly T[], next: readonly T[], limit: number): Alignment | undefined {
  const a: Alignment = { removed: [], added: [] };
  const shorter = Math.min(prev.length, next.length);
  let head = 0;
  while (head < shorter && prev[head] === next[head]) head++;
  let tail = 0;
  while (tail < shorter - head && prev[prev.length - 1 - tail] === next[next.length - 1 - tail]) tail++;
  const prevEnd = prev.length - tail;
  const nextEnd = next.length - tail;
  const later: { map?: Map<T, number> } = {};
  let i = head;
  for (let j = head; j < nextEnd; j++) {
    if (i < prevEnd && prev[i] === next[j]) {
      i++;
      continue;
    }
    // A few records replaced in place (the common change): the lists agree again just after.
    const r = i < prevEnd ? replacedRun(prev, next, { i, j, prevEnd, nextEnd }) : 0;
    for (let k = 0; k < r; k++) {
      a.removed.push(i + k);
      a.added.push(j + k);
    }
    if (r > 0) {
      i += r;
      j += r - 1;
    } else {
      const at = find(prev, next, { i, j, prevEnd, nextEnd }, later);
      if (at < 0) a.added.push(j);
      else {
        for (let q = i; q < at; q++) a.removed.push(q);
        i = at + 1;
      }
    }
    if (a.removed.length + a.added.length > limit) return undefined;
  }
  for (let q = i; q < prevEnd; q++) a.removed.push(q);
  return a.removed.length + a.added.length > limit ? undefined : a;
}

/** Where the walk stands, and where each list's unmatched middle ends. */
interface Walk {
  i: number;
  j: number;
  prevEnd: number;
  nextEnd: number;
}

/**
 * Where `next[j]` is in `prev` at `i` or later: close by, or (unless `prev[i]` comes a little later
 * in `next`, so `next[j]` was inserted) through a map of positions made once; -1 if nowhere.
 */
function find<T>(prev: readonly T[], next: readonly T[], at: Walk, later: { map?: Map<T, number> }): number {
  const { i, j, prevEnd, nextEnd } = at;
  const x = next[j]!;
  for (let k = 1; k <= LOOK_AHEAD && i + k < prevEnd; k++) if (prev[i + k] === x) return i + k;
  if (i >= prevEnd || insertedBefore(next, j, nextEnd, prev[i]!)) return -1;
  later.map ??= positions(prev, i, prevEnd);
  const p = later.map.get(x);
  return p !== undefined && p >= i ? p : -1;
}

/** How many records from `prev[i]` and `next[j]` on were replaced one for one (0 if not so). */
function replacedRun<T>(prev: readonly T[], next: readonly T[], at: Walk): number {
  const { i, j, prevEnd, nextEnd } = at;
  for (let r = 1; r <= LOOK_AHEAD; r++) {
    const endA = i + r >= prevEnd;
    const endB = j + r >= nextEnd;
    if (endA && endB) return r;
    if (endA || endB) return 0;
    if (prev[i + r] === next[j + r]) return r;
  }
  return 0;
}

/** Whether `x` comes a little later in `next` (so `next[j]` was inserted before it). */
function insertedBefore<T>(next: readonly T[], j: number, nextEnd: number, x: T): boolean {
  for (let k = 1; k <= LOOK_AHEAD && j + k < nextEnd; k++) if (next[j + k] === x) return true;
  return false;
}

function positions<T>(xs: readonly T[], start: number, end: number): Map<T, number> {
  const m = new Map<T, number>();
  for (let q = start; q < end; q++) m.set(xs[q]!, q);
  return m;
}

/**
 * Keeps `marks` (each record's order mark) in step with an alignment: forgets removed records and
 * places each run of added ones between its unchanged neighbours, so marks compare as positions in
 * `next` do. Costs the changed records only. False when two marks can no longer be told apart
 * (after many insertions at one place): then the caller renumbers.
 */
export function remark<T>(
  marks: Map<T, number>,
  prev: readonly T[],
  next: readonly T[],
  a: Alignment,
): boolean {
  for (const i of a.removed) marks.delete(prev[i]!);
  const added = a.added;
  for (let q = 0; q < added.length;) {
    // A run of added records, up to the next unchanged one.
    const j = added[q]!;
    let end = q + 1;
    while (end < added.length && added[end] === added[end - 1]! + 1) end++;
    const count = end - q;
    const after = j + count;
    let lo = j > 0 ? marks.get(next[j - 1]!) : undefined;
    let hi = after < next.length ? marks.get(next[after]!) : undefined;
    if (lo === undefined && hi === undefined) [lo, hi] = [0, count + 1];
    else if (lo === undefined) lo = hi! - count - 1;
    else if (hi === undefined) hi = lo + count + 1;
    const step = (hi! - lo) / (count + 1);
    let last = lo;
    for (let k = 0; k < count; k++) {
      const m = lo + step * (k + 1);
      if (!(m > last) || !(m < hi!)) return false;
      marks.set(next[j + k]!, m);
      last = m;
    }
    q = end;
  }
  return true;
}
