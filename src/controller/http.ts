/** A minimal HTTP server for `/metrics`, `/healthz` and `/readyz`. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

/** What `startProbeServer` serves. */
export interface ProbeServerOptions {
  host: string;
  port: number;
  /** Prometheus registry for `/metrics`; omitted means no `/metrics` route. */
  registry?: Registry;
  /** Alternative to `registry`: the exposition text (e.g. summed over cluster workers). */
  metricsText?: () => Promise<string>;
  /** Liveness: the process can make progress. */
  healthy?: () => boolean;
  /** Readiness: caches synced and the loop is running (or this replica is a ready standby). */
  ready?: () => boolean;
}

/** A running probe server. */
export interface ProbeServer {
  port: number;
  close(): Promise<void>;
}

/** Starts the server; resolves once it listens. */
export async function startProbeServer(o: ProbeServerOptions): Promise<ProbeServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const check = (ok: boolean): void => {
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not ok\n");
    };
    if (req.method !== "GET") {
      res.writeHead(405).end();
    } else if (path === "/healthz") {
      check(o.healthy?.() ?? true);
    } else if (path === "/readyz") {
      check(o.ready?.() ?? true);
    } else if (path === "/metrics" && (o.registry || o.metricsText)) {
      const text = o.metricsText ? o.metricsText() : o.registry!.metrics();
      text.then(
        (body) =>
          res.writeHead(200, { "content-type": o.registry?.contentType ?? PROMETHEUS_TEXT }).end(body),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
