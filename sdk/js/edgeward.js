// The SDK for writing edgeward routing policies in JavaScript.
//
// A policy is a WebAssembly component that the engine calls once per
// player request to decide which edge server the player goes to. This
// module hides the contract's wire format (the packed `list<u32>` of
// `policy.select`, the MessagePack configuration of `policy.init`):
//
//   import { exportPolicy, choose, reject } from "./edgeward.js";
//
//   export const policy = exportPolicy({
//     select(request, tiers) {
//       for (const tier of tiers) {
//         const c = choose.weighted(tier.eligible(), (c) => c.weight);
//         if (c) return c.server;
//       }
//       return reject(503, "no available edge");
//     },
//   });
//
// and build it with `edgeward policy build` (componentize-js over the
// contract's WIT, `router` world). It mirrors the Rust SDK (`edgeward-sdk`):
// the same request and tier fields (in camelCase), and `choose.weighted` and
// `choose.rendezvous` that give the Rust SDK's answers for the same seed
// and key (golden vectors from the contract's codec keep the two in step:
// sdk/js/test/).
//
// Randomness: `random()` (and `choose.weighted`) draw from a SplitMix64
// seeded with the request's seed, as the host's `random` does, so that
// decisions are reproducible and can be replayed. So are `Math.random()`
// and `crypto.getRandomValues()` inside a policy: the engine reseeds WASI's
// generator per call. Do not use them for secrets.

import * as host from "edgeward:policy/host@0.4.0";

/** The contract this SDK builds policies for. */
export const CONTRACT = "edgeward:policy@0.4.0";

// ---- enums and flags, numbered as in the WIT ------------------------------

/** Request kinds, by wire number. */
export const REQUEST_KINDS = Object.freeze(["live", "catchup", "vod", "static-file"]);
/** Streaming protocols, by wire number. */
export const PROTOCOLS = Object.freeze(["hls", "mpd"]);
/** Encryptions, by wire number. */
export const ENCRYPTIONS = Object.freeze(["none", "widevine", "playready", "cenc"]);

/** `candidate-state` bits. */
export const CandidateState = Object.freeze({
  SERVER_ACTIVE: 1,
  GROUP_ACTIVE: 2,
  SERVES_RESOURCE: 4,
  AVAILABLE: 8,
  ALL: 15,
});

/** `anonymous-ip` bits, with their WIT names. */
const ANONYMOUS_IP = [
  "anonymous",
  "vpn",
  "hosting-provider",
  "public-proxy",
  "tor-exit-node",
  "residential-proxy",
];

// Layout constants (see `policy.select` in wit/policy.wit).
const REQUEST_CLIENT_V6 = 1 << 24;
const REQUEST_HAS_QUERY = 1 << 25;
const REQUEST_TLS = 1 << 26;
const REQUEST_HEADER_WORDS = 11;
const GEO_WORDS = 5;
const GEO_HAS_LOCATION = 1;
const HEADER_ABSENT = 0xffffffff;
const TIER_WORDS = 4;
const CANDIDATE_WORDS = 4;
const TIER_REGION_ACTIVE = 1;
const TIER_HAS_SUBNET = 2;
const TIER_BY_DISTANCE = 4;
const PATHWAY_WORDS = 6;
const PATHWAY_CURRENT = 1;
const PATHWAY_HAS_THROUGHPUT = 2;
const PATHWAY_CLONE = 4;
const PATHWAY_NO_TIER = 0xffffffff;

// ---- the request and its candidates ---------------------------------------

/**
 * An edge server that could serve the request.
 * @typedef {object} HealthFigures
 * @property {number | undefined} rttUs round-trip time of the last check
 * @property {{name: string, value: number}[]} figures reported figures
 */
export class Candidate {
  constructor(server, group, weight, state, health) {
    /** Index of the server (see `serverInfo`). */
    this.server = server;
    /** Index of the server group it was reached through. */
    this.group = group;
    /** The server's weight (0: never drawn at random). */
    this.weight = weight;
    /** Its `candidate-state` bits (see `CandidateState`). */
    this.state = state;
    /** @type {HealthFigures | null} live health figures, if any. */
    this.health = health;
  }
  /** Active, in an active group that serves the resource, available. */
  isEligible() {
    return (this.state & CandidateState.ALL) === CandidateState.ALL;
  }
  get serverActive() {
    return (this.state & CandidateState.SERVER_ACTIVE) !== 0;
  }
  get groupActive() {
    return (this.state & CandidateState.GROUP_ACTIVE) !== 0;
  }
  get servesResource() {
    return (this.state & CandidateState.SERVES_RESOURCE) !== 0;
  }
  get available() {
    return (this.state & CandidateState.AVAILABLE) !== 0;
  }
}

/** The candidates of one region, in the topology's order of preference. */
export class Tier {
  constructor(region, regionActive, subnet, distanceKm, candidates) {
    /** Index of the region (see `regionInfo`). */
    this.region = region;
    /** The region's `active` flag. */
    this.regionActive = regionActive;
    /** @type {number | null} index of the matched subnet. */
    this.subnet = subnet;
    /** @type {number | null} distance to the region, for a GeoIP tier. */
    this.distanceKm = distanceKm;
    /** @type {Candidate[]} */
    this.candidates = candidates;
  }
  /** The candidates a policy may pick: none when the region is inactive. */
  eligible() {
    const eligible = [];
    if (!this.regionActive) return eligible;
    const candidates = this.candidates;
    for (let i = 0; i < candidates.length; i++) {
      if ((candidates[i].state & CandidateState.ALL) === CandidateState.ALL) eligible.push(candidates[i]);
    }
    return eligible;
  }
}

/**
 * One player request, as the engine parsed it.
 * @typedef {object} Request
 * @property {"live"|"catchup"|"vod"|"static-file"} kind
 * @property {"hls"|"mpd"|null} protocol live and catch-up only
 * @property {"none"|"widevine"|"playready"|"cenc"} encryption
 * @property {string} target channel or program `epg_id`, or the path
 * @property {string|null} query the raw query, without `?`
 * @property {string} client the client address, as text
 * @property {boolean} clientV6 whether it is IPv6
 * @property {bigint} topologyVersion
 * @property {bigint} seed this request's random seed
 * @property {boolean} tls the player came over TLS
 * @property {Geo} geo what GeoIP databases say of the client
 * @property {Map<string, string|null>} headers the declared headers
 */

/**
 * @typedef {object} Geo
 * @property {string|null} country ISO 3166-1 alpha-2
 * @property {number|null} asn
 * @property {{latitude: number, longitude: number}|null} location
 * @property {string[]} anonymous the `anonymous-ip` flags set
 */

const utf8 = new TextDecoder();

function readString(call, at, length) {
  if (length === 0) return "";
  const end = Math.min(at + Math.ceil(length / 4), call.length);
  const bytes = new Uint8Array(call.buffer, call.byteOffset + at * 4, (end - at) * 4);
  return utf8.decode(bytes.subarray(0, Math.min(length, bytes.length)));
}

function ipv4(word) {
  return `${word >>> 24}.${(word >>> 16) & 0xff}.${(word >>> 8) & 0xff}.${word & 0xff}`;
}

/** An IPv6 address's text as Rust's `Ipv6Addr` writes it (RFC 5952). */
export function ipv6Text(groups) {
  // IPv4-mapped (::ffff:a.b.c.d) is written with its IPv4 part.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${groups[6] >>> 8}.${groups[6] & 0xff}.${groups[7] >>> 8}.${groups[7] & 0xff}`;
  }
  // The longest run of two or more zero groups (the first of equals).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs) => gs.map((g) => g.toString(16)).join(":");
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLength))}`;
}

// The decoding is written for a JavaScript engine without a JIT (a
// policy's runs interpreted): indexed loops rather than `for...of` and
// array destructuring (whose iterator protocol allocates on every step),
// and the request's fields decoded when first read, since most policies
// read few of them or none. A call that allocates little also leaves the
// garbage collector little to do, and its pauses are what a call's budget
// must cover.

/** One player request, its fields decoded from the call's words on first use. */
class CallRequest {
  constructor(call, headerNames) {
    this._call = call;
    this._names = headerNames;
    this._geo = undefined;
    this._headers = undefined;
    this._client = undefined;
  }
  get kind() {
    return REQUEST_KINDS[this._call[0] & 0xff] ?? "live";
  }
  get protocol() {
    const protocol = (this._call[0] >>> 8) & 0xff;
    return protocol === 0 ? null : (PROTOCOLS[protocol - 1] ?? null);
  }
  get encryption() {
    return ENCRYPTIONS[(this._call[0] >>> 16) & 0xff] ?? "none";
  }
  get target() {
    return readString(this._call, REQUEST_HEADER_WORDS, this._call[9]);
  }
  get query() {
    const call = this._call;
    if ((call[0] & REQUEST_HAS_QUERY) === 0) return null;
    return readString(call, REQUEST_HEADER_WORDS + Math.ceil(call[9] / 4), call[10]);
  }
  get client() {
    if (this._client === undefined) {
      const call = this._call;
      if ((call[0] & REQUEST_CLIENT_V6) !== 0) {
        const groups = [];
        for (let i = 1; i <= 4; i++) groups.push(call[i] >>> 16, call[i] & 0xffff);
        this._client = ipv6Text(groups);
      } else {
        this._client = ipv4(call[1]);
      }
    }
    return this._client;
  }
  get clientV6() {
    return (this._call[0] & REQUEST_CLIENT_V6) !== 0;
  }
  get topologyVersion() {
    return toBig(this._call[6] >>> 0, this._call[5] >>> 0);
  }
  get seed() {
    return toBig(this._call[8] >>> 0, this._call[7] >>> 0);
  }
  get tls() {
    return (this._call[0] & REQUEST_TLS) !== 0;
  }
  get geo() {
    if (this._geo === undefined) this._geo = decodeGeo(this._call);
    return this._geo;
  }
  get headers() {
    if (this._headers === undefined) this._headers = decodeHeaders(this._call, this._names);
    return this._headers;
  }
  /** Every field, for `JSON.stringify` and logging. */
  toJSON() {
    return {
      kind: this.kind,
      protocol: this.protocol,
      encryption: this.encryption,
      target: this.target,
      query: this.query,
      client: this.client,
      clientV6: this.clientV6,
      topologyVersion: this.topologyVersion.toString(),
      seed: this.seed.toString(),
      tls: this.tls,
      geo: this.geo,
      headers: Object.fromEntries(this.headers),
    };
  }
}

/** Where the geography words of a call start. */
function geoAt(call) {
  return REQUEST_HEADER_WORDS + Math.ceil(call[9] / 4) + Math.ceil(call[10] / 4);
}

function decodeGeo(call) {
  const geo = { country: null, asn: null, location: null, anonymous: [] };
  const at = geoAt(call);
  if (at + GEO_WORDS > call.length) return geo;
  const country = call[at];
  const asn = call[at + 1];
  const geoFlags = call[at + 4];
  if (country !== 0) geo.country = String.fromCharCode(country & 0xff, (country >>> 8) & 0xff);
  if (asn !== 0) geo.asn = asn;
  if ((geoFlags & GEO_HAS_LOCATION) !== 0) {
    const f = new Float32Array(call.slice(at + 2, at + 4).buffer);
    // As the Rust SDK: a location that is no place on Earth is unknown.
    if (Math.abs(f[0]) <= 90 && Math.abs(f[1]) <= 180) {
      geo.location = { latitude: f[0], longitude: f[1] };
    }
  }
  for (let i = 0; i < ANONYMOUS_IP.length; i++) {
    if ((geoFlags >>> (8 + i)) & 1) geo.anonymous.push(ANONYMOUS_IP[i]);
  }
  return geo;
}

/** The declared headers' values (null: absent), by declared name. */
function decodeHeaders(call, headerNames) {
  const headers = new Map();
  let at = geoAt(call) + GEO_WORDS;
  if (at > call.length) {
    for (let i = 0; i < headerNames.length; i++) headers.set(headerNames[i], null);
    return headers;
  }
  const count = call[at++] ?? 0;
  // As the Rust SDK: values past the declared names are dropped.
  for (let i = 0; i < headerNames.length; i++) {
    const name = headerNames[i];
    if (i >= count || at >= call.length) {
      headers.set(name, null);
      continue;
    }
    const length = call[at++];
    if (length === HEADER_ABSENT) {
      headers.set(name, null);
      continue;
    }
    headers.set(name, readString(call, at, length));
    at += Math.ceil(length / 4);
  }
  return headers;
}

/** Where the tiers of a call start (after the request and its headers). */
function tiersAt(call) {
  let at = geoAt(call);
  if (at + GEO_WORDS > call.length) return call.length;
  at += GEO_WORDS;
  const count = call[at++] ?? 0;
  for (let i = 0; i < count && at < call.length; i++) {
    const length = call[at++];
    if (length !== HEADER_ABSENT) at += Math.ceil(length / 4);
  }
  return at;
}

/**
 * Decodes tier headers and (for `select`) their candidates; the tiers go
 * into `tiers`, the words after them are returned. `health` maps a server
 * to its figures (or is null).
 */
function decodeTiers(call, at, health, tiers) {
  const count = Math.min(call[at] ?? 0, Math.floor((call.length - at - 1) / TIER_WORDS));
  at += 1;
  const headers = at;
  at += count * TIER_WORDS;
  for (let t = 0; t < count; t++) {
    const h = headers + t * TIER_WORDS;
    const tierFlags = call[h + 1];
    const n = Math.min(call[h + 3], Math.floor((call.length - at) / CANDIDATE_WORDS));
    const candidates = new Array(n);
    for (let c = 0; c < n; c++, at += CANDIDATE_WORDS) {
      const server = call[at];
      candidates[c] = new Candidate(
        server,
        call[at + 1],
        call[at + 2],
        call[at + 3] & 0xff,
        health === null ? null : (health.get(server) ?? null),
      );
    }
    const bySubnet = (tierFlags & TIER_HAS_SUBNET) !== 0;
    const byDistance = !bySubnet && (tierFlags & TIER_BY_DISTANCE) !== 0;
    tiers.push(
      new Tier(
        call[h],
        (tierFlags & TIER_REGION_ACTIVE) !== 0,
        bySubnet ? call[h + 2] : null,
        byDistance ? call[h + 2] : null,
        candidates,
      ),
    );
  }
  return at;
}

/**
 * Decodes the words of a `select` call. `health` is `select`'s second
 * argument (a list of `{server, health}`, or undefined).
 * @returns {{request: Request, tiers: Tier[]}}
 */
export function decodeSelect(call, health, headerNames = []) {
  let byServer = null;
  if (health && health.length > 0) {
    byServer = new Map();
    for (let i = 0; i < health.length; i++) byServer.set(health[i].server, health[i].health);
  }
  const tiers = [];
  decodeTiers(call, tiersAt(call), byServer, tiers);
  return { request: new CallRequest(call, headerNames), tiers };
}

/**
 * Decodes the words of a `steer` call: the request, the client's tiers
 * (without candidates) and the pathways offered.
 */
export function decodeSteer(call, headerNames = []) {
  const request = new CallRequest(call, headerNames);
  const tiers = [];
  let at = decodeTiers(call, tiersAt(call), null, tiers);
  const count = Math.min(call[at] ?? 0, Math.floor((call.length - at - 1) / PATHWAY_WORDS));
  at += 1;
  const pathways = [];
  for (let i = 0; i < count; i++, at += PATHWAY_WORDS) {
    const flags = call[at + 1];
    pathways.push({
      pathway: call[at],
      current: (flags & PATHWAY_CURRENT) !== 0,
      clone: (flags & PATHWAY_CLONE) !== 0,
      tier: call[at + 2] === PATHWAY_NO_TIER ? null : call[at + 2],
      edgesUp: call[at + 3],
      edgesTotal: call[at + 4],
      throughputKbps: (flags & PATHWAY_HAS_THROUGHPUT) !== 0 ? call[at + 5] : null,
    });
  }
  return { request, tiers, pathways };
}

// ---- randomness and hashing, as the Rust SDK does them ----------------------
//
// 64-bit arithmetic on pairs of 32-bit halves: a JavaScript engine without
// a JIT (a policy's) pays for every BigInt it makes, and a call draws and
// hashes on every request. The BigInt forms are for the API.

// Every intermediate below is a whole number under 2^53, so it is exact in
// a double: `(x / 0x10000) >>> 0` is floor(x / 2^16) and `x & 0xffff` its
// low 16 bits, with no call into `Math` (a native call costs an
// interpreter far more than arithmetic does).

/** hi:lo * bhi:blo mod 2^64, into `out` ([hi, lo]). */
function mul64(hi, lo, bhi, blo, out) {
  const a0 = lo & 0xffff, a1 = lo >>> 16, a2 = hi & 0xffff, a3 = hi >>> 16;
  const b0 = blo & 0xffff, b1 = blo >>> 16, b2 = bhi & 0xffff, b3 = bhi >>> 16;
  const r0 = a0 * b0;
  const r1 = a1 * b0 + a0 * b1 + ((r0 / 0x10000) >>> 0);
  const r2 = a2 * b0 + a1 * b1 + a0 * b2 + ((r1 / 0x10000) >>> 0);
  // Only the low 16 bits of the top limb count.
  const r3 = (a3 * b0 + a2 * b1 + a1 * b2 + a0 * b3 + ((r2 / 0x10000) >>> 0)) & 0xffff;
  out[0] = ((r3 << 16) | (r2 & 0xffff)) >>> 0;
  out[1] = (((r1 & 0xffff) << 16) | (r0 & 0xffff)) >>> 0;
}

const scratch = [0, 0];

/** The SplitMix64 finaliser on halves, into `out`. */
function mixHalves(hi, lo, out) {
  // z ^= z >> 30
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0;
  hi = (hi ^ (hi >>> 30)) >>> 0;
  mul64(hi, lo, 0xbf58476d, 0x1ce4e5b9, out);
  hi = out[0];
  lo = out[1];
  // z ^= z >> 27
  lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
  hi = (hi ^ (hi >>> 27)) >>> 0;
  mul64(hi, lo, 0x94d049bb, 0x133111eb, out);
  hi = out[0];
  lo = out[1];
  // z ^= z >> 31
  out[1] = (lo ^ ((lo >>> 31) | (hi << 1))) >>> 0;
  out[0] = (hi ^ (hi >>> 31)) >>> 0;
}

const toBig = (hi, lo) => (BigInt(hi) << 32n) | BigInt(lo);
const MASK32 = 0xffffffffn;

/** The 64-bit finaliser of SplitMix64 (a BigInt in, a BigInt out). */
export function mix64(z) {
  z = BigInt.asUintN(64, z);
  mixHalves(Number(z >> 32n), Number(z & MASK32), scratch);
  return toBig(scratch[0], scratch[1]);
}

/** SplitMix64, the generator behind the host's `random`. */
export class SplitMix64 {
  constructor(seed) {
    const s = BigInt.asUintN(64, BigInt(seed));
    this.hi = Number(s >> 32n);
    this.lo = Number(s & MASK32);
    this.out = [0, 0];
  }
  /** Advances; the 64 bits are in `this.out` ([hi, lo]). */
  step() {
    const lo = this.lo + 0x7f4a7c15;
    this.lo = lo >>> 0;
    this.hi = (this.hi + 0x9e3779b9 + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    mixHalves(this.hi, this.lo, this.out);
    return this.out;
  }
  /** The next 64 random bits, as a BigInt. */
  next() {
    const out = this.step();
    return toBig(out[0], out[1]);
  }
}

let generator = new SplitMix64(0n);

/** Seeds `random()` from a call's seed words. */
function seedCall(lo, hi) {
  generator.hi = hi >>> 0;
  generator.lo = lo >>> 0;
}

/** 64 random bits (a BigInt), from the generator seeded with the request's seed. */
export function random() {
  return generator.next();
}

const encoder = new TextEncoder();

/** FNV-1a then mix64 of a key, into `out`. */
function hashHalves(key, out) {
  const bytes = typeof key === "string" ? encoder.encode(key) : key;
  // FNV-1a in two 32-bit halves: the 64-bit prime is 2^40 + 0x1b3.
  let lo = 0x84222325;
  let hi = 0xcbf29ce4;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    // (hi:lo) * (2^40 + 0x1b3) mod 2^64
    const loMul = lo * 0x1b3;
    hi = (hi * 0x1b3 + ((loMul / 0x100000000) >>> 0) + ((lo << 8) >>> 0)) >>> 0;
    lo = loMul >>> 0;
  }
  mixHalves(hi, lo, out);
}

/** A fast 64-bit hash of bytes or a string's UTF-8 (FNV-1a, then mix64). */
export function hash64(key) {
  hashHalves(key, scratch);
  return toBig(scratch[0], scratch[1]);
}

/** 32 x 32 -> 64 bits, into `out` ([hi, lo]). */
function mul32(a, b, out) {
  const a0 = a & 0xffff, a1 = a >>> 16;
  const b0 = b & 0xffff, b1 = b >>> 16;
  const low = a0 * b0;
  const mid = a1 * b0 + a0 * b1 + ((low / 0x10000) >>> 0);
  const high = a1 * b1 + ((mid / 0x10000) >>> 0);
  out[0] = high >>> 0;
  out[1] = (((mid & 0xffff) << 16) | (low & 0xffff)) >>> 0;
}

/** floor(draw * total / 2^64) for a draw of halves and total < 2^32. */
function scaleDraw(hi, lo, total) {
  mul32(hi, total, scratch);
  const a = scratch[0];
  const b = scratch[1];
  mul32(lo, total, scratch);
  return a + (b + scratch[0] >= 0x100000000 ? 1 : 0);
}

const drawScratch = [0, 0];

/** Selection helpers: weighted random choice and rendezvous hashing. */
export const choose = {
  /**
   * One item drawn at random in proportion to `weight(item)` (items of
   * weight 0 are never drawn); `undefined` when none has a weight. The
   * draw is `random()` unless given (a BigInt of 64 bits).
   */
  weighted(items, weight, draw) {
    if (!Array.isArray(items)) items = Array.from(items);
    let total = 0;
    for (let i = 0; i < items.length; i++) total += weight(items[i]);
    if (total === 0) return undefined;
    let hi;
    let lo;
    if (draw === undefined) {
      const out = generator.step();
      hi = out[0];
      lo = out[1];
    } else {
      const d = BigInt.asUintN(64, draw);
      hi = Number(d >> 32n);
      lo = Number(d & MASK32);
    }
    let point;
    if (total < 0x100000000) {
      point = scaleDraw(hi, lo, total);
    } else {
      point = Number((toBig(hi, lo) * BigInt(total)) >> 64n);
    }
    for (let i = 0; i < items.length; i++) {
      const w = weight(items[i]);
      if (point < w) return items[i];
      point -= w;
    }
    return undefined;
  },

  /**
   * The item weighted rendezvous hashing gives `key` (bytes or a string):
   * the same key goes to the same item while the set does not change, and
   * when an item leaves only its keys move. `id(item)` must be stable per
   * item (a server index); items of weight 0 are skipped.
   */
  rendezvous(key, items, id, weight) {
    hashHalves(key, drawScratch);
    const keyHi = drawScratch[0];
    const keyLo = drawScratch[1];
    if (!Array.isArray(items)) items = Array.from(items);
    let best;
    let bestScore = -Infinity;
    for (let n = 0; n < items.length; n++) {
      const item = items[n];
      const w = weight(item);
      if (w === 0) continue;
      const i = id(item);
      if (typeof i === "bigint" || i > 0xffffffff) {
        const big = BigInt.asUintN(64, BigInt(i));
        mixHalves(Number(big >> 32n), Number(big & MASK32), scratch);
      } else {
        mixHalves(0, i >>> 0, scratch);
      }
      mixHalves((keyHi ^ scratch[0]) >>> 0, (keyLo ^ scratch[1]) >>> 0, scratch);
      // h >> 11, exactly (53 bits).
      const top = scratch[0] * 0x200000 + (scratch[1] >>> 11);
      const u = (top + 0.5) / 9007199254740992;
      const score = w / -Math.log(u);
      if (best === undefined || score > bestScore) {
        best = item;
        bestScore = score;
      }
    }
    return best;
  },
};

// ---- the host's functions -------------------------------------------------

/** Logs a line to the engine's log, tagged with the policy. */
export function log(level, message) {
  host.log(level, String(message));
}

/** Wall-clock time in milliseconds since the Unix epoch (a BigInt). */
export function nowMs() {
  return host.nowMs();
}

/** The server with this index, in the topology of the current call. */
export function serverInfo(server) {
  return host.lookupServer(server) ?? null;
}

/** The region with this index. */
export function regionInfo(region) {
  return host.lookupRegion(region) ?? null;
}

/** The server group with this index. */
export function groupInfo(group) {
  return host.lookupGroup(group) ?? null;
}

/** The client subnet with this index. */
export function subnetInfo(subnet) {
  return host.lookupSubnet(subnet) ?? null;
}

/** The content-steering pathway with this index. */
export function pathwayInfo(pathway) {
  return host.lookupPathway(pathway) ?? null;
}

// ---- answers --------------------------------------------------------------

/** Sends the player to this server. */
export function chooseServer(server) {
  return { tag: "choose", val: server };
}

/** Refuses the request with this status and reason. */
export function reject(status, reason) {
  return { tag: "reject", val: { status, reason: String(reason) } };
}

/** Sends the player to this absolute URL. */
export function redirect(url) {
  return { tag: "redirect", val: String(url) };
}

function decision(answer) {
  if (typeof answer === "number") return chooseServer(answer);
  if (answer instanceof Candidate) return chooseServer(answer.server);
  if (answer && typeof answer.tag === "string") return answer;
  throw new Error(`select returned ${JSON.stringify(answer)}: return a server index, a candidate, reject(...) or redirect(...)`);
}

// ---- the configuration (MessagePack) ----------------------------------------

/** Decodes MessagePack bytes (what operators write as TOML or JSON). */
export function decodeMessagePack(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n) => {
    if (at + n > bytes.length) throw new Error("configuration: truncated MessagePack");
  };
  const str = (n) => {
    need(n);
    const s = utf8.decode(bytes.subarray(at, at + n));
    at += n;
    return s;
  };
  const bin = (n) => {
    need(n);
    const b = bytes.slice(at, at + n);
    at += n;
    return b;
  };
  const array = (n) => {
    const a = [];
    for (let i = 0; i < n; i++) a.push(value());
    return a;
  };
  const map = (n) => {
    const m = {};
    for (let i = 0; i < n; i++) {
      const k = value();
      m[String(k)] = value();
    }
    return m;
  };
  const read = (n, f) => {
    need(n);
    const v = f(at);
    at += n;
    return v;
  };
  function value() {
    need(1);
    const b = bytes[at++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(read(1, (i) => view.getUint8(i)));
      case 0xc5: return bin(read(2, (i) => view.getUint16(i)));
      case 0xc6: return bin(read(4, (i) => view.getUint32(i)));
      case 0xca: return read(4, (i) => view.getFloat32(i));
      case 0xcb: return read(8, (i) => view.getFloat64(i));
      case 0xcc: return read(1, (i) => view.getUint8(i));
      case 0xcd: return read(2, (i) => view.getUint16(i));
      case 0xce: return read(4, (i) => view.getUint32(i));
      case 0xcf: return safe(read(8, (i) => view.getBigUint64(i)));
      case 0xd0: return read(1, (i) => view.getInt8(i));
      case 0xd1: return read(2, (i) => view.getInt16(i));
      case 0xd2: return read(4, (i) => view.getInt32(i));
      case 0xd3: return safe(read(8, (i) => view.getBigInt64(i)));
      case 0xd9: return str(read(1, (i) => view.getUint8(i)));
      case 0xda: return str(read(2, (i) => view.getUint16(i)));
      case 0xdb: return str(read(4, (i) => view.getUint32(i)));
      case 0xdc: return array(read(2, (i) => view.getUint16(i)));
      case 0xdd: return array(read(4, (i) => view.getUint32(i)));
      case 0xde: return map(read(2, (i) => view.getUint16(i)));
      case 0xdf: return map(read(4, (i) => view.getUint32(i)));
      default:
        throw new Error(`configuration: unsupported MessagePack byte 0x${b.toString(16)} at ${at - 1}`);
    }
  }
  const safe = (big) =>
    big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  if (bytes.length === 0) return {};
  const v = value();
  if (at !== bytes.length) throw new Error(`configuration: ${bytes.length - at} bytes after the value`);
  return v;
}

// ---- the export -------------------------------------------------------------

/**
 * The `policy` interface of a component, from plain functions:
 *
 * - `init(config)` (optional): `config` is the operator's configuration
 *   as an object; throw to refuse it (the engine keeps the previous
 *   policy); return `{ headers: [...] }` to read request headers (at most
 *   16 names), or nothing.
 * - `select(request, tiers)`: a server index, a candidate, `reject(status,
 *   reason)` or `redirect(url)`.
 * - `steer(poll)` (optional): `poll` has `request`, `tiers`, `pathways`
 *   and `state` (a Uint8Array); return `{ priority: [pathway...], ttlS,
 *   state }`, `"stop"`, or nothing for the engine's default order.
 *
 * Use it as `export const policy = exportPolicy({ ... })`.
 */
export function exportPolicy(definition) {
  if (typeof definition?.select !== "function") {
    throw new Error("exportPolicy needs a select(request, tiers) function");
  }
  let headerNames = [];
  return {
    init(config) {
      let parsed;
      try {
        parsed = decodeMessagePack(config);
      } catch (e) {
        throw String(e?.message ?? e);
      }
      let manifest;
      try {
        manifest = definition.init ? definition.init(parsed) : undefined;
      } catch (e) {
        // The engine shows this string as the reason the policy was refused.
        throw String(e?.message ?? e);
      }
      headerNames = (manifest?.headers ?? []).map((h) => String(h).toLowerCase());
      return { headers: headerNames };
    },
    select(call, health) {
      const { request, tiers } = decodeSelect(call, health, headerNames);
      seedCall(call[7], call[8]);
      return decision(definition.select(request, tiers));
    },
    steer(call, state) {
      if (!definition.steer) return { tag: "default-order" };
      const poll = decodeSteer(call, headerNames);
      seedCall(call[7], call[8]);
      poll.state = state;
      const answer = definition.steer(poll);
      if (answer === undefined || answer === null) return { tag: "default-order" };
      if (answer === "stop") return { tag: "stop" };
      return {
        tag: "order",
        val: {
          priority: Array.from(answer.priority ?? []),
          ttlS: answer.ttlS ?? 0,
          state: answer.state ?? new Uint8Array(0),
        },
      };
    },
  };
}
