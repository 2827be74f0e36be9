// Prints one closing line for the whole test run, "tests: N passed, N failed, N skipped", from the
// JSON reports the vitest projects wrote (CI reads that line). Exits non-zero if any report is
// missing or counts a failure.
import { existsSync, readFileSync } from "node:fs";

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numTotalTests: number;
}

const files = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
for (const f of files) {
  if (!existsSync(f)) {
    console.error(`missing test report ${f}`);
    missing++;
    continue;
  }
  const r = JSON.parse(readFileSync(f, "utf8")) as Report;
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + r.numTodoTests;
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || missing > 0 || passed === 0 ? 1 : 0);
