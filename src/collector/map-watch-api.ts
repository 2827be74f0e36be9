/**
 * Follows the operator's VNI map through the apiserver: a watch of the one ConfigMap, so a change
 * arrives within a second (the collector must learn a new session or a pod that left at once). A
 * module of its own so that a collector reading the map from a file never loads the Kubernetes
 * client (25 MiB of heap, which lengthens the garbage collector's pauses on the receive path).
 */
import { Watch, type KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { readVniMapConfigMap, vniMapPayload, type VniMap, type VniMapConfigMap } from "../api/vni-map.ts";
import { Reflector, type RawObject } from "../k8s/reflector.ts";
import { KubeRest } from "../k8s/rest.ts";
import { apiServerSource } from "../k8s/source.ts";

/** Where the map comes from through the apiserver, and who hears of changes. */
export interface VniMapConfigMapWatch {
  kc: KubeConfig;
  namespace: string;
  name: string;
  log: Logger;
  /** `resourceVersion` is the ConfigMap's: which write of the operator this map is. */
  onMap: (map: VniMap, from: { resourceVersion: string }) => void;
  onError: (err: Error) => void;
}

/**
 * Watches the one ConfigMap (a field selector on its name, so RBAC can grant that name alone) and
 * hands each new document to `onMap`; returns a function that stops watching. The watch restarts
 * by itself after errors; a deleted ConfigMap keeps the last map.
 */
export function watchVniMapConfigMap(w: VniMapConfigMapWatch): () => Promise<void> {
  const where = `ConfigMap ${w.namespace}/${w.name}`;
  let last: string | undefined;
  const reflector = new Reflector<{ map: VniMapConfigMap; key: string; resourceVersion: string }>({
    name: "vni-map",
    log: w.log,
    source: apiServerSource({
      rest: new KubeRest(w.kc),
      watch: new Watch(w.kc),
      path: `/api/v1/namespaces/${w.namespace}/configmaps`,
      fieldSelector: `metadata.name=${w.name}`,
    }),
    transform: (obj: RawObject) => {
      const map = vniMapPayload(obj as VniMapConfigMap);
      if (map === undefined) return undefined;
      return { map, key: JSON.stringify(map), resourceVersion: obj.metadata?.resourceVersion ?? "" };
    },
    // Only the document matters: a write that changes nothing in it is not a new map.
    equals: (a, b) => a.key === b.key,
    onChange: (c) => {
      if (c.now === undefined || c.now.key === last) return;
      last = c.now.key;
      try {
        const map = readVniMapConfigMap(c.now.map, where);
        if (map !== undefined) w.onMap(map, { resourceVersion: c.now.resourceVersion });
      } catch (err) {
        w.onError(err as Error);
      }
    },
    // One small object that changes when the operator writes: restart quickly after errors.
    backoff: { initialMs: 200, maxMs: 5_000 },
  });
  reflector.start();
  return () => reflector.stop();
}
