//! Who the client is: the socket peer, or `X-Real-IP` when the peer is a
//! trusted proxy (a load balancer or TLS terminator in front of edgeward).

use ipnet::IpNet;
use std::net::IpAddr;

/// The proxies whose `X-Real-IP` header is believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl Default for TrustedProxies {
    /// Loopback only.
    fn default() -> Self {
        TrustedProxies(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])
    }
}

impl TrustedProxies {
    /// Trusts exactly these networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether a request from `peer` with this `X-Forwarded-Proto` came
    /// to the proxy over TLS (only a trusted proxy is believed).
    pub fn forwarded_tls(&self, peer: IpAddr, proto: Option<&[u8]>) -> bool {
        proto.is_some_and(|p| p.trim_ascii().eq_ignore_ascii_case(b"https"))
            && self.0.iter().any(|net| net.contains(&peer.to_canonical()))
    }

    /// The client address of a request from `peer` carrying `x_real_ip`.
    /// A malformed header from a trusted proxy is an error (`400`); from
    /// anyone else the header is ignored.
    pub fn client(&self, peer: IpAddr, x_real_ip: Option<&[u8]>) -> Result<IpAddr, &'static str> {
        let peer = peer.to_canonical();
        let Some(header) = x_real_ip else {
            return Ok(peer);
        };
        if !self.0.iter().any(|net| net.contains(&peer)) {
            return Ok(peer);
        }
        std::str::from_utf8(header)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .ok_or("malformed X-Real-IP header")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_believed_only_from_trusted_peers() {
        let t = TrustedProxies::default();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            t.client(lo, Some(b"10.1.2.3")),
            Ok("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            t.client(lo, Some(b"2001:db8::1")),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert_eq!(t.client(lo, None), Ok(lo));
        assert_eq!(t.client(other, Some(b"10.1.2.3")), Ok(other));
        assert!(t.client(lo, Some(b"not-an-ip")).is_err());
        assert!(t.forwarded_tls(lo, Some(b"HTTPS")));
        assert!(!t.forwarded_tls(lo, Some(b"http")));
        assert!(!t.forwarded_tls(lo, None));
        assert!(!t.forwarded_tls(other, Some(b"https")));
        // A v4-mapped peer counts as its IPv4 address.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            t.client(mapped, Some(b"::ffff:10.0.0.1")),
            Ok("10.0.0.1".parse().unwrap())
        );
    }
}
