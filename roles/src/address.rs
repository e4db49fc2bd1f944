//! What a host learns about its own address: the DHCP lease, and the change a DHCP client
//! asks its host to make. Kept apart from the DHCP client so that the role interface
//! ([`crate::role`]) can carry it without depending on the client.

use binfm_stack::Time;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// A lease as the host glue applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (32 when the server sent none).
    pub prefix_len: u8,
    /// Default router, if any.
    pub router: Option<Ipv4Addr>,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// Lease duration.
    pub lease_time: Duration,
    /// Renewal time T1, from `obtained_at`.
    pub t1: Duration,
    /// Rebinding time T2, from `obtained_at`.
    pub t2: Duration,
    /// When the REQUEST that got this lease was first sent (RFC 2131 4.4.1: the lease runs
    /// from then, not from the ACK, so the client never overestimates it).
    pub obtained_at: Time,
    /// NAT public address (option 224).
    pub nat_public: Option<Ipv4Addr>,
    /// Super nodes (option 225), nearest first.
    pub super_nodes: Vec<SocketAddrV4>,
}

impl Lease {
    /// When to start renewing.
    pub fn t1_at(&self) -> Time {
        self.obtained_at.saturating_add(self.t1)
    }
    /// When to start rebinding.
    pub fn t2_at(&self) -> Time {
        self.obtained_at.saturating_add(self.t2)
    }
    /// When the lease ends.
    pub fn expires_at(&self) -> Time {
        self.obtained_at.saturating_add(self.lease_time)
    }
    /// Same configuration for the IP stack (timers aside).
    pub(crate) fn same_config(&self, other: &Lease) -> bool {
        self.address == other.address
            && self.prefix_len == other.prefix_len
            && self.router == other.router
            && self.nat_public == other.nat_public
            && self.super_nodes == other.super_nodes
    }
}

/// What the host glue must do to its IP stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Configure (or reconfigure) this lease.
    Bound(Lease),
    /// Remove the leased address: the lease is gone.
    Unbound,
}
