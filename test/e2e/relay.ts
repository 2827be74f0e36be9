/**
 * A TCP relay: `node test/e2e/relay.ts LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT`. The EC2
 * emulator listens on loopback only; the relay makes it reachable from a kind cluster through the
 * host's address on the kind Docker network, for as long as the e2e script runs.
 */
import { createConnection, createServer } from "node:net";

const [listenHost, listenPort, targetHost, targetPort] = process.argv.slice(2);
if (!listenHost || !listenPort || !targetHost || !targetPort) {
  console.error("usage: relay.ts LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT");
  process.exit(2);
}
const server = createServer((client) => {
  const upstream = createConnection({ host: targetHost, port: Number(targetPort) });
  client.pipe(upstream).pipe(client);
  // One side failing ends both; a relay has nothing else to do with the error.
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
});
server.listen(Number(listenPort), listenHost, () => {
  console.log(`Relaying ${listenHost}:${listenPort} to ${targetHost}:${targetPort}`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));
process.once("SIGINT", () => server.close(() => process.exit(0)));
