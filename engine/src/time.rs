//! Time as the engine writes it: RFC 3339 in every record, listing and log
//! field a person reads, seconds since the Unix epoch where a number is
//! wanted. One place, so every module renders time the same way.

use std::time::SystemTime;

/// RFC 3339 rendering of a time (UTC, e.g. `2026-12-01T09:28:04.5Z`).
pub fn rfc3339(t: SystemTime) -> String {
    ::time::OffsetDateTime::from(t)
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, in RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Whole seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_utc_rfc3339_and_epoch_numbers() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_581_284_500);
        assert_eq!(rfc3339(t), "2025-12-01T09:28:04.5Z");
        assert_eq!(unix_seconds(t), 1_764_581_284);
        assert_eq!(unix_millis(t), 1_764_581_284_500);
        assert_eq!(
            unix_seconds(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            0
        );
    }
}
