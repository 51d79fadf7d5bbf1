//! Criterion benchmarks of the request path.
//!
//! - `lpm/1M`: longest-prefix lookup in a 1,000,000-prefix table (IPv4 and
//!   IPv6 mixed, nested);
//! - `decision/10k`: the whole decision (parse the path, look up the client,
//!   build the tiers, call the wasm policy on a warm instance, check the
//!   answer, render the Location) on a 10,000-subnet topology, and the same
//!   with the native rule instead of the wasm policy;
//! - `policy_call/8`: one call of the default policy with 8 candidates.
//!
//! Run: `cargo bench -p edgeward --bench decision`
//! (save a baseline with `-- --save-baseline main`, compare with
//! `-- --baseline main`).

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use edgeward::policy::PolicySource;
use edgeward::policy::bindings::{
    Candidate, CandidateState, Encryption, IpAddress, Request, RequestKind, Tier,
};
use edgeward::routing::{PlayerRequest, url};
use edgeward::topology::store::TopologyStore;
use edgeward::topology::synthetic::{Spec, generate};
use std::hint::black_box;
use std::sync::Arc;
use support::{clients, host};

fn lpm(c: &mut Criterion) {
    let doc = generate(Spec {
        v4_subnets: 990_000,
        v6_subnets: 10_000,
        regions: 100,
        seed: 1,
    });
    let topology = edgeward::topology::build(&doc, 1).unwrap();
    let addrs = clients(1 << 16);
    let mut i = 0;
    c.bench_function("lpm/1M/longest_match", |b| {
        b.iter(|| {
            i = (i + 1) & ((1 << 16) - 1);
            black_box(topology.longest_match(black_box(addrs[i])))
        })
    });
}

fn decision(c: &mut Criterion) {
    let doc = generate(Spec {
        v4_subnets: 9_700,
        v6_subnets: 300,
        regions: 100,
        seed: 2,
    });
    let store = Arc::new(TopologyStore::new(&doc).unwrap());
    let addrs = clients(4096);
    let path = "/btv/live/hls/ch1.m3u8";
    let query = Some("token=abc");

    let mut router = support::router(&store);
    let mut i = 0;
    c.bench_function("decision/10k/wasm_nearest", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(router.route(&PlayerRequest {
                get_or_head: true,
                path: black_box(path),
                query,
                peer: addrs[i],
                x_real_ip: None,
                tls: false,
                forwarded_proto: None,
                headers: Default::default(),
            }))
        })
    });

    // The native rule, reached by a policy that always fails over to it,
    // is not a fair baseline (it pays for the failed call); measure it
    // through prepare/finish directly instead.
    let topology = store.snapshot();
    let health = edgeward::health::HealthTable::new(&topology);
    let health = health.load();
    let mut seed = 0u64;
    let mut scratch = edgeward::routing::candidates::Scratch::default();
    c.bench_function("decision/10k/native_nearest", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let route = url::parse(black_box(path)).unwrap();
            let prepared = edgeward::routing::candidates::prepare_reusing(
                &topology,
                &health,
                &route,
                query,
                addrs[i],
                Default::default(),
                &mut scratch,
            )
            .unwrap();
            let decision = edgeward::policy::native::select(&prepared.tiers, seed);
            let outcome = edgeward::routing::answer::check(&topology, &prepared, decision);
            scratch = prepared.into_scratch();
            black_box(outcome.unwrap())
        })
    });
}

fn policy_call(c: &mut Criterion) {
    let doc = generate(Spec {
        v4_subnets: 100,
        v6_subnets: 0,
        regions: 4,
        seed: 3,
    });
    let store = TopologyStore::new(&doc).unwrap();
    let topology = store.snapshot();
    let host = host(PolicySource::builtin_nearest());
    let mut instance = host.instantiate(&host.active()).unwrap();
    let request = Request {
        kind: RequestKind::Live,
        protocol: None,
        encryption: Encryption::None,
        target: "ch1".into(),
        query: None,
        client: IpAddress::V4((10, 1, 2, 3)),
        topology_version: 1,
        seed: 0,
        ..Request::empty()
    };
    // Three tiers, 8 candidates: the first two tiers have none eligible.
    let cand = |server: u32, state: CandidateState| Candidate {
        server,
        group: 0,
        weight: 1 + server % 3,
        state,
        health: None,
    };
    let tiers = vec![
        Tier {
            region: 0,
            region_active: false,
            subnet: Some(0),
            distance_km: None,
            candidates: vec![
                cand(0, CandidateState::all()),
                cand(1, CandidateState::all()),
            ],
        },
        Tier {
            region: 1,
            region_active: true,
            subnet: Some(1),
            distance_km: None,
            candidates: vec![
                cand(2, CandidateState::all() & !CandidateState::AVAILABLE),
                cand(3, CandidateState::all() & !CandidateState::SERVER_ACTIVE),
            ],
        },
        Tier {
            region: 2,
            region_active: true,
            subnet: None,
            distance_km: None,
            candidates: (4..8).map(|s| cand(s, CandidateState::all())).collect(),
        },
    ];
    let mut request = request;
    c.bench_function("policy_call/8_candidates", |b| {
        b.iter(|| {
            request.seed += 1;
            black_box(instance.select(&topology, &request, &tiers).unwrap())
        })
    });

    // The same call of the JavaScript nearest (policies/js/nearest.js,
    // built by componentize-js: see load_testing/bench/js_policy.sh), on
    // this thread, and from inside a tokio runtime as a worker makes it
    // (handed to the worker's call thread and back).
    let js = std::env::var_os("EDGEWARD_JS_POLICY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/js-policies/nearest.wasm")
        });
    if !js.exists() {
        eprintln!("policy_call/js: {} not built; skipped", js.display());
        return;
    }
    let js_host = support::host(PolicySource::from_files(&js, None).unwrap());
    let mut js_instance = js_host.instantiate(&js_host.active()).unwrap();
    c.bench_function("policy_call/8_candidates/js_nearest", |b| {
        b.iter(|| {
            request.seed += 1;
            black_box(js_instance.select(&topology, &request, &tiers).unwrap())
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("policy_call/8_candidates/js_nearest_from_a_worker", |b| {
        runtime.block_on(async {
            b.iter(|| {
                request.seed += 1;
                black_box(js_instance.select(&topology, &request, &tiers).unwrap())
            })
        })
    });
}

criterion_group!(benches, lpm, decision, policy_call);
criterion_main!(benches);
