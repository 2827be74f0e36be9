/**
 * The ownership tag schema: the one place that says how the operator marks what it makes in AWS.
 *
 * Every resource the operator creates carries, at creation (`TagSpecifications`):
 * - `traffic-mirror.twtech.io/managed-by` = `traffic-mirror-operator` — made by this product;
 * - `traffic-mirror.twtech.io/cluster` = the cluster name — which cluster owns it (several
 *   clusters may share an account; each only ever touches its own);
 * - `traffic-mirror.twtech.io/key` = the desired object's stable key, chosen by the planner — the
 *   identity that matches desired to actual and derives the `ClientToken`;
 * - `traffic-mirror.twtech.io/owners` = the policies or targets (`ns/name` or `name`, comma-joined)
 *   it serves, for people reading the console; never used for matching.
 * - `Name` = a readable name, for the console.
 * Resources without the first two tags, or with another cluster's name, are never modified or
 * deleted. The IAM policy conditions deletes on the same tags.
 */

/** Tag key prefix of the product. */
export const TAG_PREFIX = "traffic-mirror.twtech.io/";
/** Marks a resource as made by the operator. */
export const TAG_MANAGED_BY = `${TAG_PREFIX}managed-by`;
/** The value of `TAG_MANAGED_BY`. */
export const MANAGED_BY_VALUE = "traffic-mirror-operator";
/** The owning cluster's name. */
export const TAG_CLUSTER = `${TAG_PREFIX}cluster`;
/** The planner's stable key of the desired object. */
export const TAG_KEY = `${TAG_PREFIX}key`;
/** Human-readable owners (policies or targets). */
export const TAG_OWNERS = `${TAG_PREFIX}owners`;

/** Tags for a resource the operator creates. */
export function ownershipTags(
  cluster: string,
  key: string,
  owners: readonly string[] = [],
): Record<string, string> {
  const tags: Record<string, string> = {
    [TAG_MANAGED_BY]: MANAGED_BY_VALUE,
    [TAG_CLUSTER]: cluster,
    [TAG_KEY]: key,
  };
  // AWS tag values are at most 256 characters.
  if (owners.length > 0) tags[TAG_OWNERS] = owners.join(",").slice(0, 256);
  return tags;
}

/** Whether a resource with these tags belongs to this cluster's operator. */
export function isOwnedBy(tags: Record<string, string> | undefined, cluster: string): boolean {
  return tags?.[TAG_MANAGED_BY] === MANAGED_BY_VALUE && tags[TAG_CLUSTER] === cluster;
}
