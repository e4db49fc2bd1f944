//! The baseline: the "vertical model" (paper, Figure 1 and Figure 11; docs/design.md, "Vertical
//! model"), where NAT traversal, mobility and security are handled one after the other.
//!
//! - [`stun::StunServer`]: RFC 8489 Binding (and RFC 3489 classic clients), answers with the
//!   observed source (NAT step).
//! - [`location::LocationServer`]: one per domain; registration and lookup of end nodes, and
//!   inter-domain resolution with the peer domains' servers (mobility step).
//! - [`en::VerticalNode`]: the end node; STUN, register, look up, invite, then a separate DH
//!   key agreement (security step), then the same SRTP audio as BINFM's calls.
//!
//! Same sans-IO shape as every role: `handle_datagram`, `handle_timeout`, commands in;
//! `poll_transmit`, `poll_timeout`, `poll_event` out. Events are `vertical.*` (end node),
//! `stun.*` and `location.*` (servers). `docs/vertical.md` has the procedure and what is
//! measured.

pub mod en;
pub mod events;
pub mod location;
pub mod stun;

#[cfg(test)]
mod tests;

pub use binfm_stack::wire::vertical::Id;
