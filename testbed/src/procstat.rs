//! This process's own resource figures (Linux `/proc/self/status` and the process CPU
//! clock): resident memory now and at its peak, CPU time. Wall-clock figures: they go to
//! `timing.json` files, never into a `results.json`.

/// The process's resident set size (`VmRSS` of /proc/self/status), if the platform has it.
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// The process's peak resident set size so far (`VmHWM` of /proc/self/status).
pub fn peak_resident_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// CPU time of the whole process so far (all threads, user and system).
pub fn cpu_seconds() -> Option<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// A `kB` figure of /proc/self/status, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line
        .trim_start_matches(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_are_there_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = super::resident_bytes().unwrap_or(0);
            let peak = super::peak_resident_bytes().unwrap_or(0);
            assert!(rss > 0 && peak >= rss, "rss {rss}, peak {peak}");
            assert!(super::cpu_seconds().is_some_and(|s| s > 0.0));
        }
    }
}
