//! The crowd's addressing (public endpoints round the 254 crowd addresses, private ones
//! behind the NAT) and the small time helpers of the workload (virtual time, exponential delays).

use binfm_roles::Time;
pub(super) use binfm_roles::util::millis;
use binfm_stack::wire::ports;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// The SN's address.
pub(super) const SN_ADDR: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), ports::SN);
/// The prober's address.
pub(super) const PROBER_ADDR: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), ports::EN);
/// Ports used per crowd address (1024..61024).
const PORTS_PER_ADDR: u64 = 60_000;
/// The default number of crowd addresses: 203.0.113.1 ..= 203.0.113.254.
pub const DEFAULT_CROWD_ADDRS: u32 = 254;
/// Most crowd addresses: 198.18.0.1 ..= 198.19.255.254 (the benchmarking block, RFC 2544),
/// used when a run asks for more than [`DEFAULT_CROWD_ADDRS`].
pub const MAX_CROWD_ADDRS: u32 = (1 << 17) - 2;
/// 198.18.0.0.
const WIDE_BASE: u32 = 0xc612_0000;

/// Public endpoint number `k` of a crowd spread over `addrs` source addresses (wraps after
/// 60,000 endpoints per address). Endpoints go round the addresses first, so each address
/// carries about N / `addrs` ENs: the SN's per-source Tx limit (10/s, `roles::sn`) applies
/// per address, as it would to the ENs behind one NAT. Up to 254 addresses the crowd is in
/// 203.0.113.0/24, above that in 198.18.0.0/15 (`addrs` is clamped to
/// 1..=[`MAX_CROWD_ADDRS`]).
pub(super) fn crowd_endpoint(k: u64, addrs: u32) -> SocketAddrV4 {
    let addrs = u64::from(addrs.clamp(1, MAX_CROWD_ADDRS));
    let k = k % (PORTS_PER_ADDR * addrs);
    let port = u16::try_from(1024 + k / addrs).unwrap_or(u16::MAX);
    if addrs <= u64::from(DEFAULT_CROWD_ADDRS) {
        let host = u8::try_from(1 + k % addrs).unwrap_or(254);
        return SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port);
    }
    let host = u32::try_from(1 + k % addrs).unwrap_or(1);
    SocketAddrV4::new(Ipv4Addr::from(WIDE_BASE + host), port)
}

/// Private address behind the (implicit) NAT for endpoint `k`: somewhere in 10.0.0.0/8.
pub(super) fn crowd_private(k: u64) -> SocketAddrV4 {
    let low = u32::try_from(k & 0x00ff_ffff).unwrap_or(0);
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | low), ports::EN)
}

/// `t + d`, saturating at [`Time::MAX`].
pub(super) fn later(t: Time, d: Duration) -> Time {
    t.checked_add(d).unwrap_or(Time::MAX)
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Exponentially distributed duration of mean `mean`.
pub(super) fn exp_delay(rng: &mut ChaCha8Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random();
    // 1 - u is in (0, 1]: ln is finite.
    let x = -(1.0 - u).ln() * mean.as_secs_f64();
    Duration::try_from_secs_f64(x).unwrap_or(Duration::MAX)
}
