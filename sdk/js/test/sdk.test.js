// The JavaScript SDK against the golden vectors the contract's codec and
// the Rust SDK wrote (sdk/tests/js_vectors.rs): same decoding, same
// choices, same hashes, same random numbers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CONTRACT,
  SplitMix64,
  choose,
  decodeMessagePack,
  decodeSelect,
  exportPolicy,
  hash64,
  reject,
} from "../edgeward.js";
import { testing } from "../testing/host.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url)));

test("the vectors are for this SDK's contract", () => {
  assert.equal(vectors.contract, CONTRACT);
});

test("packed calls decode as the Rust SDK decodes them", () => {
  for (const v of vectors.decode) {
    const { request, tiers } = decodeSelect(Uint32Array.from(v.words), undefined, v.headerNames);
    const got = {
      kind: request.kind,
      protocol: request.protocol,
      encryption: request.encryption,
      target: request.target,
      query: request.query,
      client: request.client,
      clientV6: request.clientV6,
      tls: request.tls,
      geo: request.geo,
      topologyVersion: request.topologyVersion.toString(),
      seed: request.seed.toString(),
      headers: [...request.headers],
      tiers: tiers.map((t) => ({
        region: t.region,
        regionActive: t.regionActive,
        subnet: t.subnet,
        distanceKm: t.distanceKm,
        candidates: t.candidates.map((c) => ({
          server: c.server,
          group: c.group,
          weight: c.weight,
          state: c.state,
          eligible: c.isEligible(),
        })),
        eligible: t.eligible().map((c) => c.server),
      })),
    };
    assert.deepEqual(got, v.decoded, `words ${JSON.stringify(v.words)}`);
  }
});

test("SplitMix64 gives the host's numbers", () => {
  for (const v of vectors.splitmix) {
    const g = new SplitMix64(BigInt(v.seed));
    assert.deepEqual(v.outputs.map(() => g.next().toString()), v.outputs, `seed ${v.seed}`);
  }
});

test("hash64 hashes like the Rust SDK", () => {
  for (const v of vectors.hash64) {
    assert.equal(hash64(v.key).toString(), v.hash, `key ${JSON.stringify(v.key)}`);
    assert.equal(hash64(new TextEncoder().encode(v.key)).toString(), v.hash);
  }
});

test("choose.weighted draws like the Rust SDK", () => {
  for (const v of vectors.weighted) {
    const items = v.weights.map((_, i) => i);
    const got = choose.weighted(items, (i) => v.weights[i], BigInt(v.draw));
    assert.equal(got ?? null, v.index, `weights ${v.weights}, draw ${v.draw}`);
  }
});

test("choose.rendezvous picks like the Rust SDK", () => {
  for (const v of vectors.rendezvous) {
    const items = v.ids.map((_, i) => i);
    const got = choose.rendezvous(v.key, items, (i) => v.ids[i], (i) => v.weights[i]);
    assert.equal(got === undefined ? null : v.ids[got], v.id, `key ${v.key}, ids ${v.ids}`);
  }
});

test("MessagePack configurations decode, and bad ones are refused", () => {
  // {"reason": "x", "n": [1, -1, 300, 1.5, true, null]}
  const bytes = Uint8Array.from([
    0x82, 0xa6, ...new TextEncoder().encode("reason"), 0xa1, 0x78, 0xa1, 0x6e, 0x96, 0x01, 0xff,
    0xcd, 0x01, 0x2c, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc3, 0xc0,
  ]);
  assert.deepEqual(decodeMessagePack(bytes), { reason: "x", n: [1, -1, 300, 1.5, true, null] });
  assert.deepEqual(decodeMessagePack(new Uint8Array(0)), {});
  assert.throws(() => decodeMessagePack(Uint8Array.from([0x82, 0xa1])), /truncated/);
  assert.throws(() => decodeMessagePack(Uint8Array.from([0xc1])), /0xc1/);
});

test("exportPolicy hides the wire format", () => {
  const words = Uint32Array.from(vectors.decode[0].words);
  const policy = exportPolicy({
    init(config) {
      if (config.refuse) throw new Error(`refused: ${config.refuse}`);
      return { headers: ["User-Agent"] };
    },
    select(request, tiers) {
      const c = choose.weighted(tiers[0].eligible(), (c) => c.weight);
      return c ?? reject(503, "none");
    },
  });
  assert.deepEqual(policy.init(new Uint8Array(0)), { headers: ["user-agent"] });
  // {"refuse": "no"}: the reason is thrown as a string (the WIT's err).
  const refuse = Uint8Array.from([0x81, 0xa6, ...new TextEncoder().encode("refuse"), 0xa2, 0x6e, 0x6f]);
  assert.throws(() => policy.init(refuse), (e) => e === "refused: no");
  const answer = policy.select(words, undefined);
  assert.equal(answer.tag, "choose");
  // The draw is the first of SplitMix64 seeded with the request's seed.
  const draw = new SplitMix64(BigInt(vectors.decode[0].decoded.seed)).next();
  const eligible = vectors.decode[0].decoded.tiers[0].candidates.filter((c) => c.eligible);
  const expected = choose.weighted(eligible, (c) => c.weight, draw).server;
  assert.equal(answer.val, expected);
  assert.deepEqual(policy.steer(words, new Uint8Array(0)), { tag: "default-order" });
  assert.throws(() => exportPolicy({}), /select/);
});

test("the stand-in host answers from its tables", async () => {
  const sdk = await import("../edgeward.js");
  testing.reset();
  testing.servers.set(0, { id: "e1", host: "e1.example", port: 80, tlsPort: undefined, weight: 1, active: true });
  assert.equal(sdk.serverInfo(0).id, "e1");
  assert.equal(sdk.serverInfo(1), null);
  sdk.log("info", "hello");
  assert.deepEqual(testing.logs, [{ level: "info", message: "hello" }]);
});
