// The realistic mix: 70 % live, 20 % catch-up, 10 % VOD, each from a
// client address drawn from the topology's subnets (3 % unmatched).
//
//   k6 run load_testing/test_requests.js
//   k6 run --vus 300 --duration 300s load_testing/test_requests.js
//
// Scenario options: STAGES="30s:50,60s:300,30s:0" ramps the VUs (ramping-vus)
// instead of the constant VUS/DURATION.
//
// Environment: BASE_URL (http://127.0.0.1:8080), TOPOLOGY, VUS (20),
// DURATION (30s), STAGES.

import http from 'k6/http';
import { check } from 'k6';
import { loadTopology, randomClient, livePaths, catchupPaths, pick } from './lib.js';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const topology = loadTopology(__ENV.TOPOLOGY || '../engine/demo/topology.json');
const live = livePaths(topology);
const catchup = catchupPaths(topology);

function scenario() {
  if (__ENV.STAGES) {
    return {
      executor: 'ramping-vus',
      startVUs: 1,
      stages: __ENV.STAGES.split(',').map((s) => {
        const [duration, target] = s.split(':');
        return { duration, target: parseInt(target, 10) };
      }),
    };
  }
  return {
    executor: 'constant-vus',
    vus: parseInt(__ENV.VUS || '20', 10),
    duration: __ENV.DURATION || '30s',
  };
}

export const options = {
  scenarios: { mix: scenario() },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{kind:live}': ['p(95)<50', 'p(99)<100'],
    'http_req_duration{kind:catchup}': ['p(95)<50', 'p(99)<100'],
    'http_req_duration{kind:vod}': ['p(95)<50', 'p(99)<100'],
  },
};

export default function () {
  const roll = Math.random();
  let kind;
  let path;
  if (roll < 0.7 || catchup.length === 0) {
    kind = 'live';
    path = pick(live);
  } else if (roll < 0.9) {
    kind = 'catchup';
    path = pick(catchup);
  } else {
    kind = 'vod';
    path = `/vod/films/${Math.floor(Math.random() * 1000)}/movie.mp4?token=k6`;
  }
  const res = http.get(`${BASE}${path}`, {
    redirects: 0,
    headers: { 'X-Real-IP': randomClient(topology, 0.03) },
    tags: { name: kind, kind },
  });
  check(res, {
    'status is 302': (r) => r.status === 302,
    'Location is absolute': (r) => /^https?:\/\/[^/]+\//.test(r.headers.Location || ''),
  });
}
