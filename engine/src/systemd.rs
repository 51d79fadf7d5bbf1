//! systemd integration without a library: `sd_notify` readiness and
//! watchdog pings over the `$NOTIFY_SOCKET` datagram socket, as the unit in
//! `deploy/systemd/` (`Type=notify`, `WatchdogSec=`) expects. Does nothing
//! when not started by systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket, if there is one.
pub struct Notifier {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(path).ok()?
        };
        Some(Notifier {
            socket: UnixDatagram::unbound().ok()?,
            addr,
        })
    }

    /// Sends one notification (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, ...).
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    /// Half the watchdog period systemd asked for (`$WATCHDOG_USEC`), the
    /// interval at which to ping; `None` when no watchdog is set.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
    }
}
