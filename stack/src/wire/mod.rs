//! Wire formats of the testbed, smoltcp style: a checked view over bytes plus a `Repr` with
//! `parse` / `buffer_len` / `emit`, and byte fixtures next to the code. Every parser is total:
//! it returns an error on any input and never panics.
//!
//! IPv4, UDP and ICMP come from smoltcp's `wire`; DHCP from `dhcproto`. What lives here is
//! what the testbed adds on top.

pub mod binfm;
pub mod codec;
pub mod dhcp_options;
pub mod ports;
pub mod rtp;
pub mod stun;
pub mod toall;
pub mod vertical;
