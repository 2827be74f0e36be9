/**
 * What the user typed, checked: label selectors in kubectl's syntax, `--filter` as
 * `protocol[/port]`, `--for` as a duration. Mistakes are `UserError`s: one sentence, no stack.
 */
import { parseDuration } from "../api/expiry.ts";
import type { LabelSelector, PolicyFilterRule } from "../api/resources.ts";

/** A mistake of the user's (or a refusal the user can act on): printed as one sentence. */
export class UserError extends Error {}

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function checkKey(key: string, selector: string): string {
  if (!LABEL_KEY.test(key)) throw new UserError(`"${key}" in -l ${selector} is not a label key`);
  return key;
}

function checkValue(value: string, selector: string): string {
  if (!LABEL_VALUE.test(value)) throw new UserError(`"${value}" in -l ${selector} is not a label value`);
  return value;
}

/** Splits on commas outside parentheses (`app in (a,b),tier=web`). */
function terms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of selector) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/** A kubectl label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`). */
export function parseSelector(selector: string): LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: NonNullable<LabelSelector["matchExpressions"]> = [];
  for (const t of terms(selector)) {
    if (t === "") throw new UserError(`-l ${selector} has an empty term`);
    const set = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(t);
    const neq = /^([^=!\s]+)\s*!=\s*(\S*)$/.exec(t);
    const eq = /^([^=!\s]+)\s*==?\s*(\S*)$/.exec(t);
    if (set) {
      const values = set[3]!.split(",").map((v) => checkValue(v.trim(), selector));
      matchExpressions.push({
        key: checkKey(set[1]!, selector),
        operator: set[2] === "in" ? "In" : "NotIn",
        values,
      });
    } else if (neq) {
      matchExpressions.push({
        key: checkKey(neq[1]!, selector),
        operator: "NotIn",
        values: [checkValue(neq[2]!, selector)],
      });
    } else if (eq) matchLabels[checkKey(eq[1]!, selector)] = checkValue(eq[2]!, selector);
    else if (t.startsWith("!"))
      matchExpressions.push({ key: checkKey(t.slice(1), selector), operator: "DoesNotExist" });
    else matchExpressions.push({ key: checkKey(t, selector), operator: "Exists" });
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}

const PROTOCOLS: Record<string, PolicyFilterRule["protocol"]> = {
  tcp: "TCP",
  udp: "UDP",
  icmp: "ICMP",
  icmpv6: "ICMPv6",
  all: "All",
};

/**
 * `--filter tcp/443` (that port on either side, like tcpdump's `tcp port 443`), `udp/53`, `tcp`,
 * `icmp`, `tcp/8000-8080`: the policy's filter rules (two per port: the pod's port, the peer's).
 */
export function parseFilters(filters: readonly string[]): PolicyFilterRule[] {
  const rules: PolicyFilterRule[] = [];
  for (const f of filters) {
    const m = /^([a-z0-9]+)(?:\/(\d{1,5})(?:-(\d{1,5}))?)?$/.exec(f.toLowerCase());
    const protocol = m ? PROTOCOLS[m[1]!] : undefined;
    if (!m || !protocol)
      throw new UserError(
        `--filter ${f} is not protocol[/port], e.g. tcp/443, udp/53, tcp/8000-8080 or icmp`,
      );
    if (m[2] === undefined) {
      rules.push({ direction: "both", action: "accept", protocol });
      continue;
    }
    const from = Number(m[2]);
    const to = m[3] === undefined ? from : Number(m[3]);
    if (protocol !== "TCP" && protocol !== "UDP")
      throw new UserError(`--filter ${f}: ports go with tcp or udp only`);
    if (to > 65535 || from > to) throw new UserError(`--filter ${f}: ports are 0-65535, the lower one first`);
    rules.push({ direction: "both", action: "accept", protocol, localPorts: { from, to } });
    rules.push({ direction: "both", action: "accept", protocol, remotePorts: { from, to } });
  }
  if (rules.length > 10) throw new UserError("--filter gives more than 10 rules (each port counts twice)");
  return rules;
}

/** `--for`: a duration the CRD admits; returned as given, for spec.duration. */
export function parseFor(text: string): { text: string; ms: number } {
  const ms = parseDuration(text);
  if (ms === undefined || ms < 1_000 || ms > 8760 * 3_600_000)
    throw new UserError(`--for ${text} is not a duration such as 30s, 10m or 1h30m (1s to 8760h)`);
  return { text, ms };
}
