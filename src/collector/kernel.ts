/**
 * Kernel mode: one Linux vxlan device per VNI, so IDS tools (Suricata af-packet, Zeek, tcpdump)
 * attach to `tmo<vni>` and read the decapsulated frames at kernel speed. The devices follow the
 * VNI map: created, relabelled and removed as sessions change. They are left in place when the
 * collector stops (an IDS attached to them keeps running through a restart); at start every
 * `tmo…` vxlan device the map does not name is removed. Needs NET_ADMIN in the host's network
 * namespace, and the vxlan module.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { VniMap } from "../api/vni-map.ts";
import { buildRoutes, labelOf } from "./routes.ts";

/** Prefix of every device the collector owns. */
export const DEVICE_PREFIX = "tmo";
const OWNED = new RegExp(`^${DEVICE_PREFIX}\\d{1,8}$`);
/** Large enough for any frame AWS delivers (8,947 bytes of source MTU). */
const DEVICE_MTU = 9001;

/** Runs `ip` with arguments; returns stdout (throws with stderr on failure). */
export type IpRunner = (args: string[]) => string;

/** `ip` from PATH. */
export const runIp: IpRunner = (args) =>
  execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

/** Counters of one device, from /sys/class/net. */
export interface DeviceCounters {
  device: string;
  vni: number;
  policies: string[];
  rxPackets: number;
  rxBytes: number;
  rxDropped: number;
}

/** The name of the device of a VNI. */
export const deviceName = (vni: number): string => `${DEVICE_PREFIX}${vni}`;

/** Manages the vxlan devices of one collector. */
export class VxlanDevices {
  readonly #o: { port: number; log: Logger; ip?: IpRunner; sysfs?: string };
  readonly #ip: IpRunner;
  /** device → VNI and the alias it carries. */
  #devices = new Map<string, { vni: number; alias: string; policies: string[] }>();
  /** Operations that failed (metrics). */
  errors = 0;
  /** VNIs of sessions given no device because their AWS filter does not select pods (last sync). */
  readonly refused = new Set<number>();

  constructor(o: { port: number; log: Logger; ip?: IpRunner; sysfs?: string }) {
    this.#o = o;
    this.#ip = o.ip ?? runIp;
  }

  /** Devices named like ours that exist now. */
  existing(): string[] {
    const out = this.#ip(["-j", "-d", "link", "show", "type", "vxlan"]);
    const links = JSON.parse(out || "[]") as { ifname: string }[];
    return links.map((l) => l.ifname).filter((n) => OWNED.test(n));
  }

  /** Makes the devices match the map: adds, relabels, removes. */
  sync(map: VniMap): void {
    const want = new Map<string, { vni: number; alias: string; policies: string[] }>();
    this.refused.clear();
    for (const r of buildRoutes(map).values()) {
      // A device gets every copy of its session: one whose AWS filter does not select pods would
      // hand an IDS the packets of pods nobody selected (the operator refuses such targets when
      // told the collectors run in kernel mode; this holds even when it was not told).
      if (r.entry.selectionAtCollector) {
        this.refused.add(r.vni);
        continue;
      }
      const l = labelOf(r.entry);
      want.set(deviceName(r.vni), {
        vni: r.vni,
        alias: `${l.name}; ${l.description}`.slice(0, 255),
        policies: r.policies,
      });
    }
    const present = new Set(this.existing());
    for (const name of present) {
      if (!want.has(name)) this.#try(["link", "del", name], `Removed vxlan device ${name}`);
    }
    for (const [name, d] of want) {
      if (!present.has(name)) {
        this.#try(
          [
            "link",
            "add",
            name,
            "mtu",
            String(DEVICE_MTU),
            "type",
            "vxlan",
            "id",
            String(d.vni),
            "dstport",
            String(this.#o.port),
            "nolearning",
          ],
          `Created vxlan device ${name}`,
        );
        this.#try(["link", "set", name, "up"]);
      }
      if (this.#devices.get(name)?.alias !== d.alias)
        this.#try(["link", "set", "dev", name, "alias", d.alias]);
    }
    this.#devices = want;
  }

  /** Per-device receive counters. */
  counters(): DeviceCounters[] {
    const sysfs = this.#o.sysfs ?? "/sys/class/net";
    const read = (dev: string, stat: string): number => {
      try {
        return Number(readFileSync(`${sysfs}/${dev}/statistics/${stat}`, "utf8"));
      } catch {
        return 0;
      }
    };
    return [...this.#devices].map(([device, d]) => ({
      device,
      vni: d.vni,
      policies: d.policies,
      rxPackets: read(device, "rx_packets"),
      rxBytes: read(device, "rx_bytes"),
      rxDropped: read(device, "rx_dropped"),
    }));
  }

  #try(args: string[], done?: string): void {
    try {
      this.#ip(args);
      if (done) this.#o.log.info({ device: args[2] }, done);
    } catch (err) {
      this.errors++;
      const stderr = (err as { stderr?: string }).stderr?.trim();
      this.#o.log.error({ args: args.slice(0, 3), stderr }, "An ip command failed");
    }
  }
}
