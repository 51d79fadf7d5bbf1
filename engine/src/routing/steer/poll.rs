//! A steering poll as the player sends it: the path names the protocol and
//! the stream, the query what the player reports (HLS: `_HLS_pathway`,
//! `_HLS_throughput`; DASH: `_DASH_pathway="a,b"`, `_DASH_throughput=n1,n2`)
//! and the session token of the previous manifest's `RELOAD-URI`:
//!
//! ```text
//! /steer/{hls|dash}[_{wv|pr|cenc}]/{channel epg_id}
//! /steer/{hls|dash}[_{wv|pr|cenc}]/catchup/{program epg_id}
//! /steer/{hls|dash}/vod/{asset path}
//! ```
//!
//! Everything is checked here; a mistake is a `400` naming the parameter
//! and its value. Other query parameters (an origin's auth token, say) are
//! kept for the `RELOAD-URI`.

use super::super::url::Route;
use crate::topology::load::is_pathway_id;
use crate::topology::{Encryption, Protocol};
use std::borrow::Cow;

/// The prefix of every steering URL.
pub const PREFIX: &str = "/steer/";
/// The query parameter carrying the session token.
pub const SESSION: &str = "session";
/// Most pathways a DASH player may report in one poll.
const MAX_REPORTED: usize = 16;

/// Which steering specification the poll follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steered {
    /// HLS Content Steering (`PATHWAY-PRIORITY`).
    Hls,
    /// DASH-IF Content Steering (`SERVICE-LOCATION-PRIORITY`, and
    /// `PATHWAY-PRIORITY` for newer dash.js).
    Dash,
}

impl Steered {
    /// The metrics' label.
    pub const fn name(self) -> &'static str {
        match self {
            Steered::Hls => "hls",
            Steered::Dash => "dash",
        }
    }
}

/// A pathway the player reports it used, and its throughput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Its id (possibly one the topology does not have).
    pub pathway: String,
    /// Bits per second, when the player said.
    pub throughput_bps: Option<u64>,
}

/// One parsed poll.
#[derive(Debug)]
pub struct Poll<'a> {
    /// HLS or DASH.
    pub steered: Steered,
    /// The stream steered, as a player route (its tiers are the client's).
    pub route: Route<'a>,
    /// The path after [`PREFIX`] (the `RELOAD-URI`'s, and what the session
    /// token is bound to).
    pub target: &'a str,
    /// The pathways the player reports, its current one first.
    pub reported: Vec<Reported>,
    /// The previous manifest's session token, if any.
    pub session: Option<Cow<'a, str>>,
    /// The other query parameters, encoded again (for the `RELOAD-URI`).
    pub kept: String,
}

/// Parses a path under [`PREFIX`] and its query. `Err`: the status and
/// reason to answer.
pub fn parse<'a>(path: &'a str, query: Option<&'a str>) -> Result<Poll<'a>, (u16, String)> {
    let bad = |why: String| (400, why);
    let target = path
        .strip_prefix(PREFIX)
        .ok_or_else(|| (404, "no such route".to_string()))?;
    let (spec, rest) = target.split_once('/').ok_or_else(|| {
        bad("a steering URL is /steer/{hls|dash}/{channel}, .../catchup/{program} or .../vod/{path}".into())
    })?;
    let (proto, encryption) = match spec.split_once('_') {
        Some((p, e)) => (p, Some(e)),
        None => (spec, None),
    };
    let (steered, protocol) = match proto {
        "hls" => (Steered::Hls, Protocol::Hls),
        "dash" => (Steered::Dash, Protocol::Mpd),
        other => {
            return Err(bad(format!(
                "steering protocol {other:?} must be hls or dash"
            )));
        }
    };
    let encryption = match encryption {
        None => Encryption::None,
        Some("wv") => Encryption::Widevine,
        Some("pr") => Encryption::Playready,
        Some("cenc") => Encryption::Cenc,
        Some(other) => {
            return Err(bad(format!(
                "encryption suffix {other:?} must be _wv, _pr or _cenc"
            )));
        }
    };
    let single = |id: &'a str, what: &str| {
        if id.is_empty() || id.contains('/') {
            Err(bad(format!(
                "{what} {id:?} must be one non-empty path segment"
            )))
        } else {
            Ok(id)
        }
    };
    let route = if let Some(path) = rest.strip_prefix("vod/") {
        if encryption != Encryption::None {
            return Err(bad("a VOD asset takes no encryption suffix".into()));
        }
        if path.is_empty()
            || path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad(format!(
                "VOD path {path:?} is not a clean relative path"
            )));
        }
        Route::Vod(path)
    } else if let Some(id) = rest.strip_prefix("catchup/") {
        Route::Catchup {
            protocol,
            encryption,
            epg_id: single(id, "program epg_id")?,
        }
    } else {
        Route::Live {
            protocol,
            encryption,
            epg_id: single(rest, "channel epg_id")?,
        }
    };

    let (ours, theirs) = match steered {
        Steered::Hls => ("_HLS_", "_DASH_"),
        Steered::Dash => ("_DASH_", "_HLS_"),
    };
    let mut pathway: Option<Cow<'a, str>> = None;
    let mut throughput: Option<Cow<'a, str>> = None;
    let mut session = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match name.strip_prefix(ours) {
            Some("pathway") => &mut pathway,
            Some("throughput") => &mut throughput,
            // Other `_HLS_`/`_DASH_` parameters (a newer specification's)
            // and the other protocol's are the player's, not the
            // session's: dropped.
            Some(_) => continue,
            None if name.starts_with(theirs) => continue,
            None if name == SESSION => &mut session,
            None => {
                kept.append_pair(&name, &value);
                continue;
            }
        };
        if slot.is_some() {
            return Err(bad(format!("query parameter `{name}` is given twice")));
        }
        *slot = Some(value);
    }
    let reported = match steered {
        Steered::Hls => hls_reported(pathway.as_deref(), throughput.as_deref())?,
        Steered::Dash => dash_reported(pathway.as_deref(), throughput.as_deref())?,
    };
    Ok(Poll {
        steered,
        route,
        target,
        reported,
        session,
        kept: kept.finish(),
    })
}

fn bad_pathway(name: &str, id: &str) -> (u16, String) {
    (
        400,
        format!(
            "query `{name}`: {id:?} is not a pathway id (1-64 letters, digits, `.`, `-` or `_`)"
        ),
    )
}

/// `_HLS_pathway` (one id) and `_HLS_throughput` (bits per second, a whole
/// number).
fn hls_reported(
    pathway: Option<&str>,
    throughput: Option<&str>,
) -> Result<Vec<Reported>, (u16, String)> {
    let throughput_bps = match throughput {
        None => None,
        Some(t) => Some(bits_per_second("_HLS_throughput", t)?),
    };
    match pathway {
        None if throughput_bps.is_some() => Err((
            400,
            "query `_HLS_throughput` without `_HLS_pathway`: a throughput must say on which pathway"
                .into(),
        )),
        None => Ok(Vec::new()),
        Some(id) if !is_pathway_id(id) => Err(bad_pathway("_HLS_pathway", id)),
        Some(id) => Ok(vec![Reported {
            pathway: id.to_string(),
            throughput_bps,
        }]),
    }
}

/// `_DASH_pathway="a,b"` (the quotes optional) and `_DASH_throughput=n1,n2`
/// in the same order.
fn dash_reported(
    pathway: Option<&str>,
    throughput: Option<&str>,
) -> Result<Vec<Reported>, (u16, String)> {
    let unquote = |s: &'_ str| -> String {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .to_string()
    };
    let ids: Vec<String> = match pathway.map(unquote) {
        None => Vec::new(),
        Some(list) if list.is_empty() => Vec::new(),
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    if ids.len() > MAX_REPORTED {
        return Err((
            400,
            format!(
                "query `_DASH_pathway`: {} pathways, at most {MAX_REPORTED}",
                ids.len()
            ),
        ));
    }
    if let Some(id) = ids.iter().find(|id| !is_pathway_id(id)) {
        return Err(bad_pathway("_DASH_pathway", id));
    }
    let throughputs = match throughput.map(unquote) {
        None => Vec::new(),
        Some(list) if list.is_empty() => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|t| bits_per_second("_DASH_throughput", t.trim()))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if !throughputs.is_empty() && throughputs.len() != ids.len() {
        return Err((
            400,
            format!(
                "query `_DASH_throughput`: {} values for {} pathways in `_DASH_pathway` \
                 (they go in the same order)",
                throughputs.len(),
                ids.len()
            ),
        ));
    }
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(i, pathway)| Reported {
            pathway,
            throughput_bps: throughputs.get(i).copied(),
        })
        .collect())
}

/// A throughput in bits per second: a non-negative number (a fraction is
/// rounded: dash.js reports means).
fn bits_per_second(name: &str, value: &str) -> Result<u64, (u16, String)> {
    let bad = || {
        (
            400,
            format!("query `{name}`: {value:?} is not a throughput in bits per second"),
        )
    };
    if let Ok(n) = value.parse::<u64>() {
        return Ok(n);
    }
    match value.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 && !value.contains(['e', 'E', 'i', 'n']) => {
            Ok(f.round().min(u64::MAX as f64) as u64)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &str, query: &str) -> String {
        let e = parse(path, Some(query)).unwrap_err();
        assert_eq!(e.0, 400, "{}", e.1);
        e.1
    }

    #[test]
    fn paths_name_protocol_and_stream() {
        let p = parse("/steer/hls/ch1", None).unwrap();
        assert_eq!(p.steered, Steered::Hls);
        assert_eq!(
            p.route,
            Route::Live {
                protocol: Protocol::Hls,
                encryption: Encryption::None,
                epg_id: "ch1"
            }
        );
        assert_eq!(p.target, "hls/ch1");
        let p = parse("/steer/dash_wv/catchup/p7", None).unwrap();
        assert_eq!(
            p.route,
            Route::Catchup {
                protocol: Protocol::Mpd,
                encryption: Encryption::Widevine,
                epg_id: "p7"
            }
        );
        let p = parse("/steer/dash/vod/films/a.mpd", None).unwrap();
        assert_eq!(p.route, Route::Vod("films/a.mpd"));
        for (path, want) in [
            ("/steer/hls", "a steering URL is"),
            ("/steer/rtmp/ch1", "\"rtmp\" must be hls or dash"),
            ("/steer/hls_xx/ch1", "\"xx\" must be _wv"),
            ("/steer/hls/", "channel epg_id \"\""),
            ("/steer/hls/a/b", "channel epg_id \"a/b\""),
            ("/steer/hls/vod/../etc", "not a clean relative path"),
            ("/steer/hls_wv/vod/a", "no encryption suffix"),
        ] {
            let e = parse(path, None).unwrap_err();
            assert_eq!(e.0, 400);
            assert!(e.1.contains(want), "{path}: {}", e.1);
        }
    }

    #[test]
    fn hls_reports_one_pathway_and_its_throughput() {
        let p = parse(
            "/steer/hls/ch1",
            Some("_HLS_pathway=cdn-a&_HLS_throughput=5200000&token=x%20y&session=abc&_DASH_pathway=z"),
        )
        .unwrap();
        assert_eq!(
            p.reported,
            [Reported {
                pathway: "cdn-a".into(),
                throughput_bps: Some(5_200_000)
            }]
        );
        assert_eq!(p.session.as_deref(), Some("abc"));
        assert_eq!(
            p.kept, "token=x+y",
            "the other protocol's parameter dropped"
        );
        // The HLS default pathway.
        assert_eq!(
            parse("/steer/hls/ch1", Some("_HLS_pathway=."))
                .unwrap()
                .reported[0]
                .pathway,
            "."
        );
        assert!(
            err("/steer/hls/ch1", "_HLS_pathway=a&_HLS_throughput=fast")
                .contains("query `_HLS_throughput`: \"fast\" is not a throughput")
        );
        assert!(
            err("/steer/hls/ch1", "_HLS_pathway=a%20b").contains("\"a b\" is not a pathway id")
        );
        assert!(err("/steer/hls/ch1", "_HLS_throughput=1").contains("without `_HLS_pathway`"));
        assert!(err("/steer/hls/ch1", "_HLS_pathway=a&_HLS_pathway=b").contains("given twice"));
        assert!(err("/steer/hls/ch1", "session=a&session=b").contains("`session` is given twice"));
        assert!(err("/steer/hls/ch1", "_HLS_pathway=a&_HLS_throughput=-5").contains("\"-5\""));
    }

    #[test]
    fn dash_reports_several_pathways_in_order() {
        let p = parse(
            "/steer/dash/ch1",
            Some("_DASH_pathway=%22alpha,beta%22&_DASH_throughput=%221200000,800000.6%22"),
        )
        .unwrap();
        assert_eq!(
            p.reported,
            [
                Reported {
                    pathway: "alpha".into(),
                    throughput_bps: Some(1_200_000)
                },
                Reported {
                    pathway: "beta".into(),
                    throughput_bps: Some(800_001)
                },
            ]
        );
        let p = parse("/steer/dash/ch1", Some("_DASH_pathway=alpha")).unwrap();
        assert_eq!(p.reported[0].throughput_bps, None);
        assert!(
            err("/steer/dash/ch1", "_DASH_pathway=a,b&_DASH_throughput=1")
                .contains("1 values for 2 pathways")
        );
        assert!(err("/steer/dash/ch1", "_DASH_pathway=a,,b").contains("\"\" is not a pathway"));
        assert!(
            err("/steer/dash/ch1", "_DASH_pathway=a&_DASH_throughput=1e400").contains("\"1e400\"")
        );
        let many = (0..17)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(err("/steer/dash/ch1", &format!("_DASH_pathway={many}")).contains("at most 16"));
    }
}
