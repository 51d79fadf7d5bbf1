//! Step 3 of the request path: what the request resolved to in the
//! topology (channel and stream, program and record, or the asset's path)
//! and the candidate tiers for this client, ready for the policy. Pure
//! functions of a topology snapshot; a warm worker reuses the storage of
//! its previous request ([`Scratch`]), so this allocates nothing.

use super::Outcome;
use super::url::Route;
use crate::health::{ServerHealth, ServersHealth};
use crate::policy::bindings::{self as wit, Candidate, CandidateState, RequestKind, Tier};
use crate::topology::{Encryption, Protocol, Topology};
use std::net::IpAddr;
use std::sync::Arc;

/// A request ready for a policy: its input, and what the answer check
/// ([`super::answer::check`]) needs.
pub struct Prepared<'a> {
    /// Whether the player came over TLS (its Location is then `https`).
    pub tls: bool,
    /// The policy's view of the request.
    pub request: wit::Request,
    /// The candidate tiers, in order of preference.
    pub tiers: Vec<Tier>,
    pub(super) resolved: Resolved<'a>,
    pub(super) query: Option<&'a str>,
    /// The query's buffer while the request has none.
    spare_query: String,
}

impl Prepared<'_> {
    /// The storage of the request's strings and tiers, for the next
    /// request's [`prepare_reusing`].
    pub fn into_scratch(self) -> Scratch {
        Scratch {
            tiers: self.tiers,
            target: self.request.target,
            query: self.request.query.unwrap_or(self.spare_query),
            headers: self.request.headers,
        }
    }
}

/// Storage a worker reuses request after request (see
/// [`prepare_reusing`]): vectors and strings keep their capacity, so a
/// warm worker allocates nothing to prepare a request.
#[derive(Default)]
pub struct Scratch {
    tiers: Vec<Tier>,
    target: String,
    query: String,
    headers: wit::Headers,
}

/// What the request resolved to in the topology.
pub(super) struct Resolved<'a> {
    kind: RequestKind,
    channel: Option<u32>,
    /// Path on the edge, after `scheme://host[:port]/`, in up to three parts.
    pub(super) path: [&'a str; 3],
}

/// Resolves `route` in `topology` and builds the policy input for `client`,
/// joining each candidate to its `health`. An unknown channel, program,
/// stream or record is an `Err` outcome (404).
///
/// With `fail_open`, when health checking leaves no available candidate at
/// all, the configured candidates (except drained ones) are offered as if
/// available: a possibly-dead edge rather than no answer.
pub fn prepare<'a>(
    topology: &'a Topology,
    health: &ServersHealth,
    route: &Route<'a>,
    query: Option<&'a str>,
    client: IpAddr,
    offer: Offer,
) -> Result<Prepared<'a>, Outcome> {
    prepare_reusing(
        topology,
        health,
        route,
        query,
        client,
        offer,
        &mut Scratch::default(),
    )
}

/// Which servers are offered, and what is known of the client beyond
/// its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer {
    /// Offer down edges when no edge is up (`--health-fail-open`).
    pub fail_open: bool,
    /// The player came over TLS: servers without a TLS port are not
    /// offered (so that no policy, however old, can send it to `http`).
    pub tls: bool,
    /// What GeoIP databases say of the client (the policy sees it).
    pub geo: wit::Geo,
    /// A client in no configured subnet whose location GeoIP knows gets
    /// tiers of this many of the nearest regions with a `location`, before
    /// the default region (`--geo-nearest-regions`).
    pub nearest_regions: u8,
}

/// [`prepare`], building the request and tiers in the buffers of
/// `scratch` (a previous request's, given back with
/// [`Prepared::into_scratch`]). They are taken only once the request has
/// resolved, so an unknown channel or program leaves them in place.
pub fn prepare_reusing<'a>(
    topology: &'a Topology,
    health: &ServersHealth,
    route: &Route<'a>,
    query: Option<&'a str>,
    client: IpAddr,
    offer: Offer,
    scratch: &mut Scratch,
) -> Result<Prepared<'a>, Outcome> {
    let resolved = resolve(topology, route)?;
    let Scratch {
        mut tiers,
        target: mut target_buf,
        query: mut query_buf,
        headers,
    } = std::mem::take(scratch);
    let health = Health::of(topology, health);
    // One loop per way of finding health: no branch per candidate.
    let near = offer
        .geo
        .location
        .filter(|_| offer.nearest_regions > 0)
        .map(|at| (at, offer.nearest_regions));
    match &health {
        Health::Indexed(all) => build_tiers(
            topology,
            |s| &all[s as usize],
            client,
            near,
            resolved.channel,
            &mut tiers,
        ),
        Health::ById(..) => build_tiers(
            topology,
            |s| health.server(s),
            client,
            near,
            resolved.channel,
            &mut tiers,
        ),
    }
    if offer.tls {
        for tier in &mut tiers {
            tier.candidates
                .retain(|c| topology.servers[c.server as usize].tls_base_url.is_some());
        }
    }
    if offer.fail_open {
        open_if_all_down(&health, &mut tiers);
    }
    let (protocol, encryption, target) = match *route {
        Route::Live {
            protocol,
            encryption,
            epg_id,
        }
        | Route::Catchup {
            protocol,
            encryption,
            epg_id,
        } => (Some(protocol.into()), encryption.into(), epg_id),
        Route::Vod(path) | Route::Static(path) => (None, wit::Encryption::None, path),
    };
    target_buf.clear();
    target_buf.push_str(target);
    query_buf.clear();
    let (query_field, spare_query) = match query.filter(|q| !q.is_empty()) {
        Some(q) => {
            query_buf.push_str(q);
            (Some(query_buf), String::new())
        }
        None => (None, query_buf),
    };
    let request = wit::Request {
        kind: resolved.kind,
        protocol,
        encryption,
        target: target_buf,
        query: query_field,
        client: client.into(),
        topology_version: topology.version,
        // Set by the caller once it has drawn this request's seed.
        seed: 0,
        tls: offer.tls,
        geo: offer.geo,
        // Filled per policy by the caller (each declares its own).
        headers,
    };
    Ok(Prepared {
        tls: offer.tls,
        request,
        tiers,
        resolved,
        query,
        spare_query,
    })
}

fn resolve<'a>(topology: &'a Topology, route: &Route<'a>) -> Result<Resolved<'a>, Outcome> {
    match *route {
        Route::Live {
            protocol,
            encryption,
            epg_id,
        } => {
            let (idx, channel) = topology
                .channel(epg_id)
                .ok_or(Outcome::refuse(404, "unknown channel"))?;
            if !channel.active {
                return Err(Outcome::refuse(404, "channel is not active"));
            }
            let stream = channel.stream(protocol, encryption).ok_or(Outcome::refuse(
                404,
                "no active stream with this protocol and encryption",
            ))?;
            Ok(Resolved {
                kind: RequestKind::Live,
                channel: Some(idx),
                path: [&stream.path, "", ""],
            })
        }
        Route::Catchup {
            protocol,
            encryption,
            epg_id,
        } => {
            let (_, program) = topology
                .program(epg_id)
                .ok_or(Outcome::refuse(404, "unknown program"))?;
            let record = program.record(protocol, encryption).ok_or(Outcome::refuse(
                404,
                "no completed record with this protocol and encryption",
            ))?;
            // Found by id: a snapshot edited since it was loaded may have
            // moved servers and channels to other indexes.
            let dvr = topology
                .server_index(&record.server)
                .map(|s| &topology.servers[s as usize])
                .ok_or(Outcome::refuse(404, "the record's dvr server is gone"))?;
            let prefix = dvr.prefix.as_deref().unwrap_or_default();
            Ok(Resolved {
                kind: RequestKind::Catchup,
                channel: topology.channel(&program.channel).map(|(i, _)| i),
                path: ["dvr/", prefix, record.path()],
            })
        }
        Route::Vod(path) => Ok(Resolved {
            kind: RequestKind::Vod,
            channel: None,
            path: ["vod/", path, ""],
        }),
        Route::Static(path) => Ok(Resolved {
            kind: RequestKind::StaticFile,
            channel: None,
            path: ["static/", path, ""],
        }),
    }
}

/// The servers' health for one topology snapshot. The table follows each
/// new topology right after it is published; a request that meets the
/// new snapshot before its table finds servers by id instead (those that
/// are new have no health yet: available).
enum Health<'h> {
    /// The table of this snapshot: by server index.
    Indexed(&'h [Arc<ServerHealth>]),
    /// A table of another snapshot: by id.
    ById(&'h ServersHealth, &'h Topology),
}

/// Whether health checking considers `server` of `topology` available
/// (however `health` was built; see [`Health`]).
pub(super) fn available(topology: &Topology, health: &ServersHealth, server: u32) -> bool {
    Health::of(topology, health).server(server).available()
}

/// A server nothing is known of yet.
static UNKNOWN: ServerHealth = ServerHealth::new();

impl<'h> Health<'h> {
    fn of(topology: &'h Topology, table: &'h ServersHealth) -> Self {
        if table.topology_version == topology.version {
            Health::Indexed(table.by_index())
        } else {
            Health::ById(table, topology)
        }
    }

    #[inline]
    fn server(&self, server: u32) -> &ServerHealth {
        match self {
            Health::Indexed(all) => &all[server as usize],
            Health::ById(table, topology) => {
                let id = &topology.servers[server as usize].id;
                table.by_id(id).map_or(&UNKNOWN, |h| h)
            }
        }
    }
}

/// One tier per matched subnet (longest prefix first); for a client in
/// no subnet whose location is `near`, the given number of regions
/// nearest to it (those with a `location`, nearest first, their distance
/// set); then the default region. A region already offered is not
/// repeated. Fills `tiers`, reusing its entries' candidate vectors.
fn build_tiers<'h>(
    topology: &Topology,
    health: impl Fn(u32) -> &'h ServerHealth,
    client: IpAddr,
    near: Option<(wit::Coordinates, u8)>,
    channel: Option<u32>,
    tiers: &mut Vec<Tier>,
) {
    let mut used = 0;
    let mut push =
        |region: u32, subnet: Option<u32>, distance_km: Option<u32>, tiers: &mut Vec<Tier>| {
            if tiers[..used].iter().any(|t| t.region == region) {
                return;
            }
            let r = &topology.regions[region as usize];
            if used == tiers.len() {
                tiers.push(Tier {
                    region,
                    region_active: r.active,
                    subnet,
                    distance_km,
                    candidates: Vec::with_capacity(r.members.len()),
                });
            }
            let tier = &mut tiers[used];
            used += 1;
            tier.region = region;
            tier.region_active = r.active;
            tier.subnet = subnet;
            tier.distance_km = distance_km;
            tier.candidates.clear();
            tier.candidates.extend(r.members.iter().map(|m| {
                let server = &topology.servers[m.server as usize];
                let group = &topology.groups[m.group as usize];
                let server_health = health(m.server);
                let mut state = CandidateState::empty();
                if server_health.available() {
                    state |= CandidateState::AVAILABLE;
                }
                if server.active {
                    state |= CandidateState::SERVER_ACTIVE;
                }
                if group.active {
                    state |= CandidateState::GROUP_ACTIVE;
                }
                if group.serves(channel) {
                    state |= CandidateState::SERVES_RESOURCE;
                }
                Candidate {
                    server: m.server,
                    group: m.group,
                    weight: server.weight,
                    state,
                    health: server_health.figures(),
                }
            }));
        };
    let mut matched = false;
    for subnet in topology.matching_subnets(client) {
        matched = true;
        push(
            topology.subnets[subnet as usize].region,
            Some(subnet),
            None,
            tiers,
        );
    }
    if !matched && let Some((at, n)) = near {
        for (region, km) in nearest_regions(topology, at, n) {
            push(region, None, Some(km), tiers);
        }
    }
    if let Some(region) = topology.default_region {
        push(region, None, None, tiers);
    }
    tiers.truncate(used);
}

/// The `n` regions with a location nearest to `at`, nearest first, with
/// their distance in whole kilometres (ties in file order).
fn nearest_regions(topology: &Topology, at: wit::Coordinates, n: u8) -> Vec<(u32, u32)> {
    let mut by_distance: Vec<(u32, f64)> = topology
        .regions
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let (latitude, longitude) = r.location?;
            let km = at.distance_km(&wit::Coordinates {
                latitude,
                longitude,
            });
            Some((i as u32, km))
        })
        .collect();
    by_distance.sort_by(|a, b| a.1.total_cmp(&b.1));
    by_distance
        .into_iter()
        .take(usize::from(n))
        .map(|(r, km)| (r, km.round() as u32))
        .collect()
}

/// Fail-open: if no candidate anywhere is eligible, and that is only for
/// want of health, mark the undrained ones available.
fn open_if_all_down(health: &Health<'_>, tiers: &mut [Tier]) {
    let all = CandidateState::all();
    let any_eligible = tiers
        .iter()
        .any(|t| t.region_active && t.candidates.iter().any(|c| c.state.contains(all)));
    if any_eligible {
        return;
    }
    for tier in tiers.iter_mut() {
        for c in &mut tier.candidates {
            if !health.server(c.server).draining() {
                c.state |= CandidateState::AVAILABLE;
            }
        }
    }
}

impl From<Protocol> for wit::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Hls => wit::Protocol::Hls,
            Protocol::Mpd => wit::Protocol::Mpd,
        }
    }
}

impl From<Encryption> for wit::Encryption {
    fn from(e: Encryption) -> Self {
        match e {
            Encryption::None => wit::Encryption::None,
            Encryption::Widevine => wit::Encryption::Widevine,
            Encryption::Playready => wit::Encryption::Playready,
            Encryption::Cenc => wit::Encryption::Cenc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::synthetic::{Spec, generate};

    #[test]
    fn a_request_that_does_not_resolve_leaves_the_reused_buffers_in_place() {
        let doc = generate(Spec {
            v4_subnets: 100,
            v6_subnets: 0,
            regions: 3,
            seed: 1,
        });
        let topology = crate::topology::build(&doc, 1).unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let health = crate::health::HealthTable::new(&topology);
        let health = &health.load();
        let mut scratch = Scratch::default();

        let known = super::super::url::parse("/btv/live/hls/ch1.m3u8").unwrap();
        let prepared = prepare_reusing(
            &topology,
            health,
            &known,
            Some("a=1"),
            client,
            Offer::default(),
            &mut scratch,
        )
        .unwrap();
        assert_eq!(prepared.request.target, "ch1");
        assert_eq!(prepared.request.query.as_deref(), Some("a=1"));
        assert!(!prepared.tiers.is_empty());
        scratch = prepared.into_scratch();
        let tiers = scratch.tiers.as_ptr();

        let unknown = super::super::url::parse("/btv/live/hls/nope.m3u8").unwrap();
        assert!(
            prepare_reusing(
                &topology,
                health,
                &unknown,
                None,
                client,
                Offer::default(),
                &mut scratch
            )
            .is_err()
        );
        assert_eq!(scratch.tiers.as_ptr(), tiers, "kept");
        assert_eq!(scratch.target, "ch1");

        let prepared = prepare_reusing(
            &topology,
            health,
            &known,
            None,
            client,
            Offer::default(),
            &mut scratch,
        )
        .unwrap();
        assert_eq!(prepared.tiers.as_ptr(), tiers, "reused");
        assert_eq!(prepared.request.query, None);
    }
}
