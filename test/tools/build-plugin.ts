/**
 * `make plugin`: bundles the kubectl plugin (src/cmd/kubectl-trafficmirror.ts and what it imports,
 * @kubernetes/client-node included) into one executable ES module with rolldown, packs it for krew
 * and fills in config/krew/trafficmirror.yaml. Node reads a file without an extension as an ES
 * module inside this package ("type": "module") and, by its syntax, outside any package (Node 22.12
 * and later), so the same file runs from dist/ and wherever it is copied.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "rolldown";
import { ROOT } from "./render-config.ts";

const out = join(ROOT, "dist");
const bin = join(out, "kubectl-trafficmirror");
mkdirSync(out, { recursive: true });
await build({
  input: join(ROOT, "src/cmd/kubectl-trafficmirror.ts"),
  platform: "node",
  logLevel: "warn",
  output: { file: bin, format: "esm", minify: true, codeSplitting: false },
});
chmodSync(bin, 0o755);
const stage = mkdtempSync(join(tmpdir(), "tmo-plugin-"));
copyFileSync(bin, join(stage, "kubectl-trafficmirror"));
copyFileSync(join(ROOT, "LICENSE"), join(stage, "LICENSE"));
const archive = join(out, "kubectl-trafficmirror.tar.gz");
// Fixed owner and times, so the same sources give the same archive and sha256.
execFileSync("tar", [
  "--sort=name",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
  "--mtime=@0",
  "-czf",
  archive,
  "-C",
  stage,
  "kubectl-trafficmirror",
  "LICENSE",
]);
const sha256 = createHash("sha256").update(readFileSync(archive)).digest("hex");
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const manifest = readFileSync(join(ROOT, "config/krew/trafficmirror.yaml"), "utf8")
  .replaceAll("${VERSION}", version)
  .replaceAll("${SHA256}", sha256);
writeFileSync(join(out, "trafficmirror.yaml"), manifest);
console.log(
  `Wrote ${bin} (${Math.round(readFileSync(bin).length / 1024)} KiB), ${archive} (sha256 ${sha256})`,
);
