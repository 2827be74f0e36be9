/**
 * A TCP connection to a pod's port through the apiserver (`pods/portforward`, the user's right),
 * as a Duplex: what kubectl port-forward does, without a local listener.
 */
import { Duplex, PassThrough } from "node:stream";
import { PortForward, type KubeConfig } from "@kubernetes/client-node";

/** What is used of the WebSocket the client returns. */
interface Socket {
  on(event: "close" | "error", fn: (err: Error) => void): void;
  close(): void;
}

/** Opens a port-forward to `pod`:`port`; the Duplex ends when the connection does. */
export async function portForward(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  port: number,
): Promise<Duplex> {
  const input = new PassThrough();
  const output = new PassThrough();
  const errors = new PassThrough();
  const ws: unknown = await new PortForward(kc, true).portForward(
    namespace,
    pod,
    [port],
    output,
    errors,
    input,
  );
  const socket = (typeof ws === "function" ? (ws as () => unknown)() : ws) as Socket | null;
  // The kubelet reports a failed dial on the error channel: the stream is over.
  errors.on("data", (d: Buffer) =>
    output.destroy(new Error(`port-forward to ${pod}:${port}: ${d.toString().trim()}`)),
  );
  socket?.on("close", () => output.end());
  socket?.on("error", (err: Error) => output.destroy(err));
  const duplex = Duplex.from({ readable: output, writable: input });
  duplex.on("close", () => socket?.close());
  return duplex;
}
