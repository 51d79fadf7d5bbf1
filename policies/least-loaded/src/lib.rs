//! `least-loaded`: the nearest tier, then the edge with the lowest load.
//!
//! Tiers are walked as in `nearest`. Within the winning tier, edges whose
//! health answer reported the configured figure (default `load`, from e.g.
//! `{"load": 0.42}`) are ranked by `figure / weight` and the lowest wins;
//! edges with no figure yet are used only when none has one (drawn by
//! weight, like `nearest`).
//!
//! Configuration: `figure = "load"` (any numeric field of the health JSON,
//! e.g. `connections`).

use edgeward_sdk::{Candidate, Decision, Policy, Request, Tier, choose, export_policy};
use serde::Deserialize;

/// Configuration of the `least-loaded` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of the health figure to minimise.
    pub figure: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            figure: "load".into(),
        }
    }
}

/// The policy itself.
pub struct LeastLoaded {
    figure: String,
}

impl LeastLoaded {
    fn figure(&self, c: &Candidate) -> Option<f64> {
        c.health
            .as_ref()?
            .figures
            .iter()
            .find(|f| f.name == self.figure)
            .map(|f| f.value)
    }
}

impl Policy for LeastLoaded {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.figure.is_empty() {
            return Err("`figure` must name a health figure".into());
        }
        Ok(LeastLoaded {
            figure: config.figure,
        })
    }

    fn select(&mut self, _request: &Request, tiers: &[Tier]) -> Decision {
        for tier in tiers {
            let best = tier
                .eligible()
                .filter(|c| c.weight > 0)
                .filter_map(|c| self.figure(c).map(|f| (f / f64::from(c.weight), c)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((_, c)) = best {
                return Decision::Choose(c.server);
            }
            if let Some(c) = choose::weighted(tier.eligible(), |c| c.weight) {
                return Decision::Choose(c.server);
            }
        }
        Decision::reject(503, "no available edge server for this client")
    }
}

export_policy!(LeastLoaded);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::{CandidateState, Encryption, Figure, Health, IpAddress, RequestKind};

    fn cand(server: u32, load: Option<f64>) -> Candidate {
        Candidate {
            server,
            group: 0,
            weight: 1,
            state: CandidateState::all(),
            health: load.map(|l| Health {
                rtt_us: Some(100),
                figures: vec![Figure {
                    name: "load".into(),
                    value: l,
                }],
            }),
        }
    }

    fn select(candidates: Vec<Candidate>) -> Decision {
        let tiers = [Tier {
            region: 0,
            region_active: true,
            subnet: None,
            distance_km: None,
            candidates,
        }];
        let request = Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: "x".into(),
            query: None,
            client: IpAddress::V4((10, 0, 0, 1)),
            topology_version: 1,
            seed: 0,
            ..Request::empty()
        };
        LeastLoaded::new(Config::default())
            .unwrap()
            .select(&request, &tiers)
    }

    #[test]
    fn lowest_load_wins_and_unreported_edges_wait() {
        assert!(matches!(
            select(vec![cand(1, Some(0.9)), cand(2, Some(0.1)), cand(3, None)]),
            Decision::Choose(2)
        ));
        assert!(matches!(select(vec![cand(3, None)]), Decision::Choose(3)));
    }
}
