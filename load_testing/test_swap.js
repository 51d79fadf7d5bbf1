// Load while the active policy is swapped 100 times and the topology 20
// times through the admin API. Every player answer must be a redirect.
//
//   edgeward policy export /tmp/nearest.wasm
//   k6 run -e POLICY_WASM=/tmp/nearest.wasm load_testing/test_swap.js
//
// Environment: BASE_URL (http://127.0.0.1:8080), ADMIN_URL
// (http://127.0.0.1:9090), ADMIN_TOKEN, TOPOLOGY (the file the engine
// serves; default the embedded demo's source), POLICY_WASM (a component to
// upload as the second version), SWAP_PAUSE (seconds between swaps, 0.1),
// VUS (20), DURATION (30s).

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { loadTopology, randomClient, livePaths, catchupPaths, pick } from './lib.js';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const ADMIN = __ENV.ADMIN_URL || 'http://127.0.0.1:9090';
const TOPOLOGY_FILE = __ENV.TOPOLOGY || '../engine/demo/topology.json';
const topologyText = open(TOPOLOGY_FILE);
const topology = JSON.parse(topologyText);
const policyWasm = __ENV.POLICY_WASM ? open(__ENV.POLICY_WASM, 'b') : null;

const paths = livePaths(topology).concat(catchupPaths(topology), ['/vod/films/movie.mp4', '/static/logo.png']);
const swaps = new Counter('edgeward_swaps');

export const options = {
  scenarios: {
    players: {
      executor: 'constant-vus',
      exec: 'player',
      vus: parseInt(__ENV.VUS || '20', 10),
      duration: __ENV.DURATION || '30s',
    },
    operator: {
      executor: 'shared-iterations',
      exec: 'operator',
      vus: 1,
      iterations: 100,
      startTime: '2s',
      maxDuration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    'checks{scenario:players}': ['rate==1'],
    'http_req_failed{scenario:players}': ['rate==0'],
    'http_req_duration{scenario:players}': ['p(95)<50', 'p(99)<100'],
    'checks{scenario:operator}': ['rate==1'],
    edgeward_swaps: ['count==120'],
  },
};

function adminParams(contentType) {
  const headers = { 'Content-Type': contentType };
  if (__ENV.ADMIN_TOKEN) headers.Authorization = `Bearer ${__ENV.ADMIN_TOKEN}`;
  return { headers, tags: { name: 'admin' } };
}

export function setup() {
  if (policyWasm) {
    const r = http.post(`${ADMIN}/policies/k6-swap`, policyWasm, adminParams('application/wasm'));
    check(r, { 'second policy uploaded': (res) => res.status === 201 });
  }
  const list = http.get(`${ADMIN}/policies`, adminParams('application/json')).json('policies');
  const versions = list.map((p) => p.version);
  if (versions.length < 2) {
    throw new Error('need two policy versions to swap: set POLICY_WASM (see the header of this script)');
  }
  // A second valid topology: the same with every weight bumped.
  const variant = JSON.parse(topologyText);
  for (const s of variant.servers) s.weight = (s.weight === undefined ? 1 : s.weight) + 1;
  return { versions, topologies: [JSON.stringify(variant), topologyText] };
}

export function player() {
  const client = randomClient(topology, 0.03);
  const res = http.get(`${BASE}${pick(paths)}`, {
    redirects: 0,
    headers: { 'X-Real-IP': client },
    tags: { name: 'player' },
  });
  check(res, {
    'status is 302': (r) => r.status === 302,
    'Location is absolute': (r) => /^https?:\/\//.test(r.headers.Location || ''),
  });
}

export function operator(data) {
  const i = __ITER;
  const version = data.versions[i % data.versions.length];
  const r = http.post(`${ADMIN}/policies/${version}/activate`, null, adminParams('application/json'));
  check(r, { 'policy activated': (res) => res.status === 200 });
  swaps.add(1);
  if (i % 5 === 0) {
    const body = data.topologies[(i / 5) % 2];
    const t = http.put(`${ADMIN}/topology`, body, adminParams('application/json'));
    check(t, { 'topology replaced': (res) => res.status === 200 });
    swaps.add(1);
  }
  sleep(parseFloat(__ENV.SWAP_PAUSE || '0.1'));
}
