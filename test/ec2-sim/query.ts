/** EC2 Query protocol: form-encoded requests into nested objects, and XML answers. */

/** A parsed request: `A.1.B=x` becomes `{ A: [{ B: "x" }] }` (lists are 1-based on the wire). */
export type Params = { [k: string]: string | Params | Params[] | string[] | undefined };

/** Parses a form body into nested params. */
export function parseQuery(body: string): Params {
  const root: Params = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.split(".");
    let node: Record<string, unknown> = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const last = i === parts.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(parts[i + 1]!);
      if (/^\d+$/.test(part)) continue; // handled by the list step below
      if (last) {
        node[part] = value;
      } else if (nextIsIndex) {
        const list = (node[part] ??= []) as unknown[];
        const idx = Number(parts[i + 1]) - 1;
        if (i + 2 === parts.length) {
          list[idx] = value;
          break;
        }
        node = (list[idx] ??= {}) as Record<string, unknown>;
        i++;
      } else {
        node = (node[part] ??= {}) as Record<string, unknown>;
      }
    }
  }
  return root;
}

/** A string param, or undefined. */
export function str(p: Params, key: string): string | undefined {
  const v = p[key];
  return typeof v === "string" ? v : undefined;
}

/** An integer param, or undefined. */
export function int(p: Params, key: string): number | undefined {
  const v = str(p, key);
  return v === undefined ? undefined : Number(v);
}

/** A list of strings (`Key.1`, `Key.2`…). */
export function strings(p: Params, key: string): string[] {
  const v = p[key];
  return Array.isArray(v) ? (v as unknown[]).filter((x): x is string => typeof x === "string") : [];
}

/** A list of objects. */
export function objects(p: Params, key: string): Params[] {
  const v = p[key];
  return Array.isArray(v)
    ? (v as unknown[]).filter((x): x is Params => typeof x === "object" && x !== null)
    : [];
}

/** Escapes text for XML. */
export function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** An XML value: scalars, nested objects, or lists (written as `<name><item>…</item></name>`). */
export type Xml = string | number | boolean | undefined | null | XmlObject | Xml[];
/** Nested XML elements. */
export interface XmlObject {
  [k: string]: Xml;
}

/** Writes XML elements for an object. */
export function toXml(obj: XmlObject): string {
  let out = "";
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v))
      out += `<${k}>${v.map((i) => `<item>${typeof i === "object" && i !== null ? toXml(i as XmlObject) : esc(String(i))}</item>`).join("")}</${k}>`;
    else if (typeof v === "object") out += `<${k}>${toXml(v)}</${k}>`;
    else out += `<${k}>${esc(String(v))}</${k}>`;
  }
  return out;
}

/** A successful EC2 answer. */
export function okResponse(action: string, requestId: string, body: XmlObject): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${requestId}</requestId>${toXml(body)}</${action}Response>`;
}

/** An EC2 error envelope. */
export function errorResponse(code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
}
