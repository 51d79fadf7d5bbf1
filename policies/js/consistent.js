// consistent, in JavaScript: as policies/consistent (Rust) has it. The
// first tier with an eligible edge wins; within it, weighted rendezvous
// hashing of the channel, program or asset (or of the client address)
// picks the edge, so that one piece of content stays on one edge (its
// cache) while that edge is up, and only its keys move when it goes.
//
// Configuration (optional): key = "target" (default) or "client".
//
// It gives the Rust consistent's answers for the same requests
// (tests/e2e/javascript.rs replays one's decisions through the other).

import { choose, exportPolicy, reject } from "../../sdk/js/edgeward.js";

let byClient = false;

/** The client key the Rust policy hashes: IPv4's four bytes, IPv6's text. */
function clientKey(request) {
  if (request.clientV6) return request.client;
  return Uint8Array.from(request.client.split(".").map(Number));
}

export const policy = exportPolicy({
  init(config) {
    for (const key of Object.keys(config)) {
      if (key !== "key") throw new Error(`unknown field \`${key}\`, expected \`key\``);
    }
    const key = config.key ?? "target";
    if (key !== "target" && key !== "client") {
      throw new Error(`key: unknown variant \`${key}\`, expected \`target\` or \`client\``);
    }
    byClient = key === "client";
  },
  select(request, tiers) {
    const key = byClient ? clientKey(request) : request.target;
    for (const tier of tiers) {
      const pick = choose.rendezvous(key, tier.eligible(), (c) => c.server, (c) => c.weight);
      if (pick) return pick;
    }
    return reject(503, "no available edge server for this client");
  },
});
