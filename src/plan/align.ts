/**
 * What changed between two lists of records that keep their identity while unchanged (the watch
 * caches' lean copies, the kept EC2 inventory's records): a walk in step, resynchronised by a short
 * look-ahead and, past a large gap, by an identity map. Costs one comparison per record when the
 * lists differ in a few places.
 */

/** Records removed from `prev` and added in `next` (by position); a record in both is unchanged. */
export interface Alignment {
  removed: number[];
  added: number[];
  /** For each position of `next`, the position of the same record in `prev`, or -1 when added. */
  from: Int32Array;
}

const LOOK_AHEAD = 8;

/**
 * Aligns `next` with `prev`, matching records by identity in order. Undefined once more than
 * `limit` records were removed or added (the caller does better starting over). A record moved
 * within the list counts as removed and added.
 */
export function align<T>(prev: readonly T[], next: readonly T[], limit: number): Alignment | undefined {
  const a: Alignment = { removed: [], added: [], from: new Int32Array(next.length) };
  const later: { map?: Map<T, number> } = {};
  let i = 0;
  for (let j = 0; j < next.length; j++) {
    if (i < prev.length && prev[i] === next[j]) {
      a.from[j] = i++;
      continue;
    }
    // A few records replaced in place (the common change): the lists agree again just after.
    const r = i < prev.length ? replacedRun(prev, next, i, j) : 0;
    for (let k = 0; k < r; k++) {
      a.removed.push(i + k);
      a.added.push(j + k);
      a.from[j + k] = -1;
    }
    if (r > 0) {
      i += r;
      j += r - 1;
    } else {
      const at = find(prev, next, { i, j }, later);
      if (at < 0) {
        a.from[j] = -1;
        a.added.push(j);
      } else {
        for (let q = i; q < at; q++) a.removed.push(q);
        a.from[j] = at;
        i = at + 1;
      }
    }
    if (a.removed.length + a.added.length > limit) return undefined;
  }
  for (let q = i; q < prev.length; q++) a.removed.push(q);
  return a.removed.length + a.added.length > limit ? undefined : a;
}

/**
 * Where `next[j]` is in `prev` at `i` or later: close by, or (unless `prev[i]` comes a little later
 * in `next`, so `next[j]` was inserted) through a map of positions made once; -1 if nowhere.
 */
function find<T>(
  prev: readonly T[],
  next: readonly T[],
  at: { i: number; j: number },
  later: { map?: Map<T, number> },
): number {
  const { i, j } = at;
  const x = next[j]!;
  for (let k = 1; k <= LOOK_AHEAD && i + k < prev.length; k++) if (prev[i + k] === x) return i + k;
  if (i >= prev.length || insertedBefore(next, j, prev[i]!)) return -1;
  later.map ??= positions(prev, i);
  const p = later.map.get(x);
  return p !== undefined && p >= i ? p : -1;
}

/** How many records from `prev[i]` and `next[j]` on were replaced one for one (0 if not so). */
function replacedRun<T>(prev: readonly T[], next: readonly T[], i: number, j: number): number {
  for (let r = 1; r <= LOOK_AHEAD; r++) {
    const endA = i + r >= prev.length;
    const endB = j + r >= next.length;
    if (endA && endB) return r;
    if (endA || endB) return 0;
    if (prev[i + r] === next[j + r]) return r;
  }
  return 0;
}

/** Whether `x` comes a little later in `next` (so `next[j]` was inserted before it). */
function insertedBefore<T>(next: readonly T[], j: number, x: T): boolean {
  for (let k = 1; k <= LOOK_AHEAD && j + k < next.length; k++) if (next[j + k] === x) return true;
  return false;
}

function positions<T>(xs: readonly T[], start: number): Map<T, number> {
  const m = new Map<T, number>();
  for (let q = start; q < xs.length; q++) m.set(xs[q]!, q);
  return m;
}

/**
 * Order marks for `next` that keep the marks of unchanged records and place each added record
 * between its neighbours, so marks compare as positions in `next` do. Undefined when two marks
 * can no longer be told apart (after many insertions at one place): then the caller renumbers.
 */
export function reorder(prevMarks: Float64Array, a: Alignment): Float64Array | undefined {
  const n = a.from.length;
  const marks = new Float64Array(n);
  let lo = 0;
  let j = 0;
  while (j < n) {
    const f = a.from[j]!;
    if (f >= 0) {
      marks[j] = prevMarks[f]!;
      if (j > 0 && !(marks[j]! > lo)) return undefined;
      lo = marks[j]!;
      j++;
      continue;
    }
    // A run of added records, up to the next unchanged one.
    let end = j;
    while (end < n && a.from[end]! < 0) end++;
    const hi = end < n ? prevMarks[a.from[end]!]! : lo + (end - j) + 1;
    // A run at the start has no lower neighbour: room below the first mark.
    if (j === 0) lo = hi - (end - j) - 1;
    const step = (hi - lo) / (end - j + 1);
    for (let k = j; k < end; k++) {
      const m = lo + step * (k - j + 1);
      if (!(m > (k === j ? lo : marks[k - 1]!)) || !(m < hi)) return undefined;
      marks[k] = m;
    }
    lo = marks[end - 1]!;
    j = end;
  }
  return marks;
}
