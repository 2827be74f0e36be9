/**
 * Retention: closed capture files older than the age limit are deleted, then the oldest until the
 * total is under the byte limit. Only finished `.pcapng` files are considered (never the open files
 * under `.partial/`).
 */
import { readdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { PARTIAL_DIR } from "./files.ts";

/** Retention limits; 0 means no limit. */
export interface RetentionPolicy {
  maxAgeMs: number;
  maxTotalBytes: number;
}

/** What a sweep found and did. */
export interface SweepResult {
  files: number;
  bytes: number;
  deleted: number;
}

interface Found {
  path: string;
  bytes: number;
  mtimeMs: number;
}

function listCaptures(dir: string, out: Found[]): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== PARTIAL_DIR) listCaptures(path, out);
    } else if (e.isFile() && e.name.endsWith(".pcapng")) {
      try {
        const s = statSync(path);
        out.push({ path, bytes: s.size, mtimeMs: s.mtimeMs });
      } catch {
        // Deleted meanwhile (another worker's sweep).
      }
    }
  }
}

function remove(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Applies the policy under `root`; returns what is left. */
export function sweepRetention(root: string, policy: RetentionPolicy, now: number): SweepResult {
  const found: Found[] = [];
  listCaptures(root, found);
  found.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.path < b.path ? -1 : 1));
  let bytes = found.reduce((n, f) => n + f.bytes, 0);
  let files = found.length;
  let deleted = 0;
  for (const f of found) {
    const tooOld = policy.maxAgeMs > 0 && now - f.mtimeMs > policy.maxAgeMs;
    const tooMuch = policy.maxTotalBytes > 0 && bytes > policy.maxTotalBytes;
    if (!tooOld && !tooMuch) continue;
    if (remove(f.path)) {
      bytes -= f.bytes;
      files--;
      deleted++;
    }
  }
  return { files, bytes, deleted };
}
