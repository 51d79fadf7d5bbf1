//! The golden vectors the JavaScript SDK is tested against
//! (`sdk/js/test/vectors.json`): packed calls written by the contract's
//! codec with what they decode to, and the answers of `choose::weighted`,
//! `choose::rendezvous`, `hash64` and SplitMix64 for given draws, keys and
//! seeds. Both SDKs must agree on every one, so they cannot drift.
//!
//! The committed file must be what this test generates: after a change to
//! the codec or the helpers, regenerate it with
//! `EDGEWARD_BLESS=1 cargo test -p edgeward-sdk --test js_vectors`
//! and run the JavaScript tests (`tests/e2e/javascript.rs` runs them).

use edgeward_codec::{
    AnonymousIp, Candidate, CandidateState, Coordinates, Country, Decoded, Encryption, Geo,
    Headers, IpAddress, Protocol, Request, RequestKind, SplitMix64, Tier, encode,
};
use edgeward_sdk::choose;
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/js/test/vectors.json");

fn u64s(v: u64) -> Value {
    // As strings: JSON numbers lose bits above 2^53.
    json!(v.to_string())
}

fn requests() -> Vec<(Request, Vec<Tier<()>>)> {
    let tier = |region, active, subnet, distance_km, candidates: &[(u32, u32, u32, u8)]| Tier {
        region,
        region_active: active,
        subnet,
        distance_km,
        candidates: candidates
            .iter()
            .map(|&(server, group, weight, state)| Candidate {
                server,
                group,
                weight,
                state: CandidateState::from_bits_truncate(state),
                health: None,
            })
            .collect(),
    };
    let mut headers = Headers::declared(["user-agent", "x-device", "x-absent"]);
    headers.set(0, Some("Player/1.0 (ünïcode)"));
    headers.set(1, Some("tv"));
    headers.set(2, None);
    vec![
        (
            Request {
                kind: RequestKind::Live,
                protocol: Some(Protocol::Hls),
                encryption: Encryption::None,
                target: "ch1".into(),
                query: None,
                client: IpAddress::V4((10, 1, 2, 3)),
                topology_version: 7,
                seed: 0x0123_4567_89ab_cdef,
                ..Request::empty()
            },
            vec![
                tier(
                    0,
                    true,
                    Some(3),
                    None,
                    &[(0, 0, 10, 15), (1, 0, 0, 15), (2, 1, 5, 7)],
                ),
                tier(4, false, None, None, &[(5, 2, 1, 15)]),
            ],
        ),
        (
            Request {
                kind: RequestKind::Catchup,
                protocol: Some(Protocol::Mpd),
                encryption: Encryption::Playready,
                target: "prog-42".into(),
                query: Some("token=abc&x=ü".into()),
                client: IpAddress::V6((0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                topology_version: u64::MAX - 1,
                seed: u64::MAX,
                tls: true,
                geo: Geo {
                    country: Country::new("nl"),
                    asn: Some(1136),
                    location: Some(Coordinates {
                        latitude: 52.375,
                        longitude: -4.875,
                    }),
                    anonymous: AnonymousIp::VPN | AnonymousIp::TOR_EXIT_NODE,
                },
                headers,
            },
            vec![tier(
                2,
                true,
                None,
                Some(412),
                &[(9, 3, 1, 15), (8, 3, 2, 11)],
            )],
        ),
        (
            Request {
                kind: RequestKind::Vod,
                protocol: None,
                encryption: Encryption::None,
                target: "films/a long name/film.mp4".into(),
                query: Some(String::new()),
                client: IpAddress::V6((0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201)),
                ..Request::empty()
            },
            vec![],
        ),
        (
            Request {
                kind: RequestKind::StaticFile,
                target: "a.png".into(),
                client: IpAddress::V6((0x2001, 0, 0, 1, 0, 0, 0, 2)),
                ..Request::empty()
            },
            vec![tier(1, true, None, None, &[])],
        ),
        (
            Request {
                kind: RequestKind::Live,
                protocol: Some(Protocol::Mpd),
                encryption: Encryption::Cenc,
                target: "ch9".into(),
                client: IpAddress::V6((0xfe80, 0, 0, 0, 0x1, 0, 0, 0)),
                ..Request::empty()
            },
            vec![tier(0, true, Some(0), None, &[(3, 0, 4, 13)])],
        ),
    ]
}

fn decoded_json(request: &Request, tiers: &[Tier<()>]) -> Value {
    json!({
        "kind": request.kind.as_str(),
        "protocol": request.protocol.map(Protocol::as_str),
        "encryption": request.encryption.as_str(),
        "target": request.target,
        "query": request.query,
        "client": request.client.to_std().to_string(),
        "clientV6": matches!(request.client, IpAddress::V6(_)),
        "topologyVersion": u64s(request.topology_version),
        "seed": u64s(request.seed),
        "tls": request.tls,
        "geo": {
            "country": request.geo.country.map(|c| c.as_str().to_string()),
            "asn": request.geo.asn,
            "location": request.geo.location.map(|l| json!({"latitude": l.latitude, "longitude": l.longitude})),
            "anonymous": request.geo.anonymous.names().collect::<Vec<_>>(),
        },
        "headers": request.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "tiers": tiers.iter().map(|t| json!({
            "region": t.region,
            "regionActive": t.region_active,
            "subnet": t.subnet,
            "distanceKm": t.distance_km,
            "candidates": t.candidates.iter().map(|c| json!({
                "server": c.server, "group": c.group, "weight": c.weight,
                "state": c.state.bits(), "eligible": c.is_eligible(),
            })).collect::<Vec<_>>(),
            "eligible": t.eligible().map(|c| c.server).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn vectors() -> Value {
    let mut decode = Vec::new();
    for (request, tiers) in requests() {
        let mut words = Vec::new();
        encode(&request, &tiers, &mut words);
        // What the Rust SDK decodes, not what was encoded: the two must
        // be the same, and the JavaScript SDK must decode the same.
        let mut decoded = Decoded::<()>::new();
        decoded.declare_headers(request.headers.names());
        decoded.decode(&words, |_| None);
        assert_eq!(decoded.request, request);
        decode.push(json!({
            "words": words,
            "headerNames": request.headers.names(),
            "decoded": decoded_json(&decoded.request, &decoded.tiers),
        }));
    }

    let seeds = [0u64, 1, 42, 0x0123_4567_89ab_cdef, u64::MAX];
    let splitmix: Vec<Value> = seeds
        .iter()
        .map(|&seed| {
            let mut g = SplitMix64::new(seed);
            json!({"seed": u64s(seed), "outputs": (0..4).map(|_| u64s(g.next_u64())).collect::<Vec<_>>()})
        })
        .collect();

    let keys = [
        "",
        "a",
        "ch1",
        "prog-42",
        "films/a long name/film.mp4",
        "ünïcode ✓",
        "10.1.2.3",
        "2001:db8::1",
    ];
    let hash64: Vec<Value> = keys
        .iter()
        .map(|k| json!({"key": k, "hash": u64s(choose::hash64(k.as_bytes()))}))
        .collect();

    let weight_sets: [&[u32]; 5] = [&[1, 1], &[10, 0, 5], &[0, 0], &[3], &[1, 2, 3, 4, 5, 1000]];
    let mut draws = vec![0u64, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX];
    let mut g = SplitMix64::new(7);
    draws.extend((0..10).map(|_| g.next_u64()));
    let mut weighted = Vec::new();
    for weights in weight_sets {
        for &draw in &draws {
            let index = choose::weighted_with(0..weights.len(), |&i| weights[i], draw);
            weighted.push(json!({"weights": weights, "draw": u64s(draw), "index": index}));
        }
    }

    let id_sets: [(&[u64], &[u32]); 4] = [
        (&[0, 1, 2, 3], &[1, 1, 1, 1]),
        (&[5, 9, 12], &[1, 0, 3]),
        (&[100, 7], &[0, 0]),
        (&[0, 1, 2, 3, 4, 5, 6, 7], &[2, 1, 1, 5, 1, 1, 1, 9]),
    ];
    let mut rendezvous = Vec::new();
    for (ids, weights) in id_sets {
        for key in keys
            .iter()
            .map(|k| k.to_string())
            .chain((0..40).map(|i| format!("key-{i}")))
        {
            let chosen =
                choose::rendezvous(key.as_bytes(), 0..ids.len(), |&i| ids[i], |&i| weights[i]);
            rendezvous.push(
                json!({"key": key, "ids": ids, "weights": weights, "id": chosen.map(|i| ids[i])}),
            );
        }
    }

    json!({
        "contract": edgeward_sdk::CONTRACT,
        "decode": decode,
        "splitmix": splitmix,
        "hash64": hash64,
        "weighted": weighted,
        "rendezvous": rendezvous,
    })
}

#[test]
fn the_javascript_sdks_golden_vectors_are_current() {
    let text = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("EDGEWARD_BLESS").is_some() {
        std::fs::write(FILE, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(FILE).unwrap_or_default();
    assert!(
        committed == text,
        "{FILE} is not what the codec and the Rust SDK give now: regenerate it with \
         EDGEWARD_BLESS=1 cargo test -p edgeward-sdk --test js_vectors, and run the \
         JavaScript SDK's tests"
    );
}
