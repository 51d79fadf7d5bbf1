//! `edgeward policy build [DIR]`: `cargo build` of a policy crate for
//! wasm, its core module encoded as a component, and what the author needs
//! to know of the result (path, size, content hash, contract version).

use crate::policy::component;
use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What `policy build` made.
#[derive(Debug, serde::Serialize)]
pub struct Built {
    /// The component.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: usize,
    /// SHA-256 of its bytes (what the engine reports as the policy's hash).
    pub sha256: String,
    /// The contract it exports (`edgeward:policy@X.Y.Z`).
    pub contract: String,
}

/// Builds the crate in `dir` and writes its component to
/// `dir/target/edgeward/NAME.wasm`.
pub fn run(dir: &Path) -> anyhow::Result<Built> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: give the folder of a policy crate (`edgeward policy new NAME` writes one)",
            dir.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--release", "--target", WASM_TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run cargo (is a Rust toolchain installed?)")?;
    // cargo's JSON messages name the artifacts; the cdylib's .wasm is the
    // policy's core module.
    let mut modules = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if message["reason"] == "compiler-artifact" && is_cdylib {
            for file in message["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                    modules.push((
                        message["target"]["name"]
                            .as_str()
                            .unwrap_or("policy")
                            .to_string(),
                        PathBuf::from(f),
                    ));
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build of {} failed (see above); if the target is missing: rustup target add {WASM_TARGET}",
            dir.display()
        );
    }
    let Some((name, module)) = modules.pop() else {
        bail!(
            "cargo built no WebAssembly library in {}: the crate needs `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        );
    };
    let bytes =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    let encoded = component::of(&bytes, &name)?;
    let contract = component::contract(&encoded).with_context(|| {
        format!(
            "{} exports no edgeward:policy/policy interface",
            module.display()
        )
    })?;
    let out_dir = target_dir(&module).join("edgeward");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join(format!("{name}.wasm"));
    std::fs::write(&path, &encoded).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Built {
        size: encoded.len(),
        sha256: crate::sha256_hex(&encoded),
        contract,
        path,
    })
}

/// The `target/` folder of an artifact in `target/<triple>/release/`.
fn target_dir(artifact: &Path) -> PathBuf {
    artifact
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}
