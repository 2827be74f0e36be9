/**
 * Which EC2 instance types can be Traffic Mirroring sources, as data (AWS Traffic Mirroring guide,
 * "limitations"; the list grows, so keep it here and easy to update), and which sizes accept 100
 * sources per ENI target instead of 10.
 */

/** Families that cannot be mirror sources at all (any size). */
export const UNSUPPORTED_FAMILIES: readonly string[] = [
  "m6a",
  "m6i",
  "m6id",
  "m6idn",
  "m6in",
  "m7a",
  "m7g",
  "m7gd",
  "m7i",
  "m7i-flex",
  "m8g",
  "c6a",
  "c6gd",
  "c6gn",
  "c6i",
  "c6id",
  "c6in",
  "c7a",
  "c7g",
  "c7gd",
  "c7gn",
  "c7i",
  "c8g",
  "r6a",
  "r6i",
  "r6id",
  "r6idn",
  "r6in",
  "r7a",
  "r7g",
  "r7gd",
  "r7i",
  "r7iz",
  "r8g",
  "x2idn",
  "x2iedn",
  "x2iezn",
  "x8g",
  "i4g",
  "i4i",
  "im4gn",
  "is4gen",
  "inf2",
  "p5",
  "trn1",
  "trn1n",
  "hpc6a",
  "hpc6id",
  "hpc7a",
  "hpc7g",
  "t2",
];

/** Non-Nitro families that are supported (every other pre-Nitro family is not). */
export const SUPPORTED_NON_NITRO: readonly string[] = [
  "c4",
  "d2",
  "g3",
  "g3s",
  "h1",
  "i3",
  "m4",
  "p2",
  "p3",
  "r4",
  "x1",
  "x1e",
];

/** Pre-Nitro (Xen) families not in the supported list. */
const OTHER_XEN = new Set([
  "t1",
  "m1",
  "m2",
  "m3",
  "c1",
  "c3",
  "cc2",
  "cr1",
  "g2",
  "hi1",
  "hs1",
  "i2",
  "r3",
  "d2",
]);

const unsupported = new Set(UNSUPPORTED_FAMILIES);
const supportedXen = new Set(SUPPORTED_NON_NITRO);

/** The verdict on an instance type. */
export interface InstanceTypeSupport {
  supported: boolean;
  /** Why not, for status. */
  message?: string;
}

/** Whether `instanceType` (e.g. `m5.large`) can be a mirror source. */
export function mirrorSourceSupport(instanceType: string): InstanceTypeSupport {
  const [family, size = ""] = instanceType.toLowerCase().split(".");
  if (!family) return { supported: false, message: "the node has no instance type" };
  if (size.startsWith("metal")) {
    return { supported: false, message: `${instanceType}: bare-metal sizes cannot be mirror sources` };
  }
  if (unsupported.has(family)) {
    return {
      supported: false,
      message: `${instanceType}: the ${family} family cannot be a Traffic Mirroring source`,
    };
  }
  if (OTHER_XEN.has(family) && !supportedXen.has(family)) {
    return {
      supported: false,
      message: `${instanceType}: this non-Nitro family cannot be a Traffic Mirroring source`,
    };
  }
  return { supported: true };
}

/** Sources one ENI target of this instance type accepts (AWS quota: 10, or 100 on the largest sizes). */
export function eniTargetCapacity(instanceType: string | undefined): number {
  const size = instanceType?.split(".")[1] ?? "";
  return /^(24xlarge|32xlarge|48xlarge|metal.*)$/.test(size) ? 100 : 10;
}
