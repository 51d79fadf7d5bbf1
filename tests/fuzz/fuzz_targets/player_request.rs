//! A player's request line path and `X-Real-IP`: the URL grammar and the
//! client address a trusted proxy gives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the path, the rest the X-Real-IP value.
    let (path, real_ip) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if let Ok(path) = std::str::from_utf8(path) {
        let _ = edgeward::routing::url::parse(path);
    }
    let proxies = edgeward::routing::client::TrustedProxies::new(vec![
        "127.0.0.0/8".parse().unwrap(),
        "::1/128".parse().unwrap(),
    ]);
    let _ = proxies.client("127.0.0.1".parse().unwrap(), real_ip);
    let _ = proxies.forwarded_tls("127.0.0.1".parse().unwrap(), real_ip);
});
