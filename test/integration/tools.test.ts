// `make tools` links every tool into .tools/bin; each link must resolve to a real program outside
// .tools/bin (a link to itself once broke every spawn of openssl).
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TOOLS_BIN } from "../harness/controlplane.ts";

describe("the installed tools", () => {
  it("are links to real executables outside .tools/bin", () => {
    const names = readdirSync(TOOLS_BIN);
    for (const want of [
      "node",
      "etcd",
      "kube-apiserver",
      "kubectl",
      "kwok",
      "helm",
      "tshark",
      "suricata",
      "openssl",
      "moto_server",
      "promtool",
      "parliament",
    ]) {
      expect(names).toContain(want);
    }
    for (const n of names) {
      const target = realpathSync(join(TOOLS_BIN, n));
      expect(target.startsWith(TOOLS_BIN), `${n} → ${target}`).toBe(false);
      expect(statSync(target).mode & 0o111, `${n} is executable`).not.toBe(0);
    }
  });
});
