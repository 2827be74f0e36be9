// The image `make image` builds (config/image/Dockerfile): what ships in it, read from its root
// filesystem. The runtime dependencies and nothing of the development ones, no tests, the SBOM of
// `npm sbom` naming exactly what is in node_modules, and a non-root user.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../harness/controlplane.ts";
import { IMAGE, imageUnavailable, PODMAN as podman } from "../fixtures/image.ts";

const why = imageUnavailable();
if (why) console.warn(`image tests skipped: ${why}`);

/** Names of the packages under a node_modules directory, scoped ones included, recursively. */
function installed(dir: string, out = new Set<string>()): Set<string> {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    if (e.startsWith(".")) continue;
    const scoped = e.startsWith("@");
    for (const name of scoped ? readdirSync(join(dir, e)).map((s) => `${e}/${s}`) : [e]) {
      const pkg = join(dir, name);
      if (!existsSync(join(pkg, "package.json"))) continue;
      out.add(name);
      installed(join(pkg, "node_modules"), out);
    }
  }
  return out;
}

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" });
}

describe.skipIf(why !== undefined)("the image", () => {
  let root: string;
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };

  beforeAll(() => {
    root = execFileSync(podman, ["image", "mount", IMAGE], { encoding: "utf8" }).trim();
  });
  afterAll(() => {
    if (root) execFileSync(podman, ["image", "unmount", IMAGE]);
  });

  it("holds the runtime dependencies and none of the development ones", () => {
    const mods = installed(join(root, "app", "node_modules"));
    for (const d of Object.keys(pkg.dependencies)) expect(mods).toContain(d);
    // What only development needs, as the lock file marks it (a development dependency that a
    // runtime one needs too, such as @types/node, ships).
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev && path.startsWith("node_modules/"))
      .map(([path]) => path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length));
    expect(devOnly).toEqual(expect.arrayContaining(["vitest", "typescript", "eslint", "prettier"]));
    expect(devOnly.filter((d) => mods.has(d))).toEqual([]);
  });

  it("holds the sources and no tests", () => {
    const src = files(join(root, "app", "src"));
    expect(src).toContain(join("cmd", "main.ts"));
    expect(src.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
    expect(existsSync(join(root, "app", "test"))).toBe(false);
    expect(readdirSync(join(root, "app")).sort()).toEqual([
      "dist",
      "node_modules",
      "package.json",
      "sbom.cdx.json",
      "src",
    ]);
    // The collector's addon, built in its own stage: the binary only, not its sources.
    expect(files(join(root, "app", "dist"))).toEqual(["native", join("native", "batch-udp.node")]);
    expect(src.filter((f) => /\.(c|h|sh)$/.test(f))).toEqual([]);
  });

  it("ships an SBOM from npm sbom that names exactly what is in node_modules", () => {
    const sbom = JSON.parse(readFileSync(join(root, "app", "sbom.cdx.json"), "utf8")) as {
      bomFormat: string;
      components: { name: string; group?: string; version: string }[];
    };
    expect(sbom.bomFormat).toBe("CycloneDX");
    const named = new Set(sbom.components.map((c) => (c.group ? `${c.group}/${c.name}` : c.name)));
    expect([...named].sort()).toEqual([...installed(join(root, "app", "node_modules"))].sort());
  });

  it("runs node as the non-root user 65532 by default", () => {
    const cfg = JSON.parse(
      execFileSync(podman, ["image", "inspect", IMAGE, "--format", "{{json .Config}}"], { encoding: "utf8" }),
    ) as { User: string; Entrypoint: string[] };
    expect(cfg.User).toBe("65532:65532");
    expect(cfg.Entrypoint).toEqual(["node", "src/cmd/main.ts"]);
  });
});
