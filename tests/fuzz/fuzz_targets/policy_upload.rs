//! A policy upload as the admin API reads it (`POST /policies/NAME`): the
//! query, an `Edgeward-Signature` header and the body, raw or JSON, then
//! what is checked before anything is compiled (the file's kind, the
//! exported contract, a core module's encoding as a component, limits and
//! signature). wasmtime's compilation is left out, as it is its own
//! project's to fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // flags byte, then query \n header \n body.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let query = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    if flags & 1 != 0 {
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
    }
    if flags & 2 != 0
        && let Ok(v) = http::HeaderValue::from_bytes(header)
    {
        headers.insert("edgeward-signature", v);
    }
    let Ok((source, _activate)) =
        edgeward::admin::api::parse_upload("fuzzed", query, &headers, body)
    else {
        return;
    };
    assert!(
        source.limits.check().is_ok(),
        "accepted limits are in range"
    );
    let _ = edgeward::policy::signing::Trust::default().admit(
        source.signature.as_deref(),
        &source.name,
        &source.wasm,
    );
    if edgeward::policy::component::check(&source.wasm, &source.name).is_ok() {
        let _ = edgeward::policy::component::contract(&source.wasm);
        if flags & 4 != 0 {
            let _ = edgeward::policy::component::of(&source.wasm, &source.name);
        }
    }
});
