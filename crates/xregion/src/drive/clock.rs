//! Wall-clock time as xregion reports it: milliseconds since the Unix epoch, and `HH:MM:SS.mmm UTC` for people.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `HH:MM:SS.mmm UTC` of a time in ms since the Unix epoch.
pub fn clock(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2024-05-01T12:00:01.123Z
    s.get(11..23).map_or(s.clone(), |hms| format!("{hms} UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: times read as wall-clock UTC with milliseconds.
    #[test]
    fn clock_reads_well() {
        assert_eq!(clock(43_201_123), "12:00:01.123 UTC");
        assert!(now_ms() > 1_600_000_000_000);
    }
}
