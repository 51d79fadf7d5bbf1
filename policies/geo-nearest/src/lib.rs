//! `geo-nearest`: the eligible region nearest to the client, by distance.
//!
//! A client in a configured subnet goes where its subnet says, as with
//! `nearest` (the operator knows its network better than GeoIP). Any other
//! client whose location GeoIP knows goes to the tier whose region is
//! nearest, distance divided by the region's `capacity` weight (a region
//! of weight 2 is preferred up to twice as far away): the tiers the engine
//! built from the nearest regions, and any other tier whose region declares
//! a `location`. Without a location, or with no region of known place
//! eligible, the first tier with an eligible edge. Within the tier, one
//! edge drawn by `weight`. No candidate anywhere: `503`.
//!
//! Configuration (all optional): `capacity`, region id to weight (default
//! 1.0 each, at least 0.01), and `reason` (the 503 text).

use edgeward_sdk::{Coordinates, Decision, Policy, Request, Tier, choose, export_policy, host};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Configuration of the `geo-nearest` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Capacity weight by region id.
    pub capacity: BTreeMap<String, f64>,
    /// Reason sent with the 503 when no edge is available.
    pub reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: BTreeMap::new(),
            reason: "no available edge server for this client".into(),
        }
    }
}

/// The policy itself.
pub struct GeoNearest {
    config: Config,
}

impl GeoNearest {
    /// The tier's weighed distance from `client`, when its region's place
    /// is known (the engine's own distance when it computed one).
    fn score(&self, tier: &Tier, client: Coordinates) -> Option<f64> {
        let region = host::region_info(tier.region)?;
        let km = match tier.distance_km {
            Some(km) => f64::from(km),
            None => client.distance_km(&region.coordinates()?),
        };
        let capacity = self.config.capacity.get(&region.id).copied().unwrap_or(1.0);
        Some(km / capacity)
    }
}

impl Policy for GeoNearest {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        for (region, weight) in &config.capacity {
            if !(weight.is_finite() && *weight >= 0.01) {
                return Err(format!(
                    "capacity of region {region:?}: {weight} must be a number of at least 0.01"
                ));
            }
        }
        Ok(GeoNearest { config })
    }

    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision {
        let has_edge = |t: &&Tier| t.eligible().any(|c| c.weight > 0);
        let in_subnet = tiers.iter().filter(|t| t.subnet.is_some()).find(has_edge);
        let nearest = match (in_subnet, request.geo.location) {
            (Some(tier), _) => Some(tier),
            (None, Some(at)) => tiers
                .iter()
                .filter(has_edge)
                .filter_map(|t| self.score(t, at).map(|s| (s, t)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, t)| t),
            (None, None) => None,
        };
        let tier = nearest.or_else(|| tiers.iter().find(has_edge));
        match tier.and_then(|t| choose::weighted(t.eligible(), |c| c.weight)) {
            Some(c) => Decision::Choose(c.server),
            None => Decision::reject(503, self.config.reason.clone()),
        }
    }
}

export_policy!(GeoNearest);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::host::testing;
    use edgeward_sdk::{Candidate, CandidateState, Geo, RegionInfo};

    fn tier(region: u32, subnet: Option<u32>, km: Option<u32>, server: u32) -> Tier {
        Tier {
            region,
            region_active: true,
            subnet,
            distance_km: km,
            candidates: vec![Candidate {
                server,
                group: 0,
                weight: 1,
                state: CandidateState::all(),
                health: None,
            }],
        }
    }

    fn regions() {
        let r = |id: &str, at: Option<(f64, f64)>| RegionInfo {
            id: id.into(),
            name: id.into(),
            active: true,
            location: at.map(|(latitude, longitude)| {
                edgeward_sdk::bindings::edgeward::policy::types::Coordinates {
                    latitude,
                    longitude,
                }
            }),
        };
        testing::set_regions(vec![
            r("london", Some((51.5, -0.13))),
            r("stockholm", Some((59.33, 18.07))),
            r("central", None),
        ]);
    }

    fn at(latitude: f64, longitude: f64) -> Request {
        Request {
            geo: Geo {
                location: Some(Coordinates {
                    latitude,
                    longitude,
                }),
                ..Geo::default()
            },
            ..Request::empty()
        }
    }

    fn policy(capacity: &[(&str, f64)]) -> GeoNearest {
        GeoNearest::new(Config {
            capacity: capacity.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Config::default()
        })
        .unwrap()
    }

    fn chosen(d: Decision) -> Option<u32> {
        match d {
            Decision::Choose(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn the_nearest_region_wins_weighed_by_capacity() {
        regions();
        // Copenhagen: Stockholm ~520 km, London ~960 km.
        let copenhagen = at(55.68, 12.57);
        let tiers = [
            tier(0, None, None, 10),
            tier(1, None, None, 11),
            tier(2, None, None, 12),
        ];
        assert_eq!(chosen(policy(&[]).select(&copenhagen, &tiers)), Some(11));
        // London with twice Stockholm's capacity: 960 / 2 < 520.
        assert_eq!(
            chosen(policy(&[("london", 2.0)]).select(&copenhagen, &tiers)),
            Some(10)
        );
        // The engine's own distance counts when given.
        let tiers = [tier(0, None, Some(10), 10), tier(1, None, None, 11)];
        assert_eq!(chosen(policy(&[]).select(&copenhagen, &tiers)), Some(10));
    }

    #[test]
    fn a_configured_subnet_and_an_unknown_place_keep_the_tier_order() {
        regions();
        let tiers = [tier(0, Some(3), None, 10), tier(1, None, None, 11)];
        assert_eq!(
            chosen(policy(&[]).select(&at(59.3, 18.0), &tiers)),
            Some(10)
        );
        let tiers = [tier(2, None, None, 12), tier(1, None, None, 11)];
        assert_eq!(
            chosen(policy(&[]).select(&Request::empty(), &tiers)),
            Some(12)
        );
        assert!(matches!(
            policy(&[]).select(&Request::empty(), &[]),
            Decision::Reject(_)
        ));
        assert!(
            GeoNearest::new(Config {
                capacity: [("x".to_string(), 0.0)].into(),
                ..Config::default()
            })
            .is_err()
        );
    }
}
