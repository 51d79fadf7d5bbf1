//! Criterion benchmarks of the request path.
//!
//! - `lpm/1M`: longest-prefix lookup in a 1,000,000-prefix table (IPv4 and
//!   IPv6 mixed, nested);
//! - `decision/10k`: the whole decision (parse the path, look up the client,
//!   build the tiers, call the wasm policy on a warm instance, check the
//!   answer, render the Location) on a 10,000-subnet topology, and the same
//!   with the native rule instead of the wasm policy;
//! - `policy_call/8`: one call of the default policy with 8 candidates;
//! - `steering/10k`: a whole content-steering poll (parse what the player
//!   reports, open its session token, build the tiers, offer 12 pathways
//!   with their edges' health, call the policy's `steer`, check the order,
//!   seal the next token, write the manifest) on the 10,000-subnet
//!   topology, with the example policy `steer-region` and with `nearest`
//!   (whose `steer` leaves the order to the engine).
//!
//! Run: `cargo bench -p edgeward --bench decision`
//! (save a baseline with `-- --save-baseline main`, compare with
//! `-- --baseline main`).

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use edgeward::policy::bindings::{
    Candidate, CandidateState, Encryption, IpAddress, Request, RequestKind, Tier,
};
use edgeward::policy::{PolicyHost, PolicySource};
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
    // Under the limits a JavaScript policy gets by default (its own:
    // `EDGEWARD_JS_MEMORY_MIB` sets its memory cap).
    let js_host = support::host(PolicySource {
        limits: edgeward::policy::Limits {
            deadline_ms: None,
            memory_mib: std::env::var("EDGEWARD_JS_MEMORY_MIB")
                .ok()
                .and_then(|v| v.parse().ok()),
        },
        ..PolicySource::from_files(&js, None).unwrap()
    });
    let started = std::time::Instant::now();
    let mut js_instance = js_host.instantiate(&js_host.active()).unwrap();
    let instantiate = started.elapsed();
    let started = std::time::Instant::now();
    js_instance.select(&topology, &request, &tiers).unwrap();
    eprintln!(
        "policy_call/js: instantiate + init {:.2} ms, first call {:.1} µs",
        instantiate.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e6
    );
    js_call_profile(&js_host, &mut js_instance, &topology, &mut request, &tiers);
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

/// The spread of a JavaScript call's fuel and time over many calls
/// (`EDGEWARD_JS_CALLS`, default 20,000; printed, not measured by
/// criterion): the garbage collector's pauses fall on a few calls, which
/// a policy's deadline must cover, and the instance is recycled as its
/// memory grows.
fn js_call_profile(
    host: &PolicyHost,
    instance: &mut edgeward::policy::WarmInstance,
    topology: &Arc<edgeward::topology::Topology>,
    request: &mut Request,
    tiers: &[Tier],
) {
    let calls: usize = std::env::var("EDGEWARD_JS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut fuel = Vec::with_capacity(calls);
    let mut micros = Vec::with_capacity(calls);
    let mut failed = 0;
    for _ in 0..calls {
        request.seed += 1;
        let (result, trace) = instance.select_traced(topology, request, tiers);
        if result.is_err() {
            failed += 1;
            *instance = host.instantiate(&host.active()).unwrap();
            continue;
        }
        fuel.push(trace.fuel);
        micros.push(trace.elapsed_us);
    }
    fuel.sort_unstable();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| ((fuel.len() as f64 - 1.0) * q) as usize;
    eprintln!(
        "policy_call/js: {calls} calls, {failed} failed, {} instances recycled; \
         fuel p50 {} p99 {} p99.9 {} max {}; µs p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
        host.active().stats.snapshot().recycled,
        fuel[at(0.5)],
        fuel[at(0.99)],
        fuel[at(0.999)],
        fuel[at(1.0)],
        micros[at(0.5)],
        micros[at(0.99)],
        micros[at(0.999)],
        micros[at(1.0)],
    );
}

fn steering(c: &mut Criterion) {
    use edgeward::topology::model::PathwayDoc;
    let mut doc = generate(Spec {
        v4_subnets: 9_700,
        v6_subnets: 300,
        regions: 100,
        seed: 2,
    });
    // A pathway for each of the first ten groups, two CDNs, and a clone.
    doc.schema = Some(2);
    let pathway = |id: String| PathwayDoc {
        id,
        host: None,
        group: None,
        regions: Vec::new(),
        base: None,
        params: Default::default(),
        active: true,
    };
    for g in doc.server_groups.iter().take(10) {
        doc.pathways.push(PathwayDoc {
            group: Some(g.id.clone()),
            host: Some(format!("{}.cdn.example", g.id)),
            ..pathway(format!("p-{}", g.id))
        });
    }
    for cdn in ["cdn-a", "cdn-b"] {
        doc.pathways.push(PathwayDoc {
            host: Some(format!("{cdn}.example")),
            ..pathway(cdn.into())
        });
    }
    let first = doc.pathways[0].id.clone();
    doc.pathways.push(PathwayDoc {
        base: Some(first.clone()),
        host: Some("clone.example".into()),
        ..pathway("clone".into())
    });
    let store = Arc::new(TopologyStore::new(&doc).unwrap());
    let addrs = clients(4096);
    let query = format!("_HLS_pathway={first}&_HLS_throughput=5200000");
    let steer_region = PolicySource {
        config: rmp_serde::to_vec_named(&serde_json::json!({"throughput_floor_kbps": 2000}))
            .unwrap(),
        ..PolicySource::from_files(
            std::path::Path::new(
                edgeward::builtin::BUILT_POLICIES
                    .iter()
                    .find(|(n, _)| *n == "steer-region")
                    .map(|(_, p)| *p)
                    .expect("steer-region is built"),
            ),
            None,
        )
        .unwrap()
    };
    for (name, policy) in [
        ("steering/10k/steer_region_poll", steer_region),
        (
            "steering/10k/default_order_poll",
            PolicySource::builtin_nearest(),
        ),
    ] {
        // No rate limit: every poll calls the policy.
        let mut router = support::router_with(&store, policy).with_steering(
            edgeward::routing::steer::SteeringSetup {
                max_rate: 0,
                ..Default::default()
            },
            Some(1),
        );
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let routed = router.route(&PlayerRequest {
                    get_or_head: true,
                    path: black_box("/steer/hls/ch1"),
                    query: Some(&query),
                    peer: addrs[i],
                    x_real_ip: None,
                    tls: false,
                    forwarded_proto: None,
                    headers: Default::default(),
                });
                assert_eq!(routed.outcome.status(), 200, "{:?}", routed.outcome);
                black_box(routed)
            })
        });
    }
}

criterion_group!(benches, lpm, decision, policy_call, steering);
criterion_main!(benches);
