// Live requests over every protocol and encryption the topology serves,
// from client addresses drawn from its subnets (3 % unmatched).
//
//   k6 run load_testing/test_live.js
//   k6 run --vus 300 --duration 300s load_testing/test_live.js   # the old habit
//
// Environment: BASE_URL (http://127.0.0.1:8080), TOPOLOGY (the topology
// file the engine serves; default the embedded demo's source).

import http from 'k6/http';
import { check } from 'k6';
import { loadTopology, randomClient, livePaths, pick } from './lib.js';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const topology = loadTopology(__ENV.TOPOLOGY || '../engine/demo/topology.json');
const paths = livePaths(topology);

export const options = {
  vus: 20,
  duration: '30s',
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(95)<50', 'p(99)<100'],
  },
};

export default function () {
  const res = http.get(`${BASE}${pick(paths)}`, {
    redirects: 0,
    headers: { 'X-Real-IP': randomClient(topology, 0.03) },
    tags: { name: 'live' },
  });
  check(res, {
    'status is 302': (r) => r.status === 302,
    'Location is absolute': (r) => /^https?:\/\/[^/]+\//.test(r.headers.Location || ''),
  });
}
