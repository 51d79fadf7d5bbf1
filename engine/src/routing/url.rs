//! The URL grammar players use (kept from the system edgeward replaces):
//!
//! ```text
//! /btv/live/{hls|mpd}[_{wv|pr|cenc}]/{channel epg_id}[.m3u8|.mpd]
//! /btv/catchup/{hls|mpd}[_{wv|pr|cenc}]/{program epg_id}[.m3u8|.mpd]
//! /vod/{path}
//! /static/{path}
//! ```
//!
//! A path outside these prefixes is `404`; a path under them that does not
//! fit the grammar is `400`.

use crate::topology::{Encryption, Protocol};

/// A parsed player request path, borrowing from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A live channel.
    Live {
        /// Streaming protocol.
        protocol: Protocol,
        /// Asked encryption.
        encryption: Encryption,
        /// Channel `epg_id`.
        epg_id: &'a str,
    },
    /// A recorded program.
    Catchup {
        /// Streaming protocol.
        protocol: Protocol,
        /// Asked encryption.
        encryption: Encryption,
        /// Program `epg_id`.
        epg_id: &'a str,
    },
    /// A VOD asset: the path below `/vod/`.
    Vod(&'a str),
    /// A static file: the path below `/static/`.
    Static(&'a str),
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// No route has this prefix (`404`).
    NoRoute,
    /// The path is under a route but malformed (`400`); the reason says how.
    Malformed(&'static str),
}

/// Parses a request path (without its query string).
pub fn parse(path: &str) -> Result<Route<'_>, UrlError> {
    if let Some(rest) = path.strip_prefix("/btv/") {
        let (kind, rest) = rest.split_once('/').ok_or(UrlError::NoRoute)?;
        let live = match kind {
            "live" => true,
            "catchup" => false,
            _ => return Err(UrlError::NoRoute),
        };
        let (spec, id) = rest
            .split_once('/')
            .ok_or(UrlError::Malformed("expected /{protocol}/{epg_id}"))?;
        let (protocol, encryption) = parse_spec(spec)?;
        let epg_id = strip_extension(id);
        if epg_id.is_empty() {
            return Err(UrlError::Malformed("empty epg_id"));
        }
        if epg_id.contains('/') {
            return Err(UrlError::Malformed("epg_id must be a single path segment"));
        }
        return Ok(if live {
            Route::Live {
                protocol,
                encryption,
                epg_id,
            }
        } else {
            Route::Catchup {
                protocol,
                encryption,
                epg_id,
            }
        });
    }
    if let Some(rest) = path.strip_prefix("/vod/") {
        return asset_path(rest).map(Route::Vod);
    }
    if let Some(rest) = path.strip_prefix("/static/") {
        return asset_path(rest).map(Route::Static);
    }
    Err(UrlError::NoRoute)
}

/// `hls`, `mpd`, optionally followed by `_wv`, `_pr` or `_cenc`.
fn parse_spec(spec: &str) -> Result<(Protocol, Encryption), UrlError> {
    let (proto, enc) = match spec.split_once('_') {
        Some((p, e)) => (p, Some(e)),
        None => (spec, None),
    };
    let protocol = match proto {
        "hls" => Protocol::Hls,
        "mpd" => Protocol::Mpd,
        _ => return Err(UrlError::Malformed("protocol must be hls or mpd")),
    };
    let encryption = match enc {
        None => Encryption::None,
        Some("wv") => Encryption::Widevine,
        Some("pr") => Encryption::Playready,
        Some("cenc") => Encryption::Cenc,
        Some(_) => {
            return Err(UrlError::Malformed(
                "encryption suffix must be _wv, _pr or _cenc",
            ));
        }
    };
    Ok((protocol, encryption))
}

fn strip_extension(id: &str) -> &str {
    id.strip_suffix(".m3u8")
        .or_else(|| id.strip_suffix(".mpd"))
        .unwrap_or(id)
}

/// A VOD or static path: non-empty, no empty, `.` or `..` segments.
fn asset_path(path: &str) -> Result<&str, UrlError> {
    if path.is_empty() {
        return Err(UrlError::Malformed("empty asset path"));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(UrlError::Malformed(
            "asset path must not contain empty, . or .. segments",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_catchup_with_every_suffix_and_extension() {
        assert_eq!(
            parse("/btv/live/hls/ch1.m3u8"),
            Ok(Route::Live {
                protocol: Protocol::Hls,
                encryption: Encryption::None,
                epg_id: "ch1"
            })
        );
        assert_eq!(
            parse("/btv/live/mpd_wv/ch1.mpd"),
            Ok(Route::Live {
                protocol: Protocol::Mpd,
                encryption: Encryption::Widevine,
                epg_id: "ch1"
            })
        );
        assert_eq!(
            parse("/btv/catchup/hls_pr/p9"),
            Ok(Route::Catchup {
                protocol: Protocol::Hls,
                encryption: Encryption::Playready,
                epg_id: "p9"
            })
        );
        assert_eq!(
            parse("/btv/catchup/mpd_cenc/p9.mpd"),
            Ok(Route::Catchup {
                protocol: Protocol::Mpd,
                encryption: Encryption::Cenc,
                epg_id: "p9"
            })
        );
    }

    #[test]
    fn vod_and_static_keep_their_path() {
        assert_eq!(
            parse("/vod/films/a b/x.mp4"),
            Ok(Route::Vod("films/a b/x.mp4"))
        );
        assert_eq!(parse("/static/logo.png"), Ok(Route::Static("logo.png")));
    }

    #[test]
    fn malformed_paths_are_400_and_unknown_prefixes_404() {
        for p in [
            "/btv/live/hls",
            "/btv/live/hls/",
            "/btv/live/hls/.m3u8",
            "/btv/live/flv/ch1",
            "/btv/live/hls_xx/ch1",
            "/btv/live/hls/ch1/extra",
            "/vod/",
            "/vod/a//b",
            "/vod/../etc/passwd",
            "/static/./x",
        ] {
            assert!(matches!(parse(p), Err(UrlError::Malformed(_))), "{p}");
        }
        for p in [
            "/",
            "/btv",
            "/btv/live",
            "/btv/radio/hls/ch1",
            "/vod",
            "/favicon.ico",
        ] {
            assert_eq!(parse(p), Err(UrlError::NoRoute), "{p}");
        }
    }
}
