/**
 * In-place stable sort for the planner's many short lists (a session's members, an ENI's groups,
 * a session's owners). `Array.prototype.sort` allocates working arrays on every call, which at
 * 45,000 calls per plan was a quarter of the plan's garbage; insertion sort on a few elements
 * allocates nothing. Longer lists go to the built-in sort. Both are stable, so the order is the
 * same either way.
 */
export function sortSmall<T>(xs: T[], cmp: (a: T, b: T) => number): T[] {
  const n = xs.length;
  if (n > 16) return xs.sort(cmp);
  for (let i = 1; i < n; i++) {
    const x = xs[i]!;
    let j = i - 1;
    while (j >= 0 && cmp(xs[j]!, x) > 0) {
      xs[j + 1] = xs[j]!;
      j--;
    }
    xs[j + 1] = x;
  }
  return xs;
}
