//! Synthetic topologies for benchmarks and scale tests: many subnets of
//! mixed prefix lengths (some nested), IPv4 and IPv6, spread over regions
//! of 2–4 edges each. Deterministic for a given seed, so every tool (the
//! criterion benches, the nginx/HAProxy comparison, the scale run) works on
//! the same data.

use super::model::*;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// IPv4 subnets.
    pub v4_subnets: usize,
    /// IPv6 subnets.
    pub v6_subnets: usize,
    /// Regions (each with one group of 2–4 edges).
    pub regions: usize,
    /// Seed of the generator.
    pub seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Generates the topology. IPv4 subnets live in 10.0.0.0/8 and
/// 100.64.0.0/10 (so addresses elsewhere are "unmatched"); about one in
/// eight is a /24 nested inside an earlier /16. IPv6 subnets are /48s and
/// /56s under 2001:db8::/32.
pub fn generate(spec: Spec) -> TopologyDoc {
    let mut rng = Rng(spec.seed);
    let regions = spec.regions.max(1);
    let mut servers = Vec::new();
    let mut groups = Vec::new();
    let mut region_docs = Vec::new();
    for r in 0..regions {
        let edges = 2 + rng.below(3) as usize;
        let ids: Vec<String> = (0..edges).map(|e| format!("edge-{r}-{e}")).collect();
        for (e, id) in ids.iter().enumerate() {
            servers.push(ServerDoc {
                id: id.clone(),
                kind: ServerKind::Edge,
                host: format!("e{e}.r{r}.cdn.example"),
                port: if e % 2 == 0 { 80 } else { 443 },
                tls_port: (e % 2 == 0).then_some(8443),
                active: true,
                weight: 1 + rng.below(4) as u32,
                healthcheck: None,
                prefix: None,
                management: None,
            });
        }
        groups.push(GroupDoc {
            id: format!("group-{r}"),
            active: true,
            servers: ids,
            channels: Vec::new(),
        });
        region_docs.push(RegionDoc {
            id: format!("region-{r}"),
            name: None,
            active: true,
            server_groups: vec![format!("group-{r}")],
            location: None,
        });
    }

    let region_ids: Vec<SharedId> = region_docs
        .iter()
        .map(|r| SharedId::from(r.id.as_str()))
        .collect();
    let mut subnets = Vec::with_capacity(spec.v4_subnets + spec.v6_subnets);
    let mut seen = std::collections::HashSet::new();
    let mut sixteens: Vec<u32> = Vec::new();
    while subnets.len() < spec.v4_subnets {
        let nested = !sixteens.is_empty() && rng.below(8) == 0;
        let (net, len) = if nested {
            let base = sixteens[rng.below(sixteens.len() as u64) as usize];
            (base | ((rng.below(256) as u32) << 8), 24)
        } else {
            let len = [16u8, 18, 20, 22, 24, 24, 24, 26, 28][rng.below(9) as usize];
            let (space, space_len) = if rng.below(4) == 0 {
                (0x6440_0000u32, 10u8) // 100.64.0.0/10
            } else {
                (0x0a00_0000u32, 8u8) // 10.0.0.0/8
            };
            let host_bits = 32 - u32::from(space_len);
            let addr = space | (rng.next() as u32 & ((1u32 << host_bits) - 1));
            let mask = u32::MAX << (32 - u32::from(len));
            (addr & mask, len)
        };
        if !seen.insert((net, len)) {
            continue;
        }
        if len == 16 {
            sixteens.push(net);
        }
        subnets.push(SubnetDoc {
            cidr: Cidr::Net(ipnet::Ipv4Net::new(net.into(), len).unwrap().into()),
            region: region_ids[rng.below(regions as u64) as usize].clone(),
            name: None,
        });
    }
    let mut v6 = 0;
    while v6 < spec.v6_subnets {
        let len = if rng.below(2) == 0 { 48u8 } else { 56 };
        let a = 0x2001_0db8u128 << 96;
        let bits = (u128::from(rng.next()) << 64) & !(u128::MAX >> 32);
        let net = (a | (bits >> 32)) & (u128::MAX << (128 - u32::from(len)));
        if !seen.insert(((net >> 96) as u32 ^ (net >> 64) as u32, len + 100)) {
            continue;
        }
        subnets.push(SubnetDoc {
            cidr: Cidr::Net(ipnet::Ipv6Net::new(net.into(), len).unwrap().into()),
            region: region_ids[rng.below(regions as u64) as usize].clone(),
            name: None,
        });
        v6 += 1;
    }

    TopologyDoc {
        schema: None,
        default_region: Some("region-0".into()),
        regions: region_docs,
        subnets,
        server_groups: groups,
        servers,
        channels: vec![ChannelDoc {
            epg_id: "ch1".into(),
            name: None,
            active: true,
            dvr_enabled: false,
            recording_group: None,
            code_name: None,
            storage_id: None,
            streams: vec![StreamDoc {
                protocol: Protocol::Hls,
                encryption: Encryption::None,
                path: "live/ch1/index.m3u8".into(),
                active: true,
            }],
        }],
        programs: Vec::new(),
        pathways: Vec::new(),
        steering: None,
    }
}

/// Adds a catalogue: `channels` more channels (an HLS and a DASH stream
/// each), four DVR servers, and `programs` hourly programs spread over the
/// channels, each recorded twice (HLS and DASH, on two DVRs).
pub fn add_catalogue(doc: &mut TopologyDoc, channels: usize, programs: usize) {
    for c in 0..channels {
        let id = format!("ch-{c}");
        doc.channels.push(ChannelDoc {
            epg_id: id.clone(),
            name: Some(format!("Channel {c}")),
            active: true,
            dvr_enabled: true,
            recording_group: None,
            code_name: None,
            storage_id: None,
            streams: vec![
                StreamDoc {
                    protocol: Protocol::Hls,
                    encryption: Encryption::None,
                    path: format!("live/{id}/index.m3u8"),
                    active: true,
                },
                StreamDoc {
                    protocol: Protocol::Mpd,
                    encryption: Encryption::Cenc,
                    path: format!("live/{id}/manifest.mpd"),
                    active: true,
                },
            ],
        });
    }
    if programs == 0 {
        return;
    }
    for d in 0..4 {
        doc.servers.push(ServerDoc {
            id: format!("dvr-{d}"),
            kind: ServerKind::Dvr,
            host: format!("dvr{d}.cdn.example"),
            port: 80,
            tls_port: None,
            active: true,
            weight: 1,
            healthcheck: None,
            prefix: Some(format!("dvr{d}")),
            management: None,
        });
    }
    let epoch = time::OffsetDateTime::from_unix_timestamp(1_796_000_000).expect("a valid time");
    let ids: Vec<String> = doc.channels.iter().map(|c| c.epg_id.clone()).collect();
    for p in 0..programs {
        let channel = &ids[p % ids.len()];
        let start = epoch + time::Duration::hours((p / ids.len()) as i64);
        let epg_id = format!("{channel}-{p}");
        doc.programs.push(ProgramDoc {
            epg_id: epg_id.clone(),
            channel: channel.clone(),
            start: Some(start),
            end: Some(start + time::Duration::hours(1)),
            records: [
                (Protocol::Hls, Encryption::None, "index.m3u8"),
                (Protocol::Mpd, Encryption::Cenc, "manifest.mpd"),
            ]
            .into_iter()
            .enumerate()
            .map(|(r, (protocol, encryption, file))| RecordDoc {
                server: format!("dvr-{}", (p + r) % 4),
                protocol,
                encryption,
                path: format!("{channel}/{epg_id}/{file}"),
                status: RecordStatus::Completed,
                placement: None,
                error: None,
            })
            .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_topologies_validate_and_nest() {
        let doc = generate(Spec {
            v4_subnets: 5000,
            v6_subnets: 200,
            regions: 50,
            seed: 1,
        });
        let t = crate::topology::build(&doc, 1).unwrap();
        assert_eq!(t.subnets.len(), 5200);
        let nested = (0..t.subnets.len())
            .filter(|&i| t.matching_subnets(t.subnets[i].net.addr()).count() > 1)
            .count();
        assert!(nested > 100, "{nested} nested subnets");
    }
}
