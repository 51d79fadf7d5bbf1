// A stand-in for the engine's host functions, for a policy's tests under
// Node (see register.js): look-ups answer from the tables in `testing`,
// logs are kept in `testing.logs` (and written to stderr when
// `testing.echo` is set), the clock is `testing.nowMs` when set.

/** What the stand-in answers from; fill it in a test. */
export const testing = {
  /** @type {Map<number, object>} server index -> server-info */
  servers: new Map(),
  /** @type {Map<number, object>} region index -> region-info */
  regions: new Map(),
  /** @type {Map<number, object>} group index -> group-info */
  groups: new Map(),
  /** @type {Map<number, object>} subnet index -> subnet-info */
  subnets: new Map(),
  /** @type {Map<number, object>} pathway index -> pathway-info */
  pathways: new Map(),
  /** @type {{level: string, message: string}[]} */
  logs: [],
  echo: false,
  /** @type {bigint | null} */
  nowMs: null,
  /** Empties every table and the logs. */
  reset() {
    for (const t of [this.servers, this.regions, this.groups, this.subnets, this.pathways]) t.clear();
    this.logs.length = 0;
    this.nowMs = null;
  },
};

let state = 0n;

export function log(level, message) {
  testing.logs.push({ level, message });
  if (testing.echo) console.error(`[${level}] ${message}`);
}

export function nowMs() {
  return testing.nowMs ?? BigInt(Date.now());
}

export function random() {
  // SplitMix64 from 0, as a host that was given no seed.
  state = (state + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  let z = state;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  return z ^ (z >> 31n);
}

export const lookupServer = (i) => testing.servers.get(i);
export const lookupRegion = (i) => testing.regions.get(i);
export const lookupGroup = (i) => testing.groups.get(i);
export const lookupSubnet = (i) => testing.subnets.get(i);
export const lookupPathway = (i) => testing.pathways.get(i);
