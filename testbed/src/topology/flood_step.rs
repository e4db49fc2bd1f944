//! The scenario step `flood HOST RATE/s for DURATION [KIND]`: its checked form
//! ([`FloodSpec`]), its parser and the choice of the spoofed source addresses, which depends
//! on the topology only. They live with the topology parser, which checks every step at load
//! time; the datagrams themselves are made at run time by [`crate::flood`].
//!
//! A packet source on the segment of super node HOST sends it UDP datagrams on the SN port
//! (7400) at RATE per second for DURATION, then stops by itself (`docs/topology.md`). Every
//! datagram has a spoofed source: an address of the target's segment, inside the
//! documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), that no node, DHCP
//! pool or kernel address of the topology uses ([`sources`]). A target on a private segment,
//! or one whose segment has no free public address, is an error at the step's line.

use super::units::parse_duration;
use super::{NodeDef, SegmentDef};
use binfm_stack::wire::ports;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Highest rate a step may ask for, datagrams per second.
pub const MAX_RATE: u32 = 1_000_000;
/// Most datagrams one step may send (rate × duration).
pub const MAX_PACKETS: u64 = 10_000_000;
/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Bytes that are not a BINFM message.
    Malformed,
    /// Well-formed `TxSubmit`s with random signatures.
    UnsignedTx,
    /// Well-formed `Query`s for unknown hash addresses.
    UnsignedQuery,
    /// Half malformed, a quarter of each of the others.
    Mixed,
}

impl FloodKind {
    /// The word used in a step.
    pub fn as_str(self) -> &'static str {
        match self {
            FloodKind::Malformed => "malformed",
            FloodKind::UnsignedTx => "unsigned-tx",
            FloodKind::UnsignedQuery => "unsigned-query",
            FloodKind::Mixed => "mixed",
        }
    }

    fn parse(word: &str) -> Option<FloodKind> {
        [
            FloodKind::Malformed,
            FloodKind::UnsignedTx,
            FloodKind::UnsignedQuery,
            FloodKind::Mixed,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }

    /// What datagram `k` of a flood of this kind is (never `Mixed`).
    pub fn of_packet(self, k: u64) -> FloodKind {
        match self {
            FloodKind::Mixed => match k % 4 {
                0 | 2 => FloodKind::Malformed,
                1 => FloodKind::UnsignedTx,
                _ => FloodKind::UnsignedQuery,
            },
            other => other,
        }
    }
}

/// A checked `flood` step.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodSpec {
    /// The super node flooded (node index).
    pub target: usize,
    /// Datagrams per second.
    pub rate: u32,
    /// How long.
    pub duration: Duration,
    /// What is sent.
    pub kind: FloodKind,
}

impl FloodSpec {
    /// Datagrams the step sends: `rate × duration`, rounded down.
    pub fn packets(&self) -> u64 {
        let n = u128::from(self.rate) * self.duration.as_nanos() / 1_000_000_000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// When datagram `k` leaves, after the step's start: `k / rate` seconds, exactly to the
    /// nanosecond (no drift over a long flood).
    pub fn offset(&self, k: u64) -> Duration {
        let ns = u128::from(k) * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// Parses the words after `flood`: `HOST RATE/s for DURATION [KIND]`.
pub fn parse_step(
    words: &[&str],
    node: &dyn Fn(&str) -> Result<usize, String>,
    nodes: &[NodeDef],
) -> Result<FloodSpec, String> {
    const USAGE: &str = "write `flood HOST RATE/s for DURATION [malformed|unsigned-tx|unsigned-query|mixed]`, e.g. `flood sn2 20000/s for 10s`";
    let (host, rate, dur, kind) = match words {
        [host, rate, "for", dur] => (*host, *rate, *dur, None),
        [host, rate, "for", dur, kind] => (*host, *rate, *dur, Some(*kind)),
        _ => return Err(USAGE.into()),
    };
    let target = node(host)?;
    if nodes.get(target).is_none_or(|n| n.super_node.is_none()) {
        return Err(format!(
            "`{host}` is not a super node; a flood targets a super node's UDP port {}",
            ports::SN
        ));
    }
    let rate: u32 = rate
        .strip_suffix("/s")
        .and_then(|r| r.parse().ok())
        .filter(|r| (1..=MAX_RATE).contains(r))
        .ok_or_else(|| {
            format!("`{rate}` is not a rate; write datagrams per second from 1/s to {MAX_RATE}/s, e.g. 20000/s")
        })?;
    let duration = parse_duration(dur).map_err(|e| format!("flood duration: {e}"))?;
    let kind = match kind {
        None => FloodKind::Mixed,
        Some(k) => FloodKind::parse(k).ok_or_else(|| {
            format!(
                "`{k}` is not a flood kind; use malformed, unsigned-tx, unsigned-query or mixed"
            )
        })?,
    };
    let spec = FloodSpec {
        target,
        rate,
        duration,
        kind,
    };
    match spec.packets() {
        0 => Err(format!(
            "{rate}/s for {dur} sends no datagram; make it last longer"
        )),
        n if n > MAX_PACKETS => Err(format!(
            "{rate}/s for {dur} is {n} datagrams; at most {MAX_PACKETS} per step"
        )),
        _ => Ok(spec),
    }
}

/// Where a flood of `target` comes from: (segment index, the target's address, the spoofed
/// source addresses). See the module docs for the rule.
pub fn sources(
    segments: &[SegmentDef],
    nodes: &[NodeDef],
    target: usize,
) -> Result<(usize, Ipv4Addr, Vec<Ipv4Addr>), String> {
    let def = nodes.get(target).ok_or("no such node")?;
    let (segment, ip) = def
        .ports
        .iter()
        .find_map(|p| Some((p.segment, p.addr?)))
        .ok_or_else(|| format!("`{}` has no static address to flood", def.name))?;
    let seg = segments.get(segment).ok_or("no such segment")?;
    let none_free = || {
        format!(
            "`{}` is on segment `{}` ({}), which has no free address in 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 for the flood's spoofed sources; flood a super node on a public segment",
            def.name, seg.name, seg.subnet
        )
    };
    // Only a segment inside one of the public /24s has addresses to spoof (at most 254).
    if !super::allowed_ranges()[1..]
        .iter()
        .any(|r| r.contains_subnet(&seg.subnet))
    {
        return Err(none_free());
    }
    let used: std::collections::HashSet<Ipv4Addr> = nodes
        .iter()
        .flat_map(|n| n.ports.iter().filter_map(|p| p.addr))
        .chain(segments.iter().filter_map(|s| s.kernel_address))
        .collect();
    let in_pool = |a: Ipv4Addr| {
        segments
            .iter()
            .filter_map(|s| s.dhcp.as_ref())
            .any(|d| (d.pool.0..=d.pool.1).contains(&a))
    };
    let net = u32::from(seg.subnet.network().address());
    let size = 1u64 << (32 - u32::from(seg.subnet.prefix_len()));
    let mut out = Vec::new();
    for i in 1..size.saturating_sub(1) {
        let Ok(i) = u32::try_from(i) else { break };
        let a = Ipv4Addr::from(net.wrapping_add(i));
        if !used.contains(&a) && !in_pool(a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(none_free());
    }
    Ok((segment, ip, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FloodKind) -> FloodSpec {
        FloodSpec {
            target: 0,
            rate: 3,
            duration: Duration::from_millis(2500),
            kind,
        }
    }

    #[test]
    fn counts_and_times_are_exact() {
        let s = spec(FloodKind::Mixed);
        assert_eq!(s.packets(), 7);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        let kinds: Vec<FloodKind> = (0..4).map(|k| s.kind.of_packet(k)).collect();
        assert_eq!(
            kinds,
            [
                FloodKind::Malformed,
                FloodKind::UnsignedTx,
                FloodKind::Malformed,
                FloodKind::UnsignedQuery
            ]
        );
    }
}
