//! `edgeward policy new NAME`: a standalone policy crate that builds with
//! nothing but this binary, a Rust toolchain and the wasm target.
//!
//! The SDK, its codec and the WIT contract travel inside the binary and are
//! written into the crate's `vendor/` folder, so the crate refers to
//! nothing of this repository; its `Cargo.lock` holds the versions the
//! engine's own build uses for the SDK (so a fresh resolve cannot pull a
//! crate that needs a newer compiler), and `rust-toolchain.toml` pins the
//! toolchain they were tested with. Upgrading the SDK is running `policy
//! new` of a newer binary and copying its `vendor/` over (see the crate's
//! README).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Which policy the new crate starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// The default rule: nearest tier, weighted random edge.
    Nearest,
    /// Nearest tier, then rendezvous hashing on the channel or asset.
    Consistent,
    /// Nearest tier, then the edge reporting the lowest load.
    LeastLoaded,
    /// The smallest policy: the first eligible edge.
    Blank,
}

/// The language of a new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate (the SDK vendored).
    Rust,
    /// A JavaScript project (the SDK copied in; componentize-js from npm).
    Js,
}

/// The contract version the vendored SDK is built for.
pub const CONTRACT: &str = "edgeward:policy@0.4.0";

const WIT: &str = include_str!("../../../../wit/policy.wit");
const CODEC: &str = include_str!("../../../../sdk/codec/src/lib.rs");
const SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../../sdk/src/lib.rs")),
    ("abi.rs", include_str!("../../../../sdk/src/abi.rs")),
    ("choose.rs", include_str!("../../../../sdk/src/choose.rs")),
    ("config.rs", include_str!("../../../../sdk/src/config.rs")),
    ("host.rs", include_str!("../../../../sdk/src/host.rs")),
];
/// The engine build's versions of the SDK's dependencies (see build.rs).
const LOCK: &str = include_str!(concat!(env!("OUT_DIR"), "/policy-crate.lock"));

const NEAREST: &str = include_str!("../../../../policies/nearest/src/lib.rs");
const CONSISTENT: &str = include_str!("../../../../policies/consistent/src/lib.rs");
const LEAST_LOADED: &str = include_str!("../../../../policies/least-loaded/src/lib.rs");
const BLANK: &str = r#"//! A routing policy for edgeward: the first eligible edge of the nearest
//! tier that has one.

use edgeward_sdk::{Decision, NoConfig, Policy, Request, Tier, export_policy};

/// The policy (one value lives in each warm instance).
pub struct FirstEligible;

impl Policy for FirstEligible {
    type Config = NoConfig;

    fn new(_config: NoConfig) -> Result<Self, String> {
        Ok(FirstEligible)
    }

    fn select(&mut self, _request: &Request, tiers: &[Tier]) -> Decision {
        for tier in tiers {
            if let Some(c) = tier.eligible().find(|c| c.weight > 0) {
                return Decision::Choose(c.server);
            }
        }
        Decision::reject(503, "no available edge server for this client")
    }
}

export_policy!(FirstEligible);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::{Candidate, CandidateState, Encryption, IpAddress, RequestKind};

    fn request() -> Request {
        Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: "film.mp4".into(),
            query: None,
            client: IpAddress::V4((10, 0, 0, 1)),
            topology_version: 1,
            seed: 7,
            ..Request::empty()
        }
    }

    fn tier(states: &[CandidateState]) -> Tier {
        Tier {
            region: 0,
            region_active: true,
            subnet: Some(0),
            distance_km: None,
            candidates: states
                .iter()
                .enumerate()
                .map(|(i, &state)| Candidate {
                    server: i as u32,
                    group: 0,
                    weight: 1,
                    state,
                    health: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_eligible_edge_wins_and_none_is_a_503() {
        let mut policy = FirstEligible::new(NoConfig::default()).unwrap();
        let down = CandidateState::all() - CandidateState::AVAILABLE;
        let tiers = [tier(&[down]), tier(&[down, CandidateState::all()])];
        assert!(matches!(policy.select(&request(), &tiers), Decision::Choose(1)));
        let tiers = [tier(&[down])];
        assert!(matches!(
            policy.select(&request(), &tiers),
            Decision::Reject(r) if r.status == 503
        ));
    }
}
"#;

/// Writes the crate `name` in `parent/name`.
pub fn run(name: &str, template: Template, parent: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or folder",
            dir.display()
        );
    }
    let source = match template {
        Template::Nearest => NEAREST,
        Template::Consistent => CONSISTENT,
        Template::LeastLoaded => LEAST_LOADED,
        Template::Blank => BLANK,
    };
    let version = env!("CARGO_PKG_VERSION");
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), crate_manifest(name)),
        ("Cargo.lock".into(), lock(name)),
        ("rust-toolchain.toml".into(), TOOLCHAIN.into()),
        ("src/lib.rs".into(), source.into()),
        ("cases.toml".into(), CASES.into()),
        ("tests/cases.rs".into(), CASES_TEST.into()),
        ("README.md".into(), readme(name)),
        (".gitignore".into(), "/target\n".into()),
        ("vendor/wit/policy.wit".into(), WIT.into()),
        (
            "vendor/edgeward-codec/Cargo.toml".into(),
            CODEC_MANIFEST.replace("@VERSION@", version),
        ),
        ("vendor/edgeward-codec/src/lib.rs".into(), CODEC.into()),
        (
            "vendor/edgeward-sdk/Cargo.toml".into(),
            SDK_MANIFEST.replace("@VERSION@", version),
        ),
    ];
    for (file, text) in SDK {
        files.push((
            Path::new("vendor/edgeward-sdk/src").join(file),
            (*text).into(),
        ));
    }
    write_files(&dir, files)?;
    Ok(dir)
}

/// Writes each `(path, text)` under `dir`, creating folders as needed.
pub(super) fn write_files(dir: &Path, files: Vec<(PathBuf, String)>) -> anyhow::Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The lock of the new crate: the SDK's locked dependencies, and the
/// crate's own entry in its sorted place.
fn lock(name: &str) -> String {
    let own = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\ndependencies = [\n \"edgeward-sdk\",\n \"serde\",\n]\n"
    );
    let mut blocks: Vec<&str> = LOCK.split("\n[[package]]\n").collect();
    let header = blocks.remove(0);
    let at = blocks
        .iter()
        .position(|b| b.strip_prefix("name = \"").is_some_and(|rest| rest > name))
        .unwrap_or(blocks.len());
    blocks.insert(at, &own);
    let mut out = header.to_string();
    for block in blocks {
        out.push_str("\n[[package]]\n");
        out.push_str(block);
        if !block.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// A crate name cargo accepts that is also a safe folder name.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "policy name {name:?} is not a crate name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter (at most 64)"
        );
    }
    if matches!(
        name,
        "edgeward-sdk" | "edgeward-codec" | "edgeward_sdk" | "edgeward_codec"
    ) {
        bail!("policy name {name:?} is taken by the SDK; choose another");
    }
    Ok(())
}

fn crate_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# Vendored by `edgeward policy new` (contract {CONTRACT}).
edgeward-sdk = {{ path = "vendor/edgeward-sdk" }}
serde = {{ version = "1", features = ["derive"] }}

# A policy runs on every request: optimised for speed, and small.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"

# Its own workspace: the crate builds wherever it is put.
[workspace]
"#
    )
}

/// The crate's `cargo test` runs its cases file through `edgeward policy
/// test` (the engine builds the tiers; the SDK does not).
const CASES_TEST: &str = r#"//! `cases.toml`, through the engine's own request path: runs
//! `edgeward policy test` (set EDGEWARD to the binary's path if it is not
//! on PATH).

use std::process::Command;

#[test]
fn the_cases_hold_through_the_engine() {
    let edgeward = std::env::var("EDGEWARD").unwrap_or_else(|_| "edgeward".into());
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&edgeward)
        .args(["policy", "test", dir, "--cases"])
        .arg(format!("{dir}/cases.toml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {edgeward:?} (set EDGEWARD to its path): {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
"#;

/// Cases every template passes on the demo topology (`edgeward policy
/// test --cases cases.toml`); the author adds their own.
pub(super) const CASES: &str = r#"# Cases for `edgeward policy test --cases cases.toml` (add --topology FILE
# for your own topology; these hold on the demo topology built into the
# engine). Each names a client and a URL, optionally servers that are down
# or drained, and what the answer must be: status, edge, edges (any of),
# host or location_prefix.

[[case]]
name = "a Moscow client goes to a Moscow edge"
client = "10.1.2.3"
url = "/btv/live/hls/ch1.m3u8"
expect = { edges = ["edge-msk-1", "edge-msk-2"] }

[[case]]
name = "with both Moscow edges down, the default region serves"
client = "10.1.2.3"
url = "/btv/live/hls/ch1.m3u8"
down = ["edge-msk-1", "edge-msk-2"]
expect = { edge = "edge-central-1", location_prefix = "https://e1.central.cdn.example/live/ch1/" }

[[case]]
name = "a client of no subnet is served by the default region"
client = "192.0.2.1"
url = "/vod/film.mp4"
expect = { host = "e1.central.cdn.example" }

[[case]]
name = "no edge anywhere is a 503"
client = "192.0.2.1"
url = "/vod/film.mp4"
drained = ["edge-central-1"]
expect = { status = 503 }
"#;

const TOOLCHAIN: &str = r#"# The toolchain the vendored SDK and Cargo.lock were built with.
[toolchain]
channel = "1.95.0"
targets = ["wasm32-unknown-unknown"]
"#;

const CODEC_MANIFEST: &str = r#"[package]
name = "edgeward-codec"
description = "The packed call of the edgeward:policy WIT contract (vendored by `edgeward policy new`)."
version = "@VERSION@"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"
publish = false

[dependencies]
bitflags = "2"
"#;

const SDK_MANIFEST: &str = r#"[package]
name = "edgeward-sdk"
description = "Write edgeward routing policies in Rust (vendored by `edgeward policy new`)."
version = "@VERSION@"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"
publish = false

[dependencies]
edgeward-codec = { path = "../edgeward-codec" }
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "bitflags"] }
serde = { version = "1", features = ["derive"] }
rmp-serde = "1.3"
"#;

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A routing policy for edgeward ({CONTRACT}), written by `edgeward policy new`.

```sh
cargo test                          # its unit tests, natively, and cases.toml
edgeward policy build               # the component, ready to load
edgeward policy test --cases cases.toml   # table-driven cases, through the engine
edgeward policy check target/edgeward/{name}.wasm --topology my-topology.json
edgeward ctl push {name} target/edgeward/{name}.wasm --activate
```

A plain `cargo build --release --target wasm32-unknown-unknown` works
too: the engine accepts the core module it leaves in
`target/wasm32-unknown-unknown/release/`.

`vendor/` holds the SDK, its codec and the WIT contract, as the `edgeward`
binary that wrote this crate carries them. To upgrade, run `edgeward
policy new scratch` with the newer binary and copy `scratch/vendor/` (and
`Cargo.lock`'s SDK dependencies) over this crate's.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names() {
        for good in ["my-policy", "p2", "geo_steer"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "../x", "a b", "-x", "1x", "edgeward-sdk", "x/y"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn the_lock_pins_the_sdk_dependencies_for_the_new_crate() {
        let lock = lock("my-policy");
        let parsed: toml::Table = toml::from_str(&lock).unwrap();
        let names: Vec<&str> = parsed["package"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for wanted in [
            "my-policy",
            "edgeward-sdk",
            "edgeward-codec",
            "wit-bindgen",
            "serde",
            "rmp-serde",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
        assert!(!names.contains(&"wasmtime"), "only the SDK's dependencies");
    }
}
