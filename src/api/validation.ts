/** Validation messages for people: zod issues as one line, `path: message; path: message`. */
import type { z } from "zod";

/** The issues of a failed parse, as one line. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
}
