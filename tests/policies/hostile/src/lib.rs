//! A hostile policy, for the engine's sandbox tests: it behaves like
//! `nearest` until the request's target is `only_target` (or always, when
//! that is unset), then misbehaves as `mode` says.

use edgeward_sdk::{Decision, Policy, Request, Tier, choose, export_policy, host};
use serde::Deserialize;

/// How to misbehave.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Panic (a trap).
    Panic,
    /// Loop forever (hits the call deadline).
    Loop,
    /// Allocate without bound (hits the memory cap).
    Grow,
    /// Choose a server that was not offered.
    BadServer,
    /// Reject with status 200.
    BadStatus,
    /// Redirect to something that is not a URL.
    BadUrl,
    /// Refuse to initialise.
    FailInit,
    /// Behave (for tests that need a second, well-behaved version).
    Behave,
    /// Redirect to a URL that spells out the request as the policy
    /// received it (for tests of the packed request).
    Echo,
    /// Redirect to a URL built from the host's look-ups of the first
    /// eligible candidate: its server, group, region and subnet (for
    /// tests that replay look-ups).
    LookUp,
}

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to misbehave.
    pub mode: Mode,
    /// Misbehave only for requests with this target.
    #[serde(default)]
    pub only_target: Option<String>,
}

/// The policy.
pub struct Hostile {
    config: Config,
    hoard: Vec<Vec<u8>>,
}

impl Policy for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.mode == Mode::FailInit {
            return Err("this policy refuses to start (mode fail-init)".into());
        }
        Ok(Hostile {
            config,
            hoard: Vec::new(),
        })
    }

    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision {
        let triggered = self
            .config
            .only_target
            .as_ref()
            .is_none_or(|t| *t == request.target);
        if triggered {
            match self.config.mode {
                Mode::Panic => panic!("hostile policy panics on {}", request.target),
                Mode::Loop => {
                    let mut x = 0u64;
                    loop {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                Mode::Grow => loop {
                    self.hoard.push(vec![1u8; 1 << 20]);
                },
                Mode::BadServer => return Decision::Choose(u32::MAX - 7),
                Mode::BadStatus => return Decision::reject(200, "not an error"),
                Mode::BadUrl => return Decision::Redirect("javascript:alert(1)".into()),
                Mode::Echo => {
                    return Decision::Redirect(format!(
                        "http://echo.invalid/{:?}/{:?}/{:?}/{}?query={}&client={}&topology={}&tiers={}",
                        request.kind,
                        request.protocol,
                        request.encryption,
                        request.target,
                        request.query.as_deref().unwrap_or("-"),
                        request.client.to_std(),
                        request.topology_version,
                        tiers.len(),
                    ));
                }
                Mode::LookUp => {
                    let found = tiers.iter().find_map(|t| {
                        t.eligible()
                            .find(|c| c.weight > 0)
                            .map(|c| (t.region, t.subnet, c.server, c.group))
                    });
                    let Some((region, subnet, server, group)) = found else {
                        return Decision::reject(503, "nothing eligible");
                    };
                    let s = host::server_info(server);
                    let g = host::group_info(group);
                    let r = host::region_info(region);
                    let n = subnet.and_then(host::subnet_info);
                    return Decision::Redirect(format!(
                        "http://{}:{}/{}?id={}&weight={}&active={}&group={}/{}&region={}/{}/{}&subnet={}",
                        s.as_ref().map_or("none", |s| &s.host),
                        s.as_ref().map_or(0, |s| s.port),
                        request.target,
                        s.as_ref().map_or("none", |s| &s.id),
                        s.as_ref().map_or(0, |s| s.weight),
                        s.as_ref().is_some_and(|s| s.active),
                        g.as_ref().map_or("none", |g| &g.id),
                        g.as_ref().is_some_and(|g| g.active),
                        r.as_ref().map_or("none", |r| &r.id),
                        r.as_ref().map_or("none", |r| &r.name),
                        r.as_ref().is_some_and(|r| r.active),
                        n.map_or_else(
                            || "none".to_string(),
                            |n| format!("{}/{}/{}", n.cidr, n.name, n.region)
                        ),
                    ));
                }
                Mode::FailInit | Mode::Behave => {}
            }
        }
        for tier in tiers {
            if let Some(c) = choose::weighted(tier.eligible(), |c| c.weight) {
                return Decision::Choose(c.server);
            }
        }
        Decision::reject(503, "no available edge server for this client")
    }
}

export_policy!(Hostile);
