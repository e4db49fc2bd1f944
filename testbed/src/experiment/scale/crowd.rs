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
/// Crowd addresses: 203.0.113.1 ..= 203.0.113.254.
const CROWD_ADDRS: u64 = 254;

/// Public endpoint number `k` of the crowd (wraps after 15.24 million endpoints). Endpoints
/// go round the 254 addresses first, so each address carries about N / 254 ENs: the SN's
/// per-source Tx limit (10/s, `roles::sn`) applies per address, as it would to the ENs
/// behind one NAT.
pub(super) fn crowd_endpoint(k: u64) -> SocketAddrV4 {
    let k = k % (PORTS_PER_ADDR * CROWD_ADDRS);
    let host = u8::try_from(1 + k % CROWD_ADDRS).unwrap_or(254);
    let port = u16::try_from(1024 + k / CROWD_ADDRS).unwrap_or(u16::MAX);
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port)
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
