//! Durations and rates as written in topology files (`40ms`, `10Mbit`), and the line of a
//! byte offset for their errors. A leaf module: the topology parser, the scenario steps and
//! the daemons' configuration read them.

use std::time::Duration;

/// The 1-based line of byte `offset` of `text` (a TOML span's start), for error messages.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses a duration such as `40ms`, `1.5s`, `2min` (humantime syntax; also a bare `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    // Decimal milli-, micro- and nanoseconds (`1.2ms`, `46.5us`), which humantime refuses.
    for (suffix, per_sec) in [("ms", 1e3), ("us", 1e6), ("µs", 1e6), ("ns", 1e9)] {
        if let Some(n) = t
            .strip_suffix(suffix)
            .and_then(|n| n.trim().parse::<f64>().ok())
            && n.is_finite()
            && n >= 0.0
        {
            return Ok(Duration::from_nanos((n * 1e9 / per_sec).round() as u64));
        }
    }
    if let Some(secs) = t.strip_suffix('s').and_then(|n| n.parse::<f64>().ok())
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"40ms\" or \"1.5s\""))
}

/// Parses a bandwidth such as `10Mbit`, `512kbit`, `1Gbit` or `9600bit` into bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(suffix, m)| {
            lower
                .strip_suffix(suffix)
                .map(|n| (n.trim().to_owned(), *m))
        })
        .ok_or_else(|| {
            format!("`{s}` is not a rate; write e.g. \"10Mbit\", \"512kbit\" or \"1Gbit\"")
        })?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a rate; write e.g. \"10Mbit\""))?;
    let bps = n * mult;
    if !(bps.is_finite() && bps >= 1.0) {
        return Err(format!("rate `{s}` must be at least 1bit"));
    }
    Ok(bps as u64)
}
