//! The events of the DHCP client (`dhcp.*`) and server (`dhcp.server.*`); `docs/dhcp.md`
//! explains when each is emitted.

use std::net::{Ipv4Addr, SocketAddrV4};

crate::event_enum! {
    /// What a DHCP client reports.
    pub enum DhcpClientEvent {
        /// The client gives its address back (a RELEASE was sent).
        Release = "dhcp.release" { address: Ipv4Addr, server: Ipv4Addr },
        /// The lease ran out before a renewal succeeded.
        Expired = "dhcp.expired" { address: Ipv4Addr },
        /// A reply the client could not use.
        Malformed = "dhcp.malformed" { from: SocketAddrV4, reason: String },
        /// A DISCOVER was sent (`attempt` counts retransmissions).
        Discover = "dhcp.discover" { xid: u32, attempt: u32 },
        /// A REQUEST was sent; `phase` is `select`, `reboot`, `renew` or `rebind`.
        Request = "dhcp.request" {
            address: Ipv4Addr,
            server: Ipv4Addr,
            phase: &'static str,
            attempt: u32,
        },
        /// The offer the client takes.
        Offer = "dhcp.offer" { address: Ipv4Addr, server: Ipv4Addr },
        /// An ACK extended the lease (`phase`: `renew` or `rebind`).
        Renewed = "dhcp.renewed" {
            address: Ipv4Addr,
            server: Ipv4Addr,
            lease_s: u64,
            phase: &'static str,
        },
        /// A new lease is bound.
        Ack = "dhcp.ack" {
            address: Ipv4Addr,
            prefix_len: u8,
            [null] router: Option<Ipv4Addr>,
            server: Ipv4Addr,
            lease_s: u64,
            [null] nat_public: Option<Ipv4Addr>,
            super_nodes: Vec<SocketAddrV4>,
        },
        /// The server refused; the client starts over.
        Nak = "dhcp.nak" { server: Ipv4Addr, [null] message: Option<String> },
    }
}

crate::event_enum! {
    /// What a DHCP server reports (`client` is the client id in hex).
    pub enum DhcpServerEvent {
        /// A request the server could not use; `count` is the running total.
        Malformed = "dhcp.server.malformed" { from: SocketAddrV4, reason: String, count: u64 },
        /// A bound lease ran out.
        Expired = "dhcp.server.expired" { client: String, address: Ipv4Addr },
        /// No free address for this client.
        PoolExhausted = "dhcp.server.pool_exhausted" { client: String, pool_size: u64 },
        /// An OFFER was sent.
        Offer = "dhcp.server.offer" { client: String, address: Ipv4Addr, xid: u32 },
        /// An ACK was sent (`renewed`: the client already held this lease).
        Ack = "dhcp.server.ack" {
            client: String,
            address: Ipv4Addr,
            lease_s: u64,
            renewed: bool,
        },
        /// A NAK was sent.
        Nak = "dhcp.server.nak" {
            client: String,
            [null] requested: Option<Ipv4Addr>,
            reason: String,
        },
        /// The client released its address.
        Release = "dhcp.server.release" { client: String, address: Ipv4Addr },
        /// The client declined its address (in use); it is held back for a while.
        Declined = "dhcp.server.declined" { client: String, address: Ipv4Addr },
        /// A REQUEST, RELEASE or DECLINE not from the client the address is bound or
        /// offered to (no binding, other identifiers or source); `count` is the running
        /// total.
        Refused = "dhcp.server.refused" {
            client: String,
            [null] address: Option<Ipv4Addr>,
            reason: &'static str,
            count: u64,
        },
    }
}
