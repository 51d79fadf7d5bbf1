//! Builds every policy crate in `policies/` (and the test policies in
//! `tests/policies/`) into a WebAssembly component, so
//! that `cargo build`, `cargo run` and `cargo test` need no hand-run step.
//!
//! Each policy is compiled for `wasm32-unknown-unknown` by a nested cargo
//! invocation with its own target directory inside `OUT_DIR` (sharing the
//! outer one would deadlock on cargo's lock), then encoded as a component with
//! `wit-component`. The result imports only `edgeward:policy/host`: no WASI.
//! `OUT_DIR/policies.rs` lists them as `(name, path)` pairs for the engine
//! (which embeds `nearest`) and the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());

    for watched in [
        "policies",
        "tests/policies",
        "sdk",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // Shipped policies, and the hostile ones the sandbox tests load.
    let mut policies = policy_crates(&root.join("policies"));
    policies.extend(policy_crates(&root.join("tests/policies")));
    let target_dir = out_dir.join("policy-target");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", WASM_TARGET, "--profile", "policy"])
        .env("CARGO_TARGET_DIR", &target_dir);
    for (package, _) in &policies {
        cmd.args(["--package", package]);
    }
    // Flags meant for the host build (coverage, sanitizers, clippy as a
    // wrapper) must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the policies");
    if !status.success() {
        panic!(
            "building the policies in policies/ for {WASM_TARGET} failed (see above).\n\
             If the target is missing, install it with: rustup target add {WASM_TARGET}"
        );
    }

    let mut listing =
        String::from("/// Every policy built from `policies/`, as `(name, component path)`.\n");
    listing.push_str("pub const BUILT: &[(&str, &str)] = &[\n");
    for (package, lib_name) in &policies {
        let module = target_dir
            .join(WASM_TARGET)
            .join("policy")
            .join(format!("{lib_name}.wasm"));
        let bytes =
            std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
        let component = wit_component::ComponentEncoder::default()
            .module(&bytes)
            .and_then(|enc| enc.validate(true).encode())
            .unwrap_or_else(|e| panic!("encoding policy `{package}` as a component: {e:#}"));
        let dest = out_dir.join(format!("{package}.wasm"));
        std::fs::write(&dest, component).unwrap();
        listing.push_str(&format!(
            "    ({package:?}, {:?}),\n",
            dest.display().to_string()
        ));
    }
    listing.push_str("];\n");
    // The core modules as `cargo build` leaves them (before encoding): what
    // a policy author's plain build gives, which the engine accepts too.
    listing.push_str(
        "/// Every policy built from `policies/`, as `(name, core module path)`.\n\
         pub const BUILT_MODULES: &[(&str, &str)] = &[\n",
    );
    for (package, lib_name) in &policies {
        let module = target_dir
            .join(WASM_TARGET)
            .join("policy")
            .join(format!("{lib_name}.wasm"));
        listing.push_str(&format!(
            "    ({package:?}, {:?}),\n",
            module.display().to_string()
        ));
    }
    listing.push_str("];\n");
    std::fs::write(out_dir.join("policies.rs"), listing).unwrap();

    std::fs::write(out_dir.join("policy-crate.lock"), policy_crate_lock(&root)).unwrap();
}

/// The `Cargo.lock` of a crate that `edgeward policy new` writes, less the
/// crate's own entry (which the command puts in its place): the versions
/// this workspace builds the SDK with, so they build with the pinned
/// toolchain. (Cargo may still rewrite the dependency lists of a few
/// packages, whose optional dependencies the workspace enables; it keeps
/// the versions.)
fn policy_crate_lock(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("Cargo.lock")).expect("reading Cargo.lock");
    let lock: toml::Table = toml::from_str(&text).expect("parsing Cargo.lock");
    let packages = lock["package"].as_array().expect("packages in Cargo.lock");
    // A dependency is "name", "name version" or "name version (source)".
    let find = |dep: &str| -> &toml::Value {
        let mut words = dep.split(' ');
        let name = words.next().unwrap();
        let version = words.next();
        packages
            .iter()
            .find(|p| {
                p["name"].as_str() == Some(name)
                    && version.is_none_or(|v| p["version"].as_str() == Some(v))
            })
            .unwrap_or_else(|| panic!("{dep} is not in Cargo.lock"))
    };
    let mut wanted = vec!["edgeward-sdk".to_string(), "serde".to_string()];
    let mut chosen: Vec<&toml::Value> = Vec::new();
    while let Some(dep) = wanted.pop() {
        let package = find(&dep);
        if chosen.iter().any(|c| std::ptr::eq(*c, package)) {
            continue;
        }
        chosen.push(package);
        for d in package
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            wanted.push(d.as_str().unwrap().to_string());
        }
    }
    // Written as cargo writes it (so that `cargo build --locked` takes it
    // as it is): packages by name and version, fields in cargo's order, a
    // dependency's version only where two versions of it are locked.
    let mut all: Vec<(String, String, Option<&toml::Value>)> = chosen
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_string();
            let version = p["version"].as_str().unwrap().to_string();
            (name, version, Some(*p))
        })
        .collect();
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let versions_of = |name: &str| all.iter().filter(|(n, _, _)| n == name).count();
    let mut out = String::from(
        "# This file is automatically @generated by Cargo.\n\
         # It is not intended for manual editing.\n",
    );
    out.push_str(&format!("version = {}\n", lock["version"]));
    for (name, version, package) in &all {
        out.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n"
        ));
        let deps: Vec<String> = match package {
            None => Vec::new(),
            Some(p) => {
                for field in ["source", "checksum"] {
                    if let Some(v) = p.get(field).and_then(|v| v.as_str()) {
                        out.push_str(&format!("{field} = \"{v}\"\n"));
                    }
                }
                p.get("dependencies")
                    .and_then(|d| d.as_array())
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let d = d.as_str().unwrap();
                        let name = d.split(' ').next().unwrap();
                        if versions_of(name) > 1 {
                            d.split(" (").next().unwrap().to_string()
                        } else {
                            name.to_string()
                        }
                    })
                    .collect()
            }
        };
        if !deps.is_empty() {
            out.push_str("dependencies = [\n");
            for d in deps {
                out.push_str(&format!(" \"{d}\",\n"));
            }
            out.push_str("]\n");
        }
    }
    out
}

/// `(package name, library file stem)` of every crate directly below `dir`.
fn policy_crates(dir: &Path) -> Vec<(String, String)> {
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading policies/") {
        let path = entry.unwrap().path();
        let manifest = path.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        let parsed: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", manifest.display()));
        let name = parsed
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or_else(|| panic!("no package name in {}", manifest.display()))
            .to_string();
        let lib = name.replace('-', "_");
        crates.push((name, lib));
    }
    crates.sort();
    crates
}
