// Shared helpers for the k6 scripts: client addresses drawn from the
// topology's subnets, and the requests that topology can answer.

export function loadTopology(path) {
  return JSON.parse(open(path));
}

function randInt(n) {
  return Math.floor(Math.random() * n);
}

// A random address inside an IPv4 or IPv6 CIDR.
export function addressIn(cidr) {
  const [net, lenText] = cidr.split('/');
  const len = parseInt(lenText, 10);
  if (net.includes(':')) {
    // Keep the network's first groups and randomise the last one.
    const groups = net.split('::')[0].split(':').filter((g) => g !== '');
    while (groups.length < 7) groups.push('0');
    groups.length = 7;
    return `${groups.join(':')}:${(1 + randInt(0xfffe)).toString(16)}`;
  }
  const octets = net.split('.').map((o) => parseInt(o, 10));
  let value = ((octets[0] << 24) >>> 0) + (octets[1] << 16) + (octets[2] << 8) + octets[3];
  const hostBits = 32 - len;
  if (hostBits > 1) {
    value += 1 + randInt(Math.min(2 ** hostBits - 2, 0x7fffffff));
  }
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export function randomClient(topology, unmatchedShare) {
  if (Math.random() < unmatchedShare || topology.subnets.length === 0) {
    return `198.51.100.${1 + randInt(250)}`;
  }
  return addressIn(topology.subnets[randInt(topology.subnets.length)].cidr);
}

const SUFFIX = { none: '', widevine: '_wv', playready: '_pr', cenc: '_cenc' };
const EXT = { hls: 'm3u8', mpd: 'mpd' };

// Every live URL the topology serves: `{path, kind}`.
export function livePaths(topology) {
  const paths = [];
  for (const ch of topology.channels) {
    if (ch.active === false) continue;
    for (const s of ch.streams) {
      if (s.active === false) continue;
      paths.push(`/btv/live/${s.protocol}${SUFFIX[s.encryption]}/${ch.epg_id}.${EXT[s.protocol]}`);
    }
  }
  return paths;
}

// Every catch-up URL the topology serves.
export function catchupPaths(topology) {
  const paths = [];
  for (const p of topology.programs || []) {
    for (const r of p.records) {
      if (r.status !== 'completed') continue;
      paths.push(`/btv/catchup/${r.protocol}${SUFFIX[r.encryption]}/${p.epg_id}.${EXT[r.protocol]}`);
    }
  }
  return paths;
}

export function pick(list) {
  return list[randInt(list.length)];
}
