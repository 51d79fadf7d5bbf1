//! `edgeward policy build [DIR]`: `cargo build` of a policy crate for
//! wasm, its core module encoded as a component (or componentize-js of a
//! JavaScript project), and what the author needs to know of the result
//! (path, size, content hash, contract version).

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
        if dir.join("package.json").is_file() {
            return run_js(dir);
        }
        bail!(
            "{} has no Cargo.toml or package.json: give the folder of a policy (`edgeward policy new NAME [--lang js]` writes one)",
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

/// Builds the JavaScript project in `dir` with its own componentize-js
/// (`npm ci` installs it from the lockfile) over its `wit/`, into
/// `dir/target/edgeward/NAME.wasm`. Its relative imports resolve inside
/// `dir` (componentize-js runs there).
fn run_js(dir: &Path) -> anyhow::Result<Built> {
    let manifest_path = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let name = manifest["name"].as_str().unwrap_or("policy");
    // The name becomes a file name: keep it to what `policy new` allows.
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "{}: field `name` is {name:?}; use letters, digits, `-` and `_`",
            manifest_path.display()
        );
    }
    let main = manifest["main"].as_str().unwrap_or("policy.js");
    let main_path = Path::new(main);
    if main_path.is_absolute()
        || main_path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || !dir.join(main_path).is_file()
    {
        bail!(
            "{}: field `main` is {main:?}, which is not a file inside {}",
            manifest_path.display(),
            dir.display()
        );
    }
    if !dir.join("wit").is_dir() {
        bail!(
            "{} has no wit/ folder (the contract): `edgeward policy new NAME --lang js` writes one",
            dir.display()
        );
    }
    let tool = dir.join("node_modules/.bin/componentize-js");
    if !tool.exists() {
        bail!(
            "{} is missing: run `npm ci` in {} first (it installs componentize-js from the lockfile)",
            tool.display(),
            dir.display()
        );
    }
    let out_dir = dir.join("target/edgeward");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join(format!("{name}.wasm"));
    let status = Command::new(&tool)
        .current_dir(dir)
        .args(["--wit", "wit", "--world-name", "router"])
        // The contract's world imports no HTTP: leave StarlingMonkey's out.
        .args(["--disable", "http", "fetch-event", "-o"])
        .arg(Path::new("target/edgeward").join(format!("{name}.wasm")))
        .arg(main)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {} (is Node installed?)", tool.display()))?;
    if !status.success() {
        bail!(
            "componentize-js could not build {} (see above)",
            dir.join(main).display()
        );
    }
    let encoded =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let contract = component::contract(&encoded).with_context(|| {
        format!(
            "{} exports no edgeward:policy/policy interface",
            path.display()
        )
    })?;
    Ok(Built {
        size: encoded.len(),
        sha256: crate::sha256_hex(&encoded),
        contract,
        path: std::fs::canonicalize(&path).unwrap_or(path),
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
