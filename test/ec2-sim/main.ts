// The EC2 emulator as a program: `node test/ec2-sim/main.ts [--port N] [--seed file.json]`.
// Listens on 127.0.0.1 only; admin API under /_sim/ (seed, knobs, state, calls).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { seed, startEc2Sim, type Seed } from "./server.ts";

const { values } = parseArgs({
  options: { port: { type: "string", default: "4599" }, seed: { type: "string" } },
});
const sim = await startEc2Sim({ port: Number(values.port) });
if (values.seed) seed(sim.state, JSON.parse(readFileSync(values.seed, "utf8")) as Seed);
console.log(`EC2 emulator listening on ${sim.url}`);
const stop = (): void => {
  void sim.stop().then(() => process.exit(0));
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
