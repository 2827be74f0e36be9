import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { startProbeServer } from "./http.ts";

describe("probe server", () => {
  it("serves health, readiness and metrics on loopback", async () => {
    const registry = new Registry();
    new Counter({ name: "tmo_test_total", help: "test", registers: [registry] }).inc(3);
    let ready = false;
    const s = await startProbeServer({ host: "127.0.0.1", port: 0, registry, ready: () => ready });
    try {
      const base = `http://127.0.0.1:${s.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      ready = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(await (await fetch(`${base}/metrics`)).text()).toContain("tmo_test_total 3");
      expect((await fetch(`${base}/nope`)).status).toBe(404);
      expect((await fetch(`${base}/healthz`, { method: "POST" })).status).toBe(405);
    } finally {
      await s.close();
    }
  });
});
