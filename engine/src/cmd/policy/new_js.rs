//! `edgeward policy new NAME --lang js`: a standalone JavaScript policy
//! project that builds with nothing but this binary and Node (npm).
//!
//! Like the Rust crate, it refers to nothing of this repository: the
//! JavaScript SDK (`sdk/js/`) and the WIT contract travel inside the
//! binary and are written into the project (`edgeward/`, `wit/`), and its
//! `package-lock.json` is the one the engine's own tests build JavaScript
//! policies with (componentize-js from the npm registry), so `npm ci`
//! installs what was tested. `edgeward policy build` runs componentize-js.

use super::new::{CASES, Template, check_name};
use anyhow::bail;
use std::path::{Path, PathBuf};

const WIT: &str = include_str!("../../../../wit/policy.wit");
const SDK: &[(&str, &str)] = &[
    (
        "edgeward.js",
        include_str!("../../../../sdk/js/edgeward.js"),
    ),
    (
        "edgeward.d.ts",
        include_str!("../../../../sdk/js/edgeward.d.ts"),
    ),
    (
        "testing/register.js",
        include_str!("../../../../sdk/js/testing/register.js"),
    ),
    (
        "testing/hooks.js",
        include_str!("../../../../sdk/js/testing/hooks.js"),
    ),
    (
        "testing/host.js",
        include_str!("../../../../sdk/js/testing/host.js"),
    ),
];
/// The lockfile of the shipped JavaScript policies (componentize-js and
/// its peer preview2-shim at the versions the tests use).
const LOCK: &str = include_str!("../../../../policies/js/package-lock.json");
const LOCK_NAME: &str = "\"name\": \"edgeward-js-policies\"";
const NEAREST: &str = include_str!("../../../../policies/js/nearest.js");
const CONSISTENT: &str = include_str!("../../../../policies/js/consistent.js");
const BLANK: &str = r#"// A routing policy for edgeward: the first eligible edge of the nearest
// tier that has one.

import { exportPolicy, reject } from "./edgeward/edgeward.js";

export const policy = exportPolicy({
  select(_request, tiers) {
    for (const tier of tiers) {
      const candidate = tier.eligible().find((c) => c.weight > 0);
      if (candidate) return candidate;
    }
    return reject(503, "no available edge server for this client");
  },
});
"#;
/// Where the shipped policies import the SDK from, and where a project does.
const REPO_IMPORT: &str = "\"../../sdk/js/edgeward.js\"";
const PROJECT_IMPORT: &str = "\"./edgeward/edgeward.js\"";

/// Writes the project `name` in `parent/name`.
pub fn run(name: &str, template: Template, parent: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let source = match template {
        Template::Nearest => NEAREST.replace(REPO_IMPORT, PROJECT_IMPORT),
        Template::Consistent => CONSISTENT.replace(REPO_IMPORT, PROJECT_IMPORT),
        Template::Blank => BLANK.to_string(),
        Template::LeastLoaded => bail!(
            "the least-loaded template is Rust only for now; for JavaScript choose nearest, \
             consistent or blank"
        ),
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or folder",
            dir.display()
        );
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        ("package.json".into(), manifest(name)),
        ("package-lock.json".into(), lock(name)?),
        ("policy.js".into(), source),
        ("cases.toml".into(), CASES.into()),
        ("README.md".into(), readme(name)),
        (".gitignore".into(), "/node_modules\n/target\n".into()),
        ("wit/policy.wit".into(), WIT.into()),
    ];
    for (file, text) in SDK {
        files.push((Path::new("edgeward").join(file), (*text).into()));
    }
    super::new::write_files(&dir, files)?;
    Ok(dir)
}

fn manifest(name: &str) -> String {
    let dependencies = serde_json::from_str::<serde_json::Value>(LOCK)
        .ok()
        .and_then(|lock| lock["packages"][""]["dependencies"].as_object().cloned())
        .unwrap_or_default();
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "main": "policy.js",
        "description": format!("An edgeward routing policy (contract {}).", super::new::CONTRACT),
        "scripts": {
            "build": "edgeward policy build",
            "test": "edgeward policy test --cases cases.toml",
        },
        "dependencies": dependencies,
    });
    serde_json::to_string_pretty(&manifest).expect("JSON") + "\n"
}

/// The lockfile, with the project's name for the shipped policies'.
fn lock(name: &str) -> anyhow::Result<String> {
    if LOCK.matches(LOCK_NAME).count() != 2 {
        bail!("the embedded package-lock.json does not name its project as expected");
    }
    Ok(LOCK.replacen(LOCK_NAME, &format!("\"name\": \"{name}\""), 2))
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

An edgeward routing policy in JavaScript (contract {contract}).

    npm ci                                     # componentize-js, from the lockfile
    edgeward policy build                      # -> target/edgeward/{name}.wasm
    edgeward policy test --cases cases.toml    # the cases, through the engine
    edgeward policy explain target/edgeward/{name}.wasm 10.1.2.3 /btv/live/hls/ch1.m3u8

`policy.js` is the policy; `edgeward/` is the SDK (`edgeward.d.ts` has its
types), `wit/` the contract. `exportPolicy({{ init, select, steer }})` hides
the wire format: `select(request, tiers)` returns a candidate, a server
index, `reject(status, reason)` or `redirect(url)`. `choose.weighted` and
`choose.rendezvous` give the Rust SDK's answers for the same seed and key.

`random()`, `Math.random()` and `crypto.getRandomValues()` are seeded per
request, so decisions can be replayed: never use them for secrets. A
policy has no files, sockets, environment or arguments; `console.log`
goes to the engine's log, rate-limited.

Under Node, the SDK's host functions come from a stand-in
(`edgeward/testing/host.js`): `node --import ./edgeward/testing/register.js
--test` runs your own unit tests of the policy's helpers.

Upgrading the SDK: run `edgeward policy new` of a newer binary and copy its
`edgeward/` and `wit/` over.
"#,
        contract = super::new::CONTRACT
    )
}
