/**
 * Follows the operator's VNI map as a file (a mounted ConfigMap, which kubelet refreshes only every
 * minute or so; or a file outside Kubernetes), polled with `stat` (not inotify) because kubelet
 * swaps a symlink, which inotify on the file misses. A bad document keeps the previous map and is
 * reported. The apiserver watch is in map-watch-api.ts, loaded only when used.
 */
import { renameSync, readdirSync, unwatchFile, watchFile } from "node:fs";
import { join } from "node:path";
import type { VniMap } from "../api/vni-map.ts";
import { ensurePrivateDir, PARTIAL_DIR } from "./files.ts";
import { readVniMapFile } from "./routes.ts";

/** Where the map comes from and who hears of changes. */
export interface VniMapWatch {
  path: string;
  intervalMs: number;
  onMap: (map: VniMap) => void;
  onError: (err: Error) => void;
}

/** Loads the map now (if it exists) and on every change; returns a function that stops watching. */
export function watchVniMap(w: VniMapWatch): () => void {
  const load = (): void => {
    try {
      w.onMap(readVniMapFile(w.path));
    } catch (err) {
      w.onError(err as Error);
    }
  };
  load();
  const listener = (cur: { mtimeMs: number; ino: number }, prev: { mtimeMs: number; ino: number }): void => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) load();
  };
  watchFile(w.path, { interval: w.intervalMs, persistent: false }, listener);
  return () => unwatchFile(w.path, listener);
}

/** Directory where files left open by a previous run are moved at start. */
export const RECOVERED_DIR = "_recovered";

/**
 * Moves files a previous run left under `.partial/` (it was killed) to `_recovered/`, where
 * retention treats them like any other capture; returns how many.
 */
export function recoverPartialFiles(root: string): number {
  const partial = join(root, PARTIAL_DIR);
  let names: string[];
  try {
    names = readdirSync(partial);
  } catch {
    return 0;
  }
  if (names.length === 0) return 0;
  const target = join(root, RECOVERED_DIR);
  ensurePrivateDir(target);
  for (const n of names) renameSync(join(partial, n), join(target, n));
  return names.length;
}
