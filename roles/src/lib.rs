//! Sans-IO roles of the binfm testbed.
//!
//! A role never reads a clock, never sleeps, never opens a socket and never uses a global
//! RNG (docs/design.md, "Sans-IO roles"). Drivers feed it input (`handle_datagram`,
//! `handle_timeout`, commands) with the current time and drain its outputs
//! (`poll_transmit`, `poll_timeout`, `poll_event`) until it is idle. That is what lets one
//! implementation run in virtual time and in live time.

pub mod address;
pub mod call;
pub mod call_events;
pub mod chain;
pub mod dh;
pub mod dhcp;
pub mod discard;
pub mod echo;
pub mod ed25519;
pub mod en;
pub mod event;
pub mod keyseed;
pub mod nat;
pub mod ratelimit;
pub mod reassembly;
pub mod registry;
pub mod role;
pub mod session;
pub mod sn;
pub mod util;
pub mod vertical;
pub mod wallet;
pub mod work;

pub use binfm_stack::Time;
pub use event::Event;
pub use role::{Command, Role};
pub use work::{Op, Work};

use std::net::{Ipv4Addr, SocketAddrV4};

/// A UDP datagram a role wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address. `None` lets the host stack pick its own address;
    /// `Some(0.0.0.0)` forces the unspecified source (a DHCP client before it has a lease).
    pub src_ip: Option<Ipv4Addr>,
    /// Source UDP port.
    pub src_port: u16,
    /// Destination (may be 255.255.255.255 for a local broadcast).
    pub dst: SocketAddrV4,
    /// UDP payload.
    pub payload: Vec<u8>,
}
