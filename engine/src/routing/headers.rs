//! The request headers a policy declared (contract 0.4.0), taken from the
//! player's request however it came: the HTTP/1.1 loop's parsed lines or
//! hyper's header map (HTTP/2, TLS), or name/value pairs (`explain`,
//! `policy test`). Nothing is looked up for a policy that declared none.

use crate::policy::bindings::Headers;

/// Where a request's headers are.
#[derive(Debug, Clone, Copy, Default)]
pub enum RequestHeaders<'a> {
    /// None (a request made up by the engine).
    #[default]
    None,
    /// The lines the HTTP/1.1 loop parsed.
    Parsed(&'a [httparse::Header<'a>]),
    /// hyper's map.
    Map(&'a http::HeaderMap),
    /// Name/value pairs (names in any case).
    Pairs(&'a [(String, String)]),
}

impl RequestHeaders<'_> {
    /// Sets every declared header of `headers` to this request's value:
    /// several lines of one name joined with `, ` (RFC 9110, 5.3), bytes
    /// that are not UTF-8 replaced, absent when the request has none.
    pub fn fill(&self, headers: &mut Headers) {
        headers.fill(|name, out| {
            let mut found = false;
            let mut push = |value: &[u8]| {
                if found {
                    out.push_str(", ");
                }
                found = true;
                push_lossy(out, value);
            };
            match *self {
                RequestHeaders::None => {}
                RequestHeaders::Parsed(lines) => lines
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                    .for_each(|h| push(h.value.trim_ascii())),
                RequestHeaders::Map(map) => map
                    .get_all(name)
                    .into_iter()
                    .for_each(|v| push(v.as_bytes())),
                RequestHeaders::Pairs(pairs) => pairs
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .for_each(|(_, v)| push(v.as_bytes())),
            }
            found
        });
    }
}

fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_headers_are_found_in_every_form() {
        let mut declared = Headers::declared(["user-agent", "x-token", "accept"]);
        let lines = [
            httparse::Header {
                name: "User-Agent",
                value: b"TV/1.0 ",
            },
            httparse::Header {
                name: "accept",
                value: b"a",
            },
            httparse::Header {
                name: "ACCEPT",
                value: b"b\xff",
            },
        ];
        RequestHeaders::Parsed(&lines).fill(&mut declared);
        assert_eq!(declared.get("user-agent"), Some("TV/1.0"));
        assert_eq!(declared.get("x-token"), None);
        assert_eq!(declared.get("accept"), Some("a, b\u{fffd}"));

        let mut map = http::HeaderMap::new();
        map.insert("x-token", http::HeaderValue::from_static("t"));
        RequestHeaders::Map(&map).fill(&mut declared);
        assert_eq!(
            declared.get("user-agent"),
            None,
            "nothing stays from before"
        );
        assert_eq!(declared.get("x-token"), Some("t"));

        let pairs = [("X-Token".to_string(), "p".to_string())];
        RequestHeaders::Pairs(&pairs).fill(&mut declared);
        assert_eq!(declared.get("x-token"), Some("p"));
        RequestHeaders::None.fill(&mut declared);
        assert_eq!(declared.iter().filter(|(_, v)| v.is_some()).count(), 0);
    }
}
