//! The ground the binfm testbed stands on: wire formats, the emulated fabric (segments, link
//! emulation, static routing), smoltcp host glue and packet captures.
//!
//! Nothing here knows about protocol roles and nothing here uses tokio: the same code serves
//! the virtual-time driver and the live driver.

pub mod capture;
pub mod checksum;
pub mod fabric;
pub mod fasthash;
pub mod host;
pub mod netem;
pub mod wire;

/// Time as every role and driver sees it: the duration since the start of the run.
///
/// The virtual driver advances it event by event; the live driver reads it from the real clock.
/// Roles never read a clock themselves.
pub type Time = std::time::Duration;
