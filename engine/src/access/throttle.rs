//! A delay after failed authentications, per client address: a wrong
//! bearer token or password is answered only after a pause that doubles
//! with each failure from the same address (250 ms, 500 ms, ... up to
//! 5 s), so guessing from one address costs at least that much per try.
//! The failures of an address are forgotten 15 minutes after its last one,
//! or on its first success. The token comparison itself is constant-time
//! and passwords are Argon2id hashes; this is the rate limit on top, as
//! the per-account lock-out of [`super::session`] is for sign-ins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first delay.
const FIRST: Duration = Duration::from_millis(250);
/// The longest.
const LONGEST: Duration = Duration::from_secs(5);
/// How long an address's failures are remembered.
const MEMORY: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (then the oldest half is forgotten).
const MOST: usize = 100_000;

/// Failures by client address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Counts a failure of `ip`; how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MOST {
            let mut ages: Vec<Instant> = map.values().map(|&(_, t)| t).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, &mut (_, t)| t > cut);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) > MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay(entry.0)
    }

    /// `ip` authenticated: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&ip);
    }
}

/// The delay after the `n`th failure in a row.
fn delay(n: u32) -> Duration {
    FIRST
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_per_address_and_success_forgets() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(t.failed(a), Duration::from_millis(250));
        assert_eq!(t.failed(a), Duration::from_millis(500));
        assert_eq!(t.failed(a), Duration::from_millis(1000));
        assert_eq!(t.failed(b), Duration::from_millis(250), "per address");
        for _ in 0..40 {
            t.failed(a);
        }
        assert_eq!(t.failed(a), LONGEST);
        t.succeeded(a);
        assert_eq!(t.failed(a), Duration::from_millis(250));
    }
}
