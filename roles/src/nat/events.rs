//! The events of the NAT box (`nat.*`); `docs/nat.md` explains the collision rule behind
//! `port_h16`, `collisions` and `rule`.

use super::{DropReason, Protocol};
use crate::event::{Field, FieldSink};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Written as its event name (`udp`, `icmp`).
impl Field for Protocol {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.str(key, self.as_str());
    }
}

/// Written as its event name (`no_mapping`, ...).
impl Field for DropReason {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.str(key, self.as_str());
    }
}

crate::event_enum! {
    /// What the NAT box reports.
    pub enum NatEvent {
        /// A new mapping `private -> public`; `port_h16` is H16 of the private endpoint,
        /// `collisions` the candidates rejected before `public`, `rule` the step that found it
        /// (`h16`, `rehash` or `scan`).
        MappingCreated = "nat.mapping_created" {
            protocol: Protocol,
            private: SocketAddrV4,
            public: SocketAddrV4,
            port_h16: u16,
            collisions: u32,
            rule: &'static str,
        },
        /// A mapping timed out.
        MappingExpired = "nat.mapping_expired" {
            protocol: Protocol,
            private: SocketAddrV4,
            public: SocketAddrV4,
            last_active_ms: u64,
        },
        /// At most one per reason per `DROP_EVENT_INTERVAL`: `count` drops since the previous
        /// report, `total` so far; `src`, `dst` and `ip_protocol` sample the packet when its
        /// header is long enough.
        Drop = "nat.drop" {
            reason: DropReason,
            direction: &'static str,
            count: u64,
            total: u64,
            src: Option<Ipv4Addr>,
            dst: Option<Ipv4Addr>,
            ip_protocol: Option<u8>,
        },
    }
}
