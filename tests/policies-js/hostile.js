// A JavaScript policy that misbehaves on request, for the sandbox tests:
// the path of a VOD request says how (`/vod/loop`, `/vod/throw`,
// `/vod/spam`, `/vod/alloc`; `/vod/grow` answers, keeping memory); any other request gets the first eligible
// candidate of the first tier that has one (eligible: all four
// candidate-state bits set and a weight above 0), else 503. It decodes the
// packed call by hand (see `policy.select` in wit/policy.wit).
const ELIGIBLE = 0b1111;
const VOD = 2;

function words(call, at) {
  return Math.ceil(call[at] / 4);
}

/** The target (channel, program or path), from its little-endian words. */
function target(call) {
  const length = call[9];
  const bytes = new Uint8Array(call.buffer, call.byteOffset + 11 * 4, length);
  return new TextDecoder().decode(bytes);
}

// What `/vod/grow` keeps: a quarter of a MiB more on every such call.
const kept = [];

function misbehave(how) {
  switch (how) {
    case "grow":
      kept.push(new Uint8Array(256 * 1024).fill(kept.length & 0xff));
      return;
    case "loop":
      for (;;) {}
    case "throw":
      throw new Error("thrown on purpose");
    case "spam":
      // Without end: the call runs out of fuel, what it printed is
      // rate-limited on its way to the engine's log.
      for (let i = 0; ; i++) console.log(`spam line ${i}`);
    case "alloc": {
      const hoard = [];
      for (;;) hoard.push(new Array(1 << 16).fill(hoard.length));
    }
  }
}

export const policy = {
  init(_config) {
    console.log("hostile.js: ready");
    return { headers: [] };
  },
  select(call, _health) {
    if ((call[0] & 0xff) === VOD) misbehave(target(call));
    let at = 11 + words(call, 9) + words(call, 10) + 5;
    const headers = call[at++];
    for (let h = 0; h < headers; h++) {
      const len = call[at++];
      at += len === 0xffffffff ? 0 : Math.ceil(len / 4);
    }
    const tiers = call[at++];
    const counts = [];
    for (let t = 0; t < tiers; t++) {
      counts.push(call[at + 3]);
      at += 4;
    }
    for (const count of counts) {
      for (let c = 0; c < count; c++) {
        const [server, , weight, state] = call.subarray(at, at + 4);
        at += 4;
        if ((state & ELIGIBLE) === ELIGIBLE && weight > 0) {
          return { tag: "choose", val: server };
        }
      }
    }
    return { tag: "reject", val: { status: 503, reason: "no eligible edge" } };
  },
  steer(_call, _state) {
    return { tag: "default-order" };
  },
};
