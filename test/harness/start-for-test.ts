// Starts a full control plane in the given state directory, prints READY, and waits to be killed.
// Used by the process-hygiene test; not part of the harness API.
import { startControlPlane } from "./controlplane.ts";

const stateDir = process.argv[2];
if (!stateDir) throw new Error("usage: start-for-test.ts STATE_DIR");
await startControlPlane({ stateDir });
console.log("READY");
setInterval(() => {}, 1 << 30);
