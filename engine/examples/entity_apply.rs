//! Times entity changes applied in-process (no HTTP, no journal) to a
//! topology of a million subnets, 200 channels and 50,000 programs: the
//! part of `load_testing/bench/entities.sh` that is the engine's own work,
//! by kind and step, without a load generator on the same cores.
//!
//! ```sh
//! cargo run --release -p edgeward --example entity_apply [ROUNDS]
//! ```

use edgeward::topology::edit::{Edit, Op, apply};
use edgeward::topology::entity::Kind;
use edgeward::topology::synthetic::{Spec, add_catalogue, generate};
use serde_json::json;
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let mut doc = generate(Spec {
        v4_subnets: 990_000,
        v6_subnets: 10_000,
        regions: 100,
        seed: 1,
    });
    add_catalogue(&mut doc, 200, 50_000);
    let started = Instant::now();
    let mut t = edgeward::topology::build(&doc, 1).unwrap().at_revision(1);
    println!(
        "built in {} ms: {}",
        started.elapsed().as_millis(),
        t.summary()
    );
    drop(doc);
    let edit = |op, kind, key: Option<String>, value| Edit {
        op,
        kind,
        key,
        value,
        if_match: None,
    };
    type Case = (&'static str, Box<dyn Fn(usize) -> Edit>);
    let cases: Vec<Case> = vec![
        (
            "program update",
            Box::new(move |i| {
                edit(
                    Op::Update,
                    Kind::Programs,
                    Some(format!("ch-{}-{}", i % 200, i % 200 + 1 + 201 * i)),
                    Some(json!({"end": null})),
                )
            }),
        ),
        (
            "record update",
            Box::new(move |i| {
                let p = i % 200 + 1 + 201 * i;
                edit(
                    Op::Update,
                    Kind::Records,
                    Some(format!("ch-{}-{p}/dvr-{}/hls/none", i % 200, p % 4)),
                    Some(json!({"status": if i % 2 == 0 { "running" } else { "completed" }})),
                )
            }),
        ),
        (
            "stream update",
            Box::new(move |i| {
                edit(
                    Op::Update,
                    Kind::Streams,
                    Some(format!("ch-{}/hls/none", i % 200)),
                    Some(json!({"path": format!("live/v{i}.m3u8")})),
                )
            }),
        ),
        (
            "server update",
            Box::new(move |i| {
                edit(
                    Op::Update,
                    Kind::Servers,
                    Some(format!("edge-{}-0", i % 100)),
                    Some(json!({"weight": 1 + i % 4})),
                )
            }),
        ),
        (
            "subnet create",
            Box::new(move |i| {
                edit(
                    Op::Create,
                    Kind::Subnets,
                    None,
                    Some(
                        json!({"cidr": format!("192.168.{}.0/24", i % 256), "region": "region-3"}),
                    ),
                )
            }),
        ),
        (
            "subnet move",
            Box::new(move |i| {
                edit(
                    Op::Update,
                    Kind::Subnets,
                    Some(format!("192.168.{}.0/24", i % 256)),
                    Some(json!({"region": format!("region-{}", i % 100)})),
                )
            }),
        ),
        (
            "subnet delete",
            Box::new(move |i| {
                edit(
                    Op::Delete,
                    Kind::Subnets,
                    Some(format!("192.168.{}.0/24", i % 256)),
                    None,
                )
            }),
        ),
    ];
    let mut revision = 1;
    for (name, make) in &cases {
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let e = make(i);
            revision += 1;
            let began = Instant::now();
            let edited = apply(&t, std::slice::from_ref(&e), revision, revision)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            let new = edited.topology;
            times.push(began.elapsed().as_secs_f64() * 1000.0);
            // The old snapshot is dropped here, as a worker would.
            t = new;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<15} p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
            times[times.len() / 2],
            times[(times.len() * 99 / 100).min(times.len() - 1)],
            times[times.len() - 1]
        );
    }
}
