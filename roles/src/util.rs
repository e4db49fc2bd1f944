//! Small formatting helpers every role uses for event fields, defined once so events of
//! different roles format ids and times the same way.

use crate::Time;
use std::time::Duration;

/// Lower-case hex of `bytes` (hash addresses, client ids, transaction ids).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of the first 8 bytes of a 32-byte id: the short peer name in call events.
pub fn short_hex(id: &[u8; 32]) -> String {
    hex(&id[..8])
}

/// Whole milliseconds of a time (Tx timestamps), saturating instead of wrapping.
pub fn millis(t: Time) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in fractional milliseconds (delays and round-trip times in events).
pub fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
