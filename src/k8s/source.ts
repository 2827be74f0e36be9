/** The apiserver as a `ListWatchSource`: paged lists over REST, watches over client-node's `Watch`. */
import type { Watch } from "@kubernetes/client-node";
import {
  GoneError,
  type ListPage,
  type ListWatchSource,
  type RawObject,
  type WatchEvent,
} from "./reflector.ts";
import { isStatus, type KubeRest } from "./rest.ts";

/** What `apiServerSource` needs. */
export interface ApiServerSourceOptions {
  rest: KubeRest;
  watch: Watch;
  /** Collection path, e.g. `/api/v1/pods`. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** A list-and-watch source on the apiserver. */
export function apiServerSource(o: ApiServerSourceOptions): ListWatchSource {
  const selectors: Record<string, string> = {};
  if (o.labelSelector) selectors.labelSelector = o.labelSelector;
  if (o.fieldSelector) selectors.fieldSelector = o.fieldSelector;
  return {
    async list({ limit, continueToken }): Promise<ListPage> {
      const q = new URLSearchParams({ ...selectors, limit: String(limit) });
      if (continueToken) q.set("continue", continueToken);
      try {
        const body = await o.rest.get<{
          items: RawObject[];
          metadata: { resourceVersion: string; continue?: string };
        }>(`${o.path}?${q.toString()}`, `listing ${o.path}`);
        return {
          items: body.items,
          resourceVersion: body.metadata.resourceVersion,
          continueToken: body.metadata.continue,
        };
      } catch (err) {
        // An expired continue token: the whole list starts again.
        if (isStatus(err, 410)) throw new GoneError("list continue token expired", { cause: err });
        throw err;
      }
    },
    async watch({ resourceVersion, onEvent, done }) {
      const ctl = await o.watch.watch(
        o.path,
        {
          ...selectors,
          resourceVersion,
          allowWatchBookmarks: true,
          // Spread server-side timeouts so many watches do not reconnect together.
          timeoutSeconds: 300 + Math.floor(Math.random() * 300),
        },
        (type: string, object: RawObject) => onEvent({ type, object } as WatchEvent),
        (err: unknown) => {
          const status = (err as { statusCode?: number } | null)?.statusCode;
          done(status === 410 ? new GoneError("watch resource version expired") : err);
        },
      );
      return { abort: () => ctl.abort() };
    },
  };
}
