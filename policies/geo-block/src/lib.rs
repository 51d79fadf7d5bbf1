//! `geo-block`: geo-blocking, as Traffic Router's geo-limit and anonymous
//! blocking do it.
//!
//! Each rule names what it covers — live channels by `epg_id`
//! (`channels`), or VOD, static and catch-up targets by path pattern
//! (`paths`, `*` matching any run of characters), or everything when it
//! names neither — and whom it blocks: clients of a country not in
//! `allow` (when given; a client whose country GeoIP does not know is
//! blocked too), of a country in `deny`, or whose address is of an
//! anonymiser type in `anonymous` (`any`, `vpn`, `hosting_provider`,
//! `public_proxy`, `tor_exit_node`, `residential_proxy`). A client in
//! `allow_cidrs` is never blocked. A blocked request is answered with
//! `status` (default `451 Unavailable For Legal Reasons`) and `reason`, or
//! redirected to `redirect` (an `https://` URL). Any other request goes as
//! with `nearest`: the first tier with an eligible edge, one drawn by
//! weight.
//!
//! Configuration:
//!
//! ```toml
//! allow_cidrs = ["10.0.0.0/8"]
//! [[rules]]
//! channels = ["sports"]
//! allow = ["RU", "BY"]
//! [[rules]]
//! paths = ["premium/*"]
//! deny = ["US"]
//! anonymous = ["vpn", "tor_exit_node"]
//! ```

use edgeward_sdk::{
    AnonymousIp, Country, Decision, IpAddress, Policy, Request, RequestKind, Tier, choose,
    export_policy,
};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// One blocking rule.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// Live channels it covers, by `epg_id`.
    pub channels: Vec<String>,
    /// VOD, static and catch-up targets it covers, by pattern.
    pub paths: Vec<String>,
    /// Only these countries (ISO 3166 alpha-2) may watch.
    pub allow: Vec<String>,
    /// These countries may not.
    pub deny: Vec<String>,
    /// Anonymiser types blocked.
    pub anonymous: Vec<String>,
}

/// Configuration of the `geo-block` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The rules, in order: the first that blocks decides.
    pub rules: Vec<Rule>,
    /// Networks never blocked.
    pub allow_cidrs: Vec<String>,
    /// The status of a blocked request (400-599).
    pub status: u16,
    /// Its reason.
    pub reason: String,
    /// Instead of a status, redirect a blocked request here.
    pub redirect: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: Vec::new(),
            allow_cidrs: Vec::new(),
            status: 451,
            reason: "not available in your region".into(),
            redirect: None,
        }
    }
}

struct Compiled {
    channels: Vec<String>,
    paths: Vec<String>,
    allow: Vec<Country>,
    deny: Vec<Country>,
    anonymous: AnonymousIp,
}

/// The policy itself.
pub struct GeoBlock {
    rules: Vec<Compiled>,
    allow_cidrs: Vec<IpNet>,
    status: u16,
    reason: String,
    redirect: Option<String>,
}

fn countries(rule: usize, field: &str, codes: &[String]) -> Result<Vec<Country>, String> {
    codes
        .iter()
        .map(|c| {
            Country::new(c).ok_or_else(|| {
                format!("rules[{rule}].{field}: {c:?} is not a two-letter country code")
            })
        })
        .collect()
}

fn anonymous(rule: usize, names: &[String]) -> Result<AnonymousIp, String> {
    let mut flags = AnonymousIp::empty();
    for name in names {
        flags |= match name.as_str() {
            "any" => AnonymousIp::ANONYMOUS,
            "vpn" => AnonymousIp::VPN,
            "hosting_provider" => AnonymousIp::HOSTING_PROVIDER,
            "public_proxy" => AnonymousIp::PUBLIC_PROXY,
            "tor_exit_node" => AnonymousIp::TOR_EXIT_NODE,
            "residential_proxy" => AnonymousIp::RESIDENTIAL_PROXY,
            other => {
                return Err(format!(
                    "rules[{rule}].anonymous: {other:?} is not one of any, vpn, \
                     hosting_provider, public_proxy, tor_exit_node, residential_proxy"
                ));
            }
        };
    }
    Ok(flags)
}

/// Whether `text` matches `pattern`, where `*` matches any run.
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn client_ip(ip: &IpAddress) -> IpAddr {
    match *ip {
        IpAddress::V4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        IpAddress::V6(w) => {
            let words = [w.0, w.1, w.2, w.3, w.4, w.5, w.6, w.7];
            IpAddr::from(words)
        }
    }
}

impl Compiled {
    fn covers(&self, request: &Request) -> bool {
        if self.channels.is_empty() && self.paths.is_empty() {
            return true;
        }
        match request.kind {
            RequestKind::Live => self.channels.contains(&request.target),
            _ => self.paths.iter().any(|p| matches(p, &request.target)),
        }
    }

    fn blocks(&self, request: &Request) -> bool {
        let geo = &request.geo;
        let not_allowed =
            !self.allow.is_empty() && geo.country.is_none_or(|c| !self.allow.contains(&c));
        let denied = geo.country.is_some_and(|c| self.deny.contains(&c));
        not_allowed || denied || geo.anonymous.intersects(self.anonymous)
    }
}

impl Policy for GeoBlock {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if !(400..=599).contains(&config.status) {
            return Err(format!("status: {} is not 400-599", config.status));
        }
        if let Some(url) = &config.redirect
            && (!url.starts_with("https://") || url.len() <= "https://".len())
        {
            return Err(format!(
                "redirect: {url:?} must be an https:// URL (players on HTTPS pages may follow no other)"
            ));
        }
        let allow_cidrs = config
            .allow_cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.trim()
                    .parse::<IpNet>()
                    .map_err(|_| format!("allow_cidrs[{i}]: {c:?} is not a CIDR"))
            })
            .collect::<Result<_, _>>()?;
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(Compiled {
                    channels: r.channels.clone(),
                    paths: r.paths.clone(),
                    allow: countries(i, "allow", &r.allow)?,
                    deny: countries(i, "deny", &r.deny)?,
                    anonymous: anonymous(i, &r.anonymous)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(GeoBlock {
            rules,
            allow_cidrs,
            status: config.status,
            reason: config.reason,
            redirect: config.redirect,
        })
    }

    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision {
        let exempt = || {
            let ip = client_ip(&request.client);
            self.allow_cidrs.iter().any(|n| n.contains(&ip))
        };
        if self
            .rules
            .iter()
            .any(|r| r.covers(request) && r.blocks(request))
            && !exempt()
        {
            return match &self.redirect {
                Some(url) => Decision::Redirect(url.clone()),
                None => Decision::reject(self.status, self.reason.clone()),
            };
        }
        for tier in tiers {
            if let Some(c) = choose::weighted(tier.eligible(), |c| c.weight) {
                return Decision::Choose(c.server);
            }
        }
        Decision::reject(503, "no available edge server for this client")
    }
}

export_policy!(GeoBlock);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::{Candidate, CandidateState, Geo};

    fn request(
        kind: RequestKind,
        target: &str,
        country: Option<&str>,
        anon: AnonymousIp,
    ) -> Request {
        Request {
            kind,
            target: target.into(),
            client: IpAddress::V4((192, 0, 2, 1)),
            geo: Geo {
                country: country.and_then(Country::new),
                anonymous: anon,
                ..Geo::default()
            },
            ..Request::empty()
        }
    }

    fn tiers() -> Vec<Tier> {
        vec![Tier {
            region: 0,
            region_active: true,
            subnet: None,
            distance_km: None,
            candidates: vec![Candidate {
                server: 7,
                group: 0,
                weight: 1,
                state: CandidateState::all(),
                health: None,
            }],
        }]
    }

    fn policy(toml_rules: Vec<Rule>, cidrs: &[&str], redirect: Option<&str>) -> GeoBlock {
        GeoBlock::new(Config {
            rules: toml_rules,
            allow_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            redirect: redirect.map(str::to_string),
            ..Config::default()
        })
        .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn chosen(d: Decision) -> Option<u32> {
        match d {
            Decision::Choose(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn allow_and_deny_lists_per_channel_and_path() {
        let mut p = policy(
            vec![
                Rule {
                    channels: strings(&["sports"]),
                    allow: strings(&["RU", "by"]),
                    ..Rule::default()
                },
                Rule {
                    paths: strings(&["premium/*.mp4"]),
                    deny: strings(&["US"]),
                    ..Rule::default()
                },
            ],
            &[],
            None,
        );
        let none = AnonymousIp::empty();
        let live = |c: Option<&str>| request(RequestKind::Live, "sports", c, none);
        assert_eq!(chosen(p.select(&live(Some("RU")), &tiers())), Some(7));
        assert_eq!(chosen(p.select(&live(Some("BY")), &tiers())), Some(7));
        assert!(
            matches!(p.select(&live(Some("US")), &tiers()), Decision::Reject(r) if r.status == 451)
        );
        assert!(
            matches!(p.select(&live(None), &tiers()), Decision::Reject(_)),
            "unknown country"
        );
        // Another channel: not covered.
        let other = request(RequestKind::Live, "news", Some("US"), none);
        assert_eq!(chosen(p.select(&other, &tiers())), Some(7));
        let vod = |path: &str, c: &str| request(RequestKind::Vod, path, Some(c), none);
        assert!(matches!(
            p.select(&vod("premium/a.mp4", "US"), &tiers()),
            Decision::Reject(_)
        ));
        assert_eq!(
            chosen(p.select(&vod("premium/a.mp4", "DE"), &tiers())),
            Some(7)
        );
        assert_eq!(
            chosen(p.select(&vod("free/a.mp4", "US"), &tiers())),
            Some(7)
        );
    }

    #[test]
    fn anonymisers_are_blocked_by_switch_and_allowed_networks_never() {
        let rule = Rule {
            anonymous: strings(&["vpn", "tor_exit_node"]),
            ..Rule::default()
        };
        let mut p = policy(vec![rule], &["192.0.2.0/24"], None);
        let vpn = request(
            RequestKind::Vod,
            "a",
            Some("DE"),
            AnonymousIp::ANONYMOUS | AnonymousIp::VPN,
        );
        assert_eq!(
            chosen(p.select(&vpn, &tiers())),
            Some(7),
            "an allowed network"
        );
        let rule = Rule {
            anonymous: strings(&["vpn", "tor_exit_node"]),
            ..Rule::default()
        };
        let mut p = policy(vec![rule], &[], Some("https://example.com/blocked"));
        assert!(matches!(
            p.select(&vpn, &tiers()),
            Decision::Redirect(u) if u == "https://example.com/blocked"
        ));
        let proxy = request(RequestKind::Vod, "a", Some("DE"), AnonymousIp::PUBLIC_PROXY);
        assert_eq!(
            chosen(p.select(&proxy, &tiers())),
            Some(7),
            "not switched on"
        );
    }

    #[test]
    fn patterns_and_configuration_mistakes() {
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("*.mp4", "x.mp4"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXcYb"));
        assert!(!matches("a", "ab"));
        assert!(matches("*", ""));
        for (config, want) in [
            (
                Config {
                    status: 200,
                    ..Config::default()
                },
                "status: 200",
            ),
            (
                Config {
                    redirect: Some("http://x".into()),
                    ..Config::default()
                },
                "must be an https:// URL",
            ),
            (
                Config {
                    allow_cidrs: strings(&["10.0.0.0/33"]),
                    ..Config::default()
                },
                "allow_cidrs[0]: \"10.0.0.0/33\"",
            ),
            (
                Config {
                    rules: vec![Rule {
                        allow: strings(&["RUS"]),
                        ..Rule::default()
                    }],
                    ..Config::default()
                },
                "rules[0].allow: \"RUS\"",
            ),
            (
                Config {
                    rules: vec![Rule {
                        anonymous: strings(&["vpns"]),
                        ..Rule::default()
                    }],
                    ..Config::default()
                },
                "rules[0].anonymous: \"vpns\"",
            ),
        ] {
            let e = GeoBlock::new(config).err().unwrap();
            assert!(e.contains(want), "{e}");
        }
    }
}
