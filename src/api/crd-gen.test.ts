import { describe, expect, it } from "vitest";
import { crdFor, driftedFiles, structural } from "./crd-gen.ts";
import { KINDS } from "./resources.ts";

describe("CRD generation", () => {
  it("matches the committed CRDs (run `make manifests` after changing src/api/resources.ts)", () => {
    expect(driftedFiles()).toEqual([]);
  });

  it("produces structural schemas: every object and array typed, no false additionalProperties", () => {
    const problems: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (!node || typeof node !== "object" || Array.isArray(node)) return;
      const n = node as Record<string, unknown>;
      if (("properties" in n || "items" in n) && !("type" in n)) problems.push(`${path}: no type`);
      if (n.additionalProperties === false) problems.push(`${path}: additionalProperties false`);
      for (const [k, v] of Object.entries(n)) walk(v, `${path}.${k}`);
    };
    for (const k of KINDS) walk(crdFor(k), k.kind);
    expect(problems).toEqual([]);
  });

  it("strips safe-integer bounds but keeps real ones", () => {
    expect(structural({ type: "integer", minimum: -Number.MAX_SAFE_INTEGER, maximum: 8500 })).toEqual({
      type: "integer",
      maximum: 8500,
    });
  });
});
