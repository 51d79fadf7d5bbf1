//! The steering manifest, JSON as the specifications and players read it:
//! HLS Content Steering (`VERSION` 1, `TTL`, `RELOAD-URI`,
//! `PATHWAY-PRIORITY`, `PATHWAY-CLONES` with `URI-REPLACEMENT` `HOST` and
//! `PARAMS`), and for DASH the same with `SERVICE-LOCATION-PRIORITY` (the
//! DASH-IF documents and video.js) beside `PATHWAY-PRIORITY` (newer
//! dash.js), since player versions differ.

use super::poll::Steered;
use crate::topology::Topology;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "VERSION")]
    version: u32,
    #[serde(rename = "TTL")]
    ttl: u32,
    #[serde(rename = "RELOAD-URI")]
    reload_uri: &'a str,
    #[serde(rename = "PATHWAY-PRIORITY")]
    pathway_priority: &'a [&'a str],
    #[serde(
        rename = "SERVICE-LOCATION-PRIORITY",
        skip_serializing_if = "Option::is_none"
    )]
    service_location_priority: Option<&'a [&'a str]>,
    #[serde(rename = "PATHWAY-CLONES", skip_serializing_if = "Vec::is_empty")]
    pathway_clones: Vec<Clone<'a>>,
}

#[derive(Serialize)]
struct Clone<'a> {
    #[serde(rename = "BASE-ID")]
    base_id: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "URI-REPLACEMENT")]
    uri_replacement: Replacement<'a>,
}

#[derive(Serialize)]
struct Replacement<'a> {
    #[serde(rename = "HOST", skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(rename = "PARAMS", skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<&'a str, &'a str>,
}

/// The manifest ordering `priority` (pathway indices of `topology`),
/// polled again after `ttl` seconds at `reload_uri`. Clones in the order
/// are declared in `PATHWAY-CLONES` (their base is in the player's
/// playlist or MPD).
pub fn write(
    topology: &Topology,
    steered: Steered,
    priority: &[u32],
    ttl: u32,
    reload_uri: &str,
) -> String {
    let ids: Vec<&str> = priority
        .iter()
        .map(|&p| &*topology.pathways[p as usize].id)
        .collect();
    let pathway_clones = priority
        .iter()
        .map(|&p| &topology.pathways[p as usize])
        .filter_map(|p| {
            let base = &topology.pathways[p.base? as usize];
            Some(Clone {
                base_id: &base.id,
                id: &p.id,
                uri_replacement: Replacement {
                    host: p.host.as_deref(),
                    params: p.params.iter().map(|(k, v)| (&**k, &**v)).collect(),
                },
            })
        })
        .collect();
    let manifest = Manifest {
        version: 1,
        ttl,
        reload_uri,
        pathway_priority: &ids,
        service_location_priority: (steered == Steered::Dash).then_some(&ids[..]),
        pathway_clones,
    };
    serde_json::to_string(&manifest).expect("a manifest is JSON")
}
