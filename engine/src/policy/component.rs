//! What the engine accepts as a policy: a WebAssembly component of the
//! `edgeward:policy` world, or the core module that `cargo build --target
//! wasm32-unknown-unknown` makes of a crate depending on `edgeward-sdk`
//! (its `component-type` custom section names the world), which is
//! encoded into a component here, as `wasm-tools component new` would.
//! Anything else is refused with a message that says what to run.

use super::PolicyError;
use std::borrow::Cow;

/// The first eight bytes of a core module (magic, version 1).
const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
/// The WebAssembly magic number that components and modules share.
const MAGIC: &[u8; 4] = b"\0asm";

/// What to run to get a policy the engine loads.
pub const BUILD_HINT: &str = "build the policy with `edgeward policy build DIR`, or run \
     `cargo build --release --target wasm32-unknown-unknown` in a crate that depends on \
     edgeward-sdk and exports its policy with `export_policy!`";

/// What kind of file `bytes` hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A component (layer 1).
    Component,
    /// A core module.
    CoreModule,
    /// Not WebAssembly at all.
    NotWasm,
}

/// Whether a core module carries a `component-type` custom section (what
/// `wit-bindgen`, through the SDK, embeds to name the world it was built
/// for). Stops at the first section that is not custom or wellformed.
fn has_component_type(module: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(module)
        .map_while(Result::ok)
        .any(|payload| match payload {
            wasmparser::Payload::CustomSection(s) => s.name().starts_with("component-type"),
            _ => false,
        })
}

/// The contract a component exports its policy for
/// (`edgeward:policy@0.3.0`), if it exports one.
pub fn contract(component: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0)
        .parse_all(component)
        .map_while(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::ComponentExportSection(exports) => {
                exports.into_iter().map_while(Result::ok).find_map(|e| {
                    let version = e.name.name.strip_prefix("edgeward:policy/policy@")?;
                    Some(format!("edgeward:policy@{version}"))
                })
            }
            _ => None,
        })
}

/// The kind of file `bytes` hold, from their header.
pub fn kind(bytes: &[u8]) -> Kind {
    if bytes.starts_with(&CORE_MODULE) {
        Kind::CoreModule
    } else if bytes.starts_with(MAGIC) {
        Kind::Component
    } else {
        Kind::NotWasm
    }
}

/// Refuses, before anything is compiled (or found compiled in a cache),
/// what cannot become a policy: a file that is not WebAssembly, or a core
/// module not built with the SDK.
pub fn check(bytes: &[u8], name: &str) -> Result<Kind, PolicyError> {
    match kind(bytes) {
        Kind::NotWasm => Err(refusal(
            name,
            "the file is not WebAssembly (it does not start with `\\0asm`)",
        )),
        Kind::CoreModule if !has_component_type(bytes) => Err(refusal(
            name,
            "it is a core WebAssembly module, and not one built with edgeward-sdk \
             (it carries no `component-type` section naming the edgeward:policy world)",
        )),
        kind => Ok(kind),
    }
}

fn refusal(name: &str, why: &str) -> PolicyError {
    PolicyError::Compile {
        name: name.to_string(),
        message: format!("{why}; {BUILD_HINT}"),
    }
}

/// The component to compile for the policy `name`: `bytes` themselves, or
/// the component encoded from a core module built with the SDK.
pub fn of<'b>(bytes: &'b [u8], name: &str) -> Result<Cow<'b, [u8]>, PolicyError> {
    let refuse = |why: String| refusal(name, &why);
    match check(bytes, name)? {
        Kind::Component | Kind::NotWasm => Ok(Cow::Borrowed(bytes)),
        Kind::CoreModule => {
            let mut encoder = wit_component::ComponentEncoder::default();
            encoder.module(bytes).map_err(|e| {
                refuse(format!(
                    "it is a core WebAssembly module, and not one built with edgeward-sdk \
                     (no edgeward:policy component type in it: {e})"
                ))
            })?;
            let component = encoder.validate(true).encode().map_err(|e| {
                refuse(format!(
                    "it is a core WebAssembly module that cannot be made a component \
                     of the edgeward:policy world: {e:#}"
                ))
            })?;
            Ok(Cow::Owned(component))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_their_header() {
        assert_eq!(kind(b"\0asm\x01\0\0\0rest"), Kind::CoreModule);
        assert_eq!(kind(b"\0asm\x0d\0\x01\0"), Kind::Component);
        assert_eq!(kind(b"MZ\x90\0"), Kind::NotWasm);
        assert_eq!(kind(b""), Kind::NotWasm);
    }

    #[test]
    fn a_bare_module_is_refused_with_what_to_run() {
        let e = of(b"\0asm\x01\0\0\0", "junk").unwrap_err().to_string();
        assert!(e.contains("not a valid WebAssembly component"), "{e}");
        assert!(e.contains("not one built with edgeward-sdk"), "{e}");
        assert!(e.contains("edgeward policy build"), "{e}");
        let e = of(b"hello", "text").unwrap_err().to_string();
        assert!(e.contains("not WebAssembly"), "{e}");
        assert!(
            e.contains("cargo build --release --target wasm32-unknown-unknown"),
            "{e}"
        );
    }
}
