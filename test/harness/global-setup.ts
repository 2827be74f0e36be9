// Placeholder until the control-plane harness lands: integration tests that need no apiserver run.
export default function setup(): void {}
