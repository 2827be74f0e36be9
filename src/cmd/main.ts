#!/usr/bin/env node
/**
 * The one entry point of the image: `operator`, `collector`, `plan` or `uninstall-check` (the
 * chart's pre-delete hook). This directory is the only place that reads the environment and
 * constructs things; everything below takes dependencies.
 */
const commands: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  operator: () => import("./operator.ts"),
  plan: () => import("./plan.ts"),
  collector: () => import("./collector.ts"),
  "uninstall-check": () => import("./uninstall-check.ts"),
};

const [name, ...rest] = process.argv.slice(2);
const load = name ? commands[name] : undefined;
if (!load) {
  console.error(`usage: traffic-mirror-operator <${Object.keys(commands).join("|")}> [options]`);
  process.exit(2);
}
try {
  const mod = await load();
  process.exitCode = await mod.run(rest);
} catch (err) {
  // Bad configuration and the like: one clear line, no stack trace.
  console.error(`traffic-mirror-operator ${name}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
