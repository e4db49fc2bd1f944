//! The H16 NAT box: a packet middleware (like smoltcp's `phy::Tracer`), not a socket app.
//!
//! The driver routes, decrements TTL and tells us which interface a packet came in on; we
//! rewrite complete IPv4 packets in place and fix the IPv4, UDP and ICMP checksums
//! incrementally (RFC 1624), so a translation costs a table lookup and a few additions.
//!
//! The public port of a mapping is `H16(private ip, private port)` (the BINFM scheme) unless
//! that port is reserved (< 1024) or taken; then a documented, deterministic collision rule
//! picks another one (see [`Nat::outbound`] and `docs/nat.md`). RFC 4787 is the checklist.
//!
//! Sans-IO: no clock reads (every input carries `now`), no RNG, no sockets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Time;

pub mod events;
mod packet;

use events::NatEvent;

/// The lowest public port (and ICMP identifier) the NAT hands out: well-known ports are
/// reserved so a mapping can never shadow a service of the NAT box itself.
pub const MIN_PUBLIC_PORT: u16 = 1024;
/// Number of re-hashed candidates `c_1..=c_15` tried after `c_0 = H16` before the scan.
pub const REHASH_CANDIDATES: u8 = 15;
/// Remote endpoints remembered per mapping for address(-and-port)-dependent filtering;
/// the least recently used one is evicted, so a host talking to many peers cannot grow
/// the table without bound.
pub const MAX_REMOTES_PER_MAPPING: usize = 64;
/// Events kept until the driver drains them; beyond this they are counted as lost so an
/// idle driver cannot make the NAT grow without bound.
pub const EVENT_QUEUE_CAP: usize = 4096;
/// At most one `nat.drop` event per reason per this interval; the counters stay exact.
pub const DROP_EVENT_INTERVAL: Duration = Duration::from_secs(1);

const PROTO_ICMP: u8 = 1;
const PROTO_UDP: u8 = 17;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// Public ports a namespace can hand out: 1024..=65535.
const PUBLIC_PORTS: u32 = 65536 - MIN_PUBLIC_PORT as u32;

/// First 16 bits (big-endian) of SHA-256 over the 4 address bytes then the 2 port bytes
/// (network order): the port the BINFM scheme expects the NAT to use.
pub fn h16(ip: Ipv4Addr, port: u16) -> u16 {
    let mut buf = [0u8; 6];
    buf[..4].copy_from_slice(&ip.octets());
    buf[4..].copy_from_slice(&port.to_be_bytes());
    first16(&Sha256::digest(buf))
}

/// Collision candidate `c_k`: `c_0` is [`h16`]; for k ≥ 1 it is the first 16 bits of
/// SHA-256(ip ‖ port ‖ k as one byte). Public so an EN or a test can predict the NAT's choice.
pub fn h16_candidate(ip: Ipv4Addr, port: u16, k: u8) -> u16 {
    if k == 0 {
        return h16(ip, port);
    }
    let mut buf = [0u8; 7];
    buf[..4].copy_from_slice(&ip.octets());
    buf[4..6].copy_from_slice(&port.to_be_bytes());
    buf[6] = k;
    first16(&Sha256::digest(buf))
}

fn first16(digest: &[u8]) -> u16 {
    match digest {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

mod types;

pub use types::{DropReason, Filtering, NatConfig, NatStats, Protocol, Translated};

/// Which step of the collision rule produced a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    H16,
    Rehash,
    Scan,
}

impl PortRule {
    fn as_str(self) -> &'static str {
        match self {
            PortRule::H16 => "h16",
            PortRule::Rehash => "rehash",
            PortRule::Scan => "scan",
        }
    }
}

#[derive(Debug)]
struct Mapping {
    proto: Protocol,
    private: SocketAddrV4,
    public_port: u16,
    last_active: Time,
    /// Distinguishes this mapping from earlier users of the same slot in the expiry heap.
    generation: u64,
    /// Remotes sent to, most recent at the back; only kept when filtering needs them.
    remotes: VecDeque<SocketAddrV4>,
}

// The packed (protocol, ip, port) key is hashed with the stack's `KeyHasher`: SipHash would
// cost more than the rest of the translation. Keys come from inside hosts only (inbound uses
// the port arrays), so flooding resistance is not needed.
use binfm_stack::fasthash::FastMap;

fn key(proto: Protocol, ip: u32, port: u16) -> u64 {
    ((proto.index() as u64) << 48) | (u64::from(ip) << 16) | u64::from(port)
}

#[derive(Debug, Clone, Copy, Default)]
struct DropReport {
    last: Option<Time>,
    pending: u64,
}

/// The NAT box. See the module docs and `docs/nat.md`.
pub struct Nat {
    config: NatConfig,
    public: u32,
    inside_net: u32,
    inside_mask: u32,
    by_private: FastMap<u64, u32>,
    slots: Vec<Option<Mapping>>,
    free_slots: Vec<u32>,
    /// Per namespace, public port → slot + 1 (0 = free): O(1) inbound lookup.
    ports: [Vec<u32>; 2],
    per_host: FastMap<u32, usize>,
    /// Lazy expiry queue: (deadline when pushed, generation, slot). A refreshed mapping's
    /// entry is re-pushed when it surfaces, so refreshing costs nothing per packet.
    expiry: BinaryHeap<Reverse<(Time, u64, u32)>>,
    next_generation: u64,
    events: VecDeque<NatEvent>,
    drops: [u64; DropReason::ALL.len()],
    drop_reports: [DropReport; DropReason::ALL.len()],
    stats: NatStats,
}

impl fmt::Debug for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nat")
            .field("config", &self.config)
            .field("mappings", &self.by_private.len())
            .field("stats", &self.stats)
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

use packet::{Side, icmp_echo, parse_ipv4, rewrite_icmp, rewrite_udp, udp_ports};

impl Nat {
    /// A NAT with no mappings.
    pub fn new(config: NatConfig) -> Self {
        let prefix = u32::from(config.inside_prefix_len.min(32));
        let inside_mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Nat {
            public: u32::from(config.public_ip),
            inside_net: u32::from(config.inside_network) & inside_mask,
            inside_mask,
            by_private: FastMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            ports: [vec![0; 65536], vec![0; 65536]],
            per_host: FastMap::default(),
            expiry: BinaryHeap::new(),
            next_generation: 0,
            events: VecDeque::new(),
            drops: [0; DropReason::ALL.len()],
            drop_reports: [DropReport::default(); DropReason::ALL.len()],
            stats: NatStats::default(),
            config,
        }
    }

    /// The configuration this NAT runs with.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// A packet that arrived on the inside interface and is routed to the outside (or to
    /// `public_ip`: hairpin). Rewrites the source to `public_ip:mapped port`, creating the
    /// mapping if needed, and refreshes it.
    ///
    /// Port choice for a new mapping of private endpoint (ip, port): candidates
    /// `c_0 = h16(ip, port)`, `c_k = h16_candidate(ip, port, k)` for k = 1..=15; the first
    /// that is ≥ 1024 and free (no live mapping holds it; expired ones count as free) wins.
    /// If all 16 fail, the ports from `max(c_0, 1024)` upward (wrapping 65535 → 1024) are
    /// scanned for the first free one; if none, `PortsExhausted`.
    pub fn outbound(&mut self, now: Time, packet: &mut [u8]) -> Result<Translated, DropReason> {
        match self.outbound_inner(now, packet) {
            Ok(t) => {
                match t {
                    Translated::ToOutside => self.stats.outbound += 1,
                    Translated::Hairpin => self.stats.hairpin += 1,
                }
                Ok(t)
            }
            Err(reason) => Err(self.record_drop(now, "outbound", reason, packet)),
        }
    }

    /// A packet that arrived on the outside interface addressed to `public_ip`. Rewrites the
    /// destination to the private endpoint of the live mapping, after filtering. Inbound
    /// traffic does not refresh the mapping (RFC 4787 REQ-6 makes that optional; refreshing
    /// only on outbound stops an outsider from keeping a mapping alive).
    pub fn inbound(&mut self, now: Time, packet: &mut [u8]) -> Result<(), DropReason> {
        match self.inbound_inner(now, packet) {
            Ok(()) => {
                self.stats.inbound += 1;
                Ok(())
            }
            Err(reason) => Err(self.record_drop(now, "inbound", reason, packet)),
        }
    }

    /// Expires mappings idle for `mapping_timeout` or longer.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&Reverse((deadline, generation, slot))) = self.expiry.peek() {
            if deadline > now {
                break;
            }
            self.expiry.pop();
            let Some(m) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
                continue;
            };
            if m.generation != generation {
                continue; // the slot was reused; this entry is stale
            }
            let real = m.last_active.saturating_add(self.config.mapping_timeout);
            if real <= now {
                self.remove(slot as usize);
            } else {
                self.expiry.push(Reverse((real, generation, slot)));
            }
        }
    }

    /// When [`Nat::handle_timeout`] should next be called. May be earlier than a real expiry
    /// (a refreshed mapping's old deadline), never later.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.expiry.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Next event: `nat.mapping_created`, `nat.mapping_expired`, `nat.drop`.
    #[inline]
    pub fn poll_event(&mut self) -> Option<NatEvent> {
        self.events.pop_front()
    }

    /// Drop counters, one per [`DropReason`] (zeros included), in [`DropReason::ALL`] order.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops[r.index()]))
    }

    /// Drops counted for one reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Translation counters.
    pub fn stats(&self) -> NatStats {
        self.stats
    }

    /// Public UDP port mapped to a private endpoint (a mapping past its timeout but not yet
    /// removed by `handle_timeout` is still reported).
    pub fn mapping_for(&self, private: SocketAddrV4) -> Option<u16> {
        self.public_for(Protocol::Udp, private)
    }

    /// Public port (UDP) or echo identifier (ICMP; the private "port" is the identifier)
    /// mapped to a private endpoint.
    pub fn public_for(&self, proto: Protocol, private: SocketAddrV4) -> Option<u16> {
        let k = key(proto, u32::from(*private.ip()), private.port());
        let slot = *self.by_private.get(&k)?;
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|m| m.public_port)
    }

    /// Mappings in both namespaces.
    pub fn mapping_count(&self) -> usize {
        self.by_private.len()
    }

    fn outbound_inner(&mut self, now: Time, p: &mut [u8]) -> Result<Translated, DropReason> {
        let ip = parse_ipv4(p)?;
        if ip.src & self.inside_mask != self.inside_net {
            return Err(DropReason::NotForUs);
        }
        match ip.proto {
            PROTO_UDP => {
                let (sport, dport) = udp_ports(p, &ip)?;
                let slot = self.lookup_or_create(now, Protocol::Udp, ip.src, sport)?;
                let my_port = self.mapping(slot).public_port;
                // Refresh and open the filter before any hairpin check: as with a packet
                // the far NAT drops, sending is what punches the hole.
                self.touch(slot, now, ip.dst, dport);
                if ip.dst == self.public {
                    let target = self
                        .live_slot(now, Protocol::Udp, dport)
                        .ok_or(DropReason::NoMapping)?;
                    self.filter(target, self.public, my_port)?;
                    let to = self.mapping(target).private;
                    rewrite_udp(p, ip.ihl, Side::Src, self.public, my_port);
                    rewrite_udp(p, ip.ihl, Side::Dst, u32::from(*to.ip()), to.port());
                    Ok(Translated::Hairpin)
                } else {
                    rewrite_udp(p, ip.ihl, Side::Src, self.public, my_port);
                    Ok(Translated::ToOutside)
                }
            }
            PROTO_ICMP => {
                let (ty, ident) = icmp_echo(p, &ip)?;
                // Echo to the NAT itself is for the driver's host stack, not a translation.
                if ty != ICMP_ECHO_REQUEST || ip.dst == self.public {
                    return Err(DropReason::UnsupportedProtocol);
                }
                let slot = self.lookup_or_create(now, Protocol::Icmp, ip.src, ident)?;
                self.touch(slot, now, ip.dst, 0);
                let public_id = self.mapping(slot).public_port;
                rewrite_icmp(p, ip.ihl, Side::Src, self.public, public_id);
                Ok(Translated::ToOutside)
            }
            _ => Err(DropReason::UnsupportedProtocol),
        }
    }

    fn inbound_inner(&mut self, now: Time, p: &mut [u8]) -> Result<(), DropReason> {
        let ip = parse_ipv4(p)?;
        if ip.dst != self.public {
            return Err(DropReason::NotForUs);
        }
        let (proto, remote_port, public_port) = match ip.proto {
            PROTO_UDP => {
                let (sport, dport) = udp_ports(p, &ip)?;
                (Protocol::Udp, sport, dport)
            }
            PROTO_ICMP => match icmp_echo(p, &ip)? {
                (ICMP_ECHO_REPLY, ident) => (Protocol::Icmp, 0, ident),
                _ => return Err(DropReason::UnsupportedProtocol),
            },
            _ => return Err(DropReason::UnsupportedProtocol),
        };
        let slot = self
            .live_slot(now, proto, public_port)
            .ok_or(DropReason::NoMapping)?;
        self.filter(slot, ip.src, remote_port)?;
        let to = self.mapping(slot).private;
        match proto {
            Protocol::Udp => rewrite_udp(p, ip.ihl, Side::Dst, u32::from(*to.ip()), to.port()),
            Protocol::Icmp => rewrite_icmp(p, ip.ihl, Side::Dst, u32::from(*to.ip()), to.port()),
        }
        Ok(())
    }

    /// The mapping in a slot known to be occupied (callers got the slot from a live lookup).
    fn mapping(&self, slot: usize) -> &Mapping {
        match self.slots.get(slot).and_then(Option::as_ref) {
            Some(m) => m,
            None => unreachable!("slot {slot} looked up as live but is empty"),
        }
    }

    fn is_live(&self, m: &Mapping, now: Time) -> bool {
        now < m.last_active.saturating_add(self.config.mapping_timeout)
    }

    /// The live mapping holding a public port; an expired holder is removed on the way.
    fn live_slot(&mut self, now: Time, proto: Protocol, port: u16) -> Option<usize> {
        let slot = self.ports[proto.index()][usize::from(port)].checked_sub(1)? as usize;
        let m = self.slots.get(slot)?.as_ref()?;
        if self.is_live(m, now) {
            Some(slot)
        } else {
            self.remove(slot);
            None
        }
    }

    fn lookup_or_create(
        &mut self,
        now: Time,
        proto: Protocol,
        ip: u32,
        port: u16,
    ) -> Result<usize, DropReason> {
        let k = key(proto, ip, port);
        if let Some(&slot) = self.by_private.get(&k) {
            let slot = slot as usize;
            if let Some(m) = self.slots.get(slot).and_then(Option::as_ref)
                && self.is_live(m, now)
            {
                return Ok(slot);
            }
            self.remove(slot);
        }
        self.create(now, proto, ip, port, k)
    }

    fn create(
        &mut self,
        now: Time,
        proto: Protocol,
        ip: u32,
        port: u16,
        k: u64,
    ) -> Result<usize, DropReason> {
        // Limits: reclaim idle mappings first so a full table of dead entries is not a drop.
        if self.per_host.get(&ip).copied().unwrap_or(0) >= self.config.max_mappings_per_host {
            self.handle_timeout(now);
            if self.per_host.get(&ip).copied().unwrap_or(0) >= self.config.max_mappings_per_host {
                return Err(DropReason::HostMappingLimit);
            }
        }
        if self.by_private.len() >= self.config.max_mappings {
            self.handle_timeout(now);
            if self.by_private.len() >= self.config.max_mappings {
                return Err(DropReason::TableFull);
            }
        }
        let private_ip = Ipv4Addr::from(ip);
        let c0 = h16(private_ip, port);
        let (public_port, collisions, rule) = self.pick_port(now, proto, private_ip, port, c0)?;
        // An expired mapping may still hold the chosen port: it is reclaimed here.
        if let Some(old) = self.ports[proto.index()][usize::from(public_port)].checked_sub(1) {
            self.remove(old as usize);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let mapping = Mapping {
            proto,
            private: SocketAddrV4::new(private_ip, port),
            public_port,
            last_active: now,
            generation,
            remotes: VecDeque::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(mapping);
                s
            }
            None => {
                self.slots.push(Some(mapping));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_private.insert(k, slot);
        self.ports[proto.index()][usize::from(public_port)] = slot + 1;
        *self.per_host.entry(ip).or_insert(0) += 1;
        self.expiry.push(Reverse((
            now.saturating_add(self.config.mapping_timeout),
            generation,
            slot,
        )));
        self.stats.mappings_created += 1;
        self.push_event(NatEvent::MappingCreated {
            protocol: proto,
            private: SocketAddrV4::new(private_ip, port),
            public: SocketAddrV4::new(self.config.public_ip, public_port),
            port_h16: c0,
            collisions,
            rule: rule.as_str(),
        });
        Ok(slot as usize)
    }

    /// The collision rule (see [`Nat::outbound`]). Returns the port, how many candidates
    /// were rejected before it, and which step found it.
    fn pick_port(
        &self,
        now: Time,
        proto: Protocol,
        ip: Ipv4Addr,
        port: u16,
        c0: u16,
    ) -> Result<(u16, u32, PortRule), DropReason> {
        for k in 0..=REHASH_CANDIDATES {
            let c = if k == 0 {
                c0
            } else {
                h16_candidate(ip, port, k)
            };
            if c >= MIN_PUBLIC_PORT && self.port_free(now, proto, c) {
                let rule = if k == 0 {
                    PortRule::H16
                } else {
                    PortRule::Rehash
                };
                return Ok((c, u32::from(k), rule));
            }
        }
        let start = u32::from(c0.max(MIN_PUBLIC_PORT)) - u32::from(MIN_PUBLIC_PORT);
        for i in 0..PUBLIC_PORTS {
            let c = ((start + i) % PUBLIC_PORTS + u32::from(MIN_PUBLIC_PORT)) as u16;
            if self.port_free(now, proto, c) {
                return Ok((c, u32::from(REHASH_CANDIDATES) + 1 + i, PortRule::Scan));
            }
        }
        Err(DropReason::PortsExhausted)
    }

    fn port_free(&self, now: Time, proto: Protocol, port: u16) -> bool {
        match self.ports[proto.index()][usize::from(port)].checked_sub(1) {
            None => true,
            Some(slot) => match self.slots.get(slot as usize).and_then(Option::as_ref) {
                Some(m) => !self.is_live(m, now),
                None => true,
            },
        }
    }

    /// Refreshes a mapping on outbound traffic and remembers the remote for filtering.
    #[inline]
    fn touch(&mut self, slot: usize, now: Time, remote_ip: u32, remote_port: u16) {
        let track = self.config.filtering != Filtering::EndpointIndependent;
        let Some(m) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        m.last_active = now;
        if !track {
            return;
        }
        let remote = SocketAddrV4::new(Ipv4Addr::from(remote_ip), remote_port);
        if m.remotes.back() == Some(&remote) {
            return;
        }
        if let Some(pos) = m.remotes.iter().position(|r| *r == remote) {
            m.remotes.remove(pos);
        } else if m.remotes.len() >= MAX_REMOTES_PER_MAPPING {
            m.remotes.pop_front();
        }
        m.remotes.push_back(remote);
    }

    fn filter(&self, slot: usize, remote_ip: u32, remote_port: u16) -> Result<(), DropReason> {
        let m = self.mapping(slot);
        let ip = Ipv4Addr::from(remote_ip);
        let ok = match self.config.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => m.remotes.iter().any(|r| *r.ip() == ip),
            Filtering::AddressAndPortDependent => match m.proto {
                // Echo replies carry no remote port: the address is all there is to match.
                Protocol::Icmp => m.remotes.iter().any(|r| *r.ip() == ip),
                Protocol::Udp => m
                    .remotes
                    .iter()
                    .any(|r| *r.ip() == ip && r.port() == remote_port),
            },
        };
        if ok {
            Ok(())
        } else {
            Err(DropReason::Filtered)
        }
    }

    fn remove(&mut self, slot: usize) {
        let Some(m) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let ip = u32::from(*m.private.ip());
        self.by_private.remove(&key(m.proto, ip, m.private.port()));
        self.ports[m.proto.index()][usize::from(m.public_port)] = 0;
        if let Some(n) = self.per_host.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_host.remove(&ip);
            }
        }
        self.free_slots.push(slot as u32);
        self.stats.mappings_expired += 1;
        self.push_event(NatEvent::MappingExpired {
            protocol: m.proto,
            private: m.private,
            public: SocketAddrV4::new(self.config.public_ip, m.public_port),
            last_active_ms: m.last_active.as_millis() as u64,
        });
    }

    fn push_event(&mut self, event: NatEvent) {
        if self.events.len() < EVENT_QUEUE_CAP {
            self.events.push_back(event);
        } else {
            self.stats.events_lost += 1;
        }
    }

    /// Counts a drop and emits at most one `nat.drop` per reason per [`DROP_EVENT_INTERVAL`],
    /// carrying how many drops it stands for.
    #[cold]
    fn record_drop(
        &mut self,
        now: Time,
        direction: &'static str,
        reason: DropReason,
        packet: &[u8],
    ) -> DropReason {
        let i = reason.index();
        self.drops[i] += 1;
        let report = &mut self.drop_reports[i];
        report.pending += 1;
        let due = report
            .last
            .is_none_or(|t| now.saturating_sub(t) >= DROP_EVENT_INTERVAL);
        if due {
            let count = report.pending;
            report.pending = 0;
            report.last = Some(now);
            // Best effort sample of the packet, even if it is malformed.
            let sample = match (packet.get(12..16), packet.get(16..20), packet.get(9)) {
                (Some(src), Some(dst), Some(proto)) => {
                    let a = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                    Some((a(src), a(dst), *proto))
                }
                _ => None,
            };
            self.push_event(NatEvent::Drop {
                reason,
                direction,
                count,
                total: self.drops[i],
                src: sample.map(|s| s.0),
                dst: sample.map(|s| s.1),
                ip_protocol: sample.map(|s| s.2),
            });
        }
        reason
    }
}

#[cfg(test)]
mod tests;
