/** `collector`: the decap collector (not built yet: see the collector issue). */
export function run(_argv: string[]): Promise<number> {
  console.error(
    "The collector command is not available in this version: the decap collector is still being built.",
  );
  return Promise.resolve(2);
}
