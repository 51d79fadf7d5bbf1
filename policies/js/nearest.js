// nearest, in JavaScript: the engine's default rule, as policies/nearest
// (Rust) has it. The first tier (in the topology's order of preference)
// that has an eligible edge wins; within it, an edge is drawn at random in
// proportion to its weight (0: never). No eligible edge anywhere: 503 with
// the configured reason.
//
// Configuration (optional): reason = "text of the 503".
//
// It gives the Rust nearest's answers for the same requests and seeds
// (tests/e2e/javascript.rs replays one's decisions through the other).

import { choose, exportPolicy, reject } from "../../sdk/js/edgeward.js";

let reason = "no available edge server for this client";

export const policy = exportPolicy({
  init(config) {
    for (const key of Object.keys(config)) {
      if (key !== "reason") throw new Error(`unknown field \`${key}\`, expected \`reason\``);
    }
    if (config.reason !== undefined) {
      if (typeof config.reason !== "string") {
        throw new Error(`reason: expected a string, got ${JSON.stringify(config.reason)}`);
      }
      reason = config.reason;
    }
  },
  select(_request, tiers) {
    for (const tier of tiers) {
      const candidate = choose.weighted(tier.eligible(), (c) => c.weight);
      if (candidate) return candidate;
    }
    return reject(503, reason);
  },
});
