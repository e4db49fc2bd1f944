//! The NAT box's public types: configuration, protocols, outcomes, drop reasons, counters.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Which inbound packets a mapping admits (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filtering {
    /// Anyone may send to a mapped port: BINFM needs inbound Session Requests from peers the
    /// EN has never talked to.
    #[default]
    EndpointIndependent,
    /// Only remote IPs the mapping has sent to.
    AddressDependent,
    /// Only remote ip:port pairs the mapping has sent to (ICMP: remote IP only).
    AddressAndPortDependent,
}

/// The two mapping namespaces: UDP ports and ICMP echo identifiers are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP, keyed by source port.
    Udp,
    /// ICMP echo, keyed by the echo identifier.
    Icmp,
}

impl Protocol {
    /// Lower-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Protocol::Udp => 0,
            Protocol::Icmp => 1,
        }
    }
}

/// Configuration of one NAT box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// The one public address every mapping uses (RFC 4787 REQ-2 "paired" trivially).
    pub public_ip: Ipv4Addr,
    /// Inside network; outbound packets from elsewhere are dropped as `NotForUs`.
    pub inside_network: Ipv4Addr,
    /// Prefix length of the inside network (values above 32 act as 32).
    pub inside_prefix_len: u8,
    /// Inbound filtering behaviour.
    pub filtering: Filtering,
    /// Idle time after which a mapping expires. 120 s is the RFC 4787 REQ-5 minimum; lower
    /// values are allowed for experiments but violate REQ-5.
    pub mapping_timeout: Duration,
    /// Mappings in both namespaces together; more is a `TableFull` drop.
    pub max_mappings: usize,
    /// Mappings per private IP (both namespaces); more is a `HostMappingLimit` drop.
    pub max_mappings_per_host: usize,
}

impl NatConfig {
    /// A configuration with the defaults: endpoint-independent filtering, 120 s timeout,
    /// 16384 mappings, 1024 per host.
    pub fn new(public_ip: Ipv4Addr, inside_network: Ipv4Addr, inside_prefix_len: u8) -> Self {
        NatConfig {
            public_ip,
            inside_network,
            inside_prefix_len,
            filtering: Filtering::EndpointIndependent,
            mapping_timeout: Duration::from_secs(120),
            max_mappings: 16384,
            max_mappings_per_host: 1024,
        }
    }
}

impl Default for NatConfig {
    /// 192.0.2.1 (documentation range) in front of 10.0.0.0/8.
    fn default() -> Self {
        NatConfig::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(10, 0, 0, 0), 8)
    }
}

/// Where an outbound packet goes after translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translated {
    /// Send it out of the outside interface.
    ToOutside,
    /// It was addressed to one of our own mappings: the rewritten packet must go back to the
    /// inside (RFC 4787 REQ-9).
    Hairpin,
}

/// Why a packet was dropped. Every drop is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Too short, not IPv4, bad IHL, total length beyond the buffer, bad UDP length.
    #[error("malformed IPv4/UDP/ICMP packet")]
    Malformed,
    /// IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// MF set or fragment offset non-zero: the NAT does not reassemble.
    #[error("IPv4 fragment (not reassembled)")]
    Fragment,
    /// Neither UDP nor ICMP echo (request outbound, reply inbound).
    #[error("protocol not translated (only UDP and ICMP echo)")]
    UnsupportedProtocol,
    /// Inbound (or hairpin) to a public port without a live mapping.
    #[error("no mapping for the destination port")]
    NoMapping,
    /// The mapping exists but its filtering rejects the remote endpoint.
    #[error("rejected by the mapping's filtering")]
    Filtered,
    /// Every public port from 1024 to 65535 is held by a live mapping.
    #[error("no free public port")]
    PortsExhausted,
    /// The private host already has `max_mappings_per_host` mappings.
    #[error("per-host mapping limit reached")]
    HostMappingLimit,
    /// The NAT already has `max_mappings` mappings.
    #[error("mapping table full")]
    TableFull,
    /// Outbound from outside the inside network, or inbound not addressed to `public_ip`.
    #[error("packet not for this NAT")]
    NotForUs,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::UnsupportedProtocol,
        DropReason::NoMapping,
        DropReason::Filtered,
        DropReason::PortsExhausted,
        DropReason::HostMappingLimit,
        DropReason::TableFull,
        DropReason::NotForUs,
    ];

    /// Snake-case name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NoMapping => "no_mapping",
            DropReason::Filtered => "filtered",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::HostMappingLimit => "host_mapping_limit",
            DropReason::TableFull => "table_full",
            DropReason::NotForUs => "not_for_us",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Translation counters (drops are in [`Nat::drops`](super::Nat::drops)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Outbound packets translated to the outside.
    pub outbound: u64,
    /// Inbound packets translated to the inside.
    pub inbound: u64,
    /// Hairpinned packets.
    pub hairpin: u64,
    /// Mappings created.
    pub mappings_created: u64,
    /// Mappings expired (by timeout or reclaimed when already idle too long).
    pub mappings_expired: u64,
    /// Events not queued because the driver did not drain [`Nat::poll_event`](super::Nat::poll_event).
    pub events_lost: u64,
}
