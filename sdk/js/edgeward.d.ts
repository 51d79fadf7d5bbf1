// Types of the edgeward JavaScript SDK (edgeward.js), for editors and
// TypeScript authors. Contract: edgeward:policy@0.4.0.

export const CONTRACT: "edgeward:policy@0.4.0";
export const REQUEST_KINDS: readonly RequestKind[];
export const PROTOCOLS: readonly Protocol[];
export const ENCRYPTIONS: readonly Encryption[];
export const CandidateState: {
  readonly SERVER_ACTIVE: 1;
  readonly GROUP_ACTIVE: 2;
  readonly SERVES_RESOURCE: 4;
  readonly AVAILABLE: 8;
  readonly ALL: 15;
};

export type RequestKind = "live" | "catchup" | "vod" | "static-file";
export type Protocol = "hls" | "mpd";
export type Encryption = "none" | "widevine" | "playready" | "cenc";
export type AnonymousIp =
  | "anonymous"
  | "vpn"
  | "hosting-provider"
  | "public-proxy"
  | "tor-exit-node"
  | "residential-proxy";
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

export interface Coordinates {
  latitude: number;
  longitude: number;
}

export interface Geo {
  /** ISO 3166-1 alpha-2, upper case. */
  country: string | null;
  asn: number | null;
  location: Coordinates | null;
  anonymous: AnonymousIp[];
}

/** One player request, as the engine parsed it. */
export interface Request {
  kind: RequestKind;
  /** Live and catch-up only. */
  protocol: Protocol | null;
  encryption: Encryption;
  /** The channel or program `epg_id`, or the path below /vod/ or /static/. */
  target: string;
  /** The raw query string without `?`. */
  query: string | null;
  /** The client address as text (IPv6 as Rust writes it). */
  client: string;
  clientV6: boolean;
  topologyVersion: bigint;
  /** This request's seed: `random()` and `choose.weighted` draw from it. */
  seed: bigint;
  /** The player came over TLS: only servers with a TLS port are offered. */
  tls: boolean;
  geo: Geo;
  /** The headers the policy declared in `init`, lower case, in order. */
  headers: Map<string, string | null>;
}

export interface Health {
  rttUs?: number;
  figures: { name: string; value: number }[];
}

export class Candidate {
  /** Index of the server (see `serverInfo`). */
  server: number;
  /** Index of the server group it was reached through. */
  group: number;
  /** 0: never drawn at random. */
  weight: number;
  /** `CandidateState` bits. */
  state: number;
  health: Health | null;
  isEligible(): boolean;
  readonly serverActive: boolean;
  readonly groupActive: boolean;
  readonly servesResource: boolean;
  readonly available: boolean;
}

export class Tier {
  region: number;
  regionActive: boolean;
  subnet: number | null;
  distanceKm: number | null;
  candidates: Candidate[];
  /** The candidates a policy may pick (none when the region is inactive). */
  eligible(): Candidate[];
}

export interface PathwayOffer {
  pathway: number;
  current: boolean;
  clone: boolean;
  tier: number | null;
  edgesUp: number;
  edgesTotal: number;
  throughputKbps: number | null;
}

export interface SteerPoll {
  request: Request;
  tiers: Tier[];
  pathways: PathwayOffer[];
  /** What this policy returned as state for the session's last poll. */
  state: Uint8Array;
}

export type Decision =
  | { tag: "choose"; val: number }
  | { tag: "reject"; val: { status: number; reason: string } }
  | { tag: "redirect"; val: string };

export interface ServerInfo {
  id: string;
  host: string;
  port: number;
  tlsPort?: number;
  weight: number;
  active: boolean;
}
export interface RegionInfo {
  id: string;
  name: string;
  active: boolean;
  location?: Coordinates;
}
export interface GroupInfo {
  id: string;
  active: boolean;
}
export interface SubnetInfo {
  cidr: string;
  name: string;
  region: number;
}
export interface PathwayInfo {
  id: string;
  host: string;
  group?: number;
  base?: number;
}

export interface PolicyDefinition<Config = Record<string, unknown>> {
  /** Throw to refuse the configuration; return the headers to read. */
  init?(config: Config): { headers?: string[] } | void;
  select(request: Request, tiers: Tier[]): number | Candidate | Decision;
  steer?(poll: SteerPoll): { priority: number[]; ttlS?: number; state?: Uint8Array } | "stop" | void;
}

/** The `policy` export of a component: `export const policy = exportPolicy({...})`. */
export function exportPolicy<Config>(definition: PolicyDefinition<Config>): unknown;

export const choose: {
  weighted<T>(items: Iterable<T>, weight: (item: T) => number, draw?: bigint): T | undefined;
  rendezvous<T>(
    key: string | Uint8Array,
    items: Iterable<T>,
    id: (item: T) => number | bigint,
    weight: (item: T) => number,
  ): T | undefined;
};

export function random(): bigint;
export function hash64(key: string | Uint8Array): bigint;
export function mix64(z: bigint): bigint;
export class SplitMix64 {
  constructor(seed: bigint | number);
  next(): bigint;
}

export function log(level: LogLevel, message: unknown): void;
export function nowMs(): bigint;
export function serverInfo(server: number): ServerInfo | null;
export function regionInfo(region: number): RegionInfo | null;
export function groupInfo(group: number): GroupInfo | null;
export function subnetInfo(subnet: number): SubnetInfo | null;
export function pathwayInfo(pathway: number): PathwayInfo | null;

export function chooseServer(server: number): Decision;
export function reject(status: number, reason: string): Decision;
export function redirect(url: string): Decision;

export function decodeSelect(
  call: Uint32Array,
  health: { server: number; health: Health }[] | undefined,
  headerNames?: string[],
): { request: Request; tiers: Tier[] };
export function decodeSteer(
  call: Uint32Array,
  headerNames?: string[],
): { request: Request; tiers: Tier[]; pathways: PathwayOffer[] };
export function decodeMessagePack(bytes: Uint8Array): unknown;
export function ipv6Text(groups: number[]): string;
