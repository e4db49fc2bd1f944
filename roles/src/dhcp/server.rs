//! Sans-IO DHCP server: one pool, one lease per client, our site options in OFFER/ACK.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use binfm_stack::Time;
use binfm_stack::wire::dhcp_options::{SiteOptions, decode_message};
use binfm_stack::wire::ports::{DHCP_CLIENT, DHCP_SERVER};
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};

use super::events::DhcpServerEvent;
use super::{OFFER_HOLD, blank_message, hex, mask_of, wire_secs};

/// How long a declined address is kept out of the pool.
pub const DECLINE_HOLD: Duration = Duration::from_secs(60);
use crate::Transmit;

/// What a server hands out on its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The server's own address (source of replies, option 54); never leased.
    pub server_ip: Ipv4Addr,
    /// Prefix length of the segment (option 1).
    pub prefix_len: u8,
    /// Default router (option 3); never leased. 0.0.0.0 = no router option.
    pub router: Ipv4Addr,
    /// First address of the pool (inclusive).
    pub pool_start: Ipv4Addr,
    /// Last address of the pool (inclusive).
    pub pool_end: Ipv4Addr,
    /// Lease time (option 51, whole seconds on the wire, at least 1 s).
    pub lease_time: Duration,
    /// NAT public address for option 224, if the segment is behind a NAT.
    pub nat_public: Option<Ipv4Addr>,
    /// Super nodes for option 225, nearest first; empty = no option.
    pub super_nodes: Vec<SocketAddrV4>,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Datagrams that did not decode or made no sense.
    pub malformed: u64,
    /// Valid datagrams not for us (other server chosen, BOOTREPLY, DECLINE, INFORM, ...).
    pub ignored: u64,
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs sent.
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// REQUESTs, RELEASEs and DECLINEs refused because they did not come from the client
    /// the address is bound (or offered) to (`dhcp.server.refused`).
    pub refused: u64,
}

/// Client identity: option 61 when present (tag 0), else chaddr (tag 1).
type ClientKey = Vec<u8>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Free since then; the slot remembers its last client so that client gets it back.
    Free { since: Time },
    /// Held for the client it was offered to.
    Offered { until: Time },
    /// Leased.
    Bound { until: Time },
    /// A client said the address is in use (DECLINE): nobody gets it until then.
    Declined { until: Time },
}

#[derive(Debug, Clone)]
struct Slot {
    client: ClientKey,
    /// The hardware address of the client it was offered to (checked on RELEASE and DECLINE
    /// with the client key, which is option 61 when present).
    chaddr: Vec<u8>,
    state: SlotState,
}

/// The server. Its tables are bounded by the pool: one slot per address ever handed out and
/// at most one address per client (`by_client` only points at slots the client owns).
#[derive(Debug)]
pub struct DhcpServer {
    config: ServerConfig,
    site: SiteOptions,
    slots: BTreeMap<Ipv4Addr, Slot>,
    by_client: BTreeMap<ClientKey, Ipv4Addr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhcpServerEvent>,
    stats: ServerStats,
}

fn client_key(msg: &Message) -> ClientKey {
    match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => {
            let mut k = vec![0];
            k.extend_from_slice(id);
            k
        }
        _ => {
            let mut k = vec![1];
            k.extend_from_slice(msg.chaddr());
            k
        }
    }
}

fn key_hex(key: &[u8]) -> String {
    hex(key.get(1..).unwrap_or_default())
}

fn opt_ip(msg: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match msg.opts().get(code) {
        Some(DhcpOption::RequestedIpAddress(a)) | Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    }
}

impl DhcpServer {
    /// A server with an empty lease table.
    pub fn new(config: ServerConfig) -> Self {
        let site = SiteOptions {
            nat_public: config.nat_public,
            super_nodes: config.super_nodes.clone(),
        };
        DhcpServer {
            config,
            site,
            slots: BTreeMap::new(),
            by_client: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Bound leases: address and expiry, in address order.
    pub fn active_leases(&self) -> Vec<(Ipv4Addr, Time)> {
        self.slots
            .iter()
            .filter_map(|(a, s)| match s.state {
                SlotState::Bound { until } => Some((*a, until)),
                _ => None,
            })
            .collect()
    }

    /// Whether `addr` may be leased (in the pool, not the server or the router).
    pub fn in_pool(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        u32::from(self.config.pool_start) <= a
            && a <= u32::from(self.config.pool_end)
            && addr != self.config.server_ip
            && addr != self.config.router
    }

    /// Number of leasable addresses.
    pub fn pool_size(&self) -> u64 {
        let (s, e) = (
            u32::from(self.config.pool_start),
            u32::from(self.config.pool_end),
        );
        if e < s {
            return 0;
        }
        let excluded = [self.config.server_ip, self.config.router]
            .iter()
            .filter(|a| {
                let a = u32::from(**a);
                s <= a && a <= e
            })
            .count() as u64;
        let excluded = if self.config.server_ip == self.config.router {
            excluded.min(1)
        } else {
            excluded
        };
        u64::from(e - s) + 1 - excluded
    }

    /// Handles one datagram received on port 67.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        self.expire(now);
        self.stats.received += 1;
        let msg = match decode_message(data) {
            Ok(m) => m,
            Err(e) => return self.malformed(from, &e.to_string()),
        };
        if msg.opcode() != Opcode::BootRequest {
            self.stats.ignored += 1;
            return;
        }
        let Some(kind) = msg.opts().msg_type() else {
            return self.malformed(from, "no DHCP message type (option 53)");
        };
        match kind {
            MessageType::Discover => self.on_discover(now, &msg),
            MessageType::Request => self.on_request(now, from, &msg),
            MessageType::Release => self.on_release(now, from, &msg),
            MessageType::Decline => self.on_decline(now, &msg),
            // INFORM is not needed by our hosts.
            _ => self.stats.ignored += 1,
        }
    }

    /// Expires offers and leases due by `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.expire(now);
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When the next offer or lease expires.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.slots
            .values()
            .filter_map(|s| match s.state {
                SlotState::Offered { until }
                | SlotState::Bound { until }
                | SlotState::Declined { until } => Some(until),
                SlotState::Free { .. } => None,
            })
            .min()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<DhcpServerEvent> {
        self.events.pop_front()
    }

    fn malformed(&mut self, from: SocketAddrV4, reason: &str) {
        self.stats.malformed += 1;
        self.events.push_back(DhcpServerEvent::Malformed {
            from,
            reason: reason.to_owned(),
            count: self.stats.malformed,
        });
    }

    fn expire(&mut self, now: Time) {
        for (addr, slot) in self.slots.iter_mut() {
            match slot.state {
                SlotState::Offered { until } | SlotState::Declined { until } if until <= now => {
                    slot.state = SlotState::Free { since: until };
                }
                SlotState::Bound { until } if until <= now => {
                    slot.state = SlotState::Free { since: until };
                    self.events.push_back(DhcpServerEvent::Expired {
                        client: key_hex(&slot.client),
                        address: *addr,
                    });
                }
                _ => {}
            }
        }
    }

    /// The address to offer `key`: its own, the one it asks for, a never-used one, or the
    /// longest-free one (so addresses stay stable per client as long as the pool allows).
    fn pick(&self, key: &ClientKey, requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(a) = self.by_client.get(key) {
            return Some(*a);
        }
        if let Some(r) = requested.filter(|r| self.takeable(*r)) {
            return Some(r);
        }
        // Each step either skips the server/router or hits an existing slot, so this loop
        // runs at most slots.len() + 3 times.
        let (s, e) = (
            u32::from(self.config.pool_start),
            u32::from(self.config.pool_end),
        );
        for a in (s..=e).map(Ipv4Addr::from) {
            if self.in_pool(a) && !self.slots.contains_key(&a) {
                return Some(a);
            }
        }
        self.slots
            .iter()
            .filter_map(|(a, s)| match s.state {
                SlotState::Free { since } => Some((since, *a)),
                _ => None,
            })
            .min()
            .map(|(_, a)| a)
    }

    /// In the pool and not held by anyone.
    fn takeable(&self, addr: Ipv4Addr) -> bool {
        self.in_pool(addr)
            && self
                .slots
                .get(&addr)
                .is_none_or(|s| matches!(s.state, SlotState::Free { .. }))
    }

    /// Gives `addr` to `key`, keeping one address per client and `by_client` consistent.
    fn assign(
        &mut self,
        now: Time,
        addr: Ipv4Addr,
        key: &ClientKey,
        chaddr: &[u8],
        state: SlotState,
    ) {
        if let Some(prev) = self.slots.get(&addr)
            && prev.client != *key
            && self.by_client.get(&prev.client) == Some(&addr)
        {
            self.by_client.remove(&prev.client);
        }
        if let Some(old) = self.by_client.get(key).copied()
            && old != addr
            && let Some(slot) = self.slots.get_mut(&old)
        {
            slot.state = SlotState::Free { since: now };
        }
        self.slots.insert(
            addr,
            Slot {
                client: key.clone(),
                chaddr: chaddr.to_vec(),
                state,
            },
        );
        self.by_client.insert(key.clone(), addr);
    }

    fn on_discover(&mut self, now: Time, msg: &Message) {
        let key = client_key(msg);
        let requested = opt_ip(msg, OptionCode::RequestedIpAddress);
        let Some(addr) = self.pick(&key, requested) else {
            self.events.push_back(DhcpServerEvent::PoolExhausted {
                client: key_hex(&key),
                pool_size: self.pool_size(),
            });
            return;
        };
        let state = match self.slots.get(&addr).map(|s| s.state) {
            // A bound client that restarts keeps its lease until it expires or is re-acked.
            Some(bound @ SlotState::Bound { .. }) => bound,
            _ => SlotState::Offered {
                until: now + OFFER_HOLD,
            },
        };
        self.assign(now, addr, &key, msg.chaddr(), state);
        self.stats.offers += 1;
        self.reply(MessageType::Offer, msg, addr, None);
        self.events.push_back(DhcpServerEvent::Offer {
            client: key_hex(&key),
            address: addr,
            xid: msg.xid(),
        });
    }

    fn on_request(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let key = client_key(msg);
        let requested = opt_ip(msg, OptionCode::RequestedIpAddress);
        let ciaddr = msg.ciaddr();
        let mine = self.by_client.get(&key).copied();
        if let Some(sid) = opt_ip(msg, OptionCode::ServerIdentifier) {
            if sid != self.config.server_ip {
                // SELECTING, another server chosen: drop our offer.
                if let Some(a) = mine
                    && let Some(slot) = self.slots.get_mut(&a)
                    && matches!(slot.state, SlotState::Offered { .. })
                {
                    slot.state = SlotState::Free { since: now };
                }
                self.stats.ignored += 1;
                return;
            }
            // SELECTING, us: must ask for what we offered.
            let Some(req) = requested.or((!ciaddr.is_unspecified()).then_some(ciaddr)) else {
                return self.nak(msg, &key, None, "no requested address");
            };
            if mine == Some(req) {
                return self.ack(now, msg, &key, req);
            }
            return self.nak(msg, &key, Some(req), "address not offered to this client");
        }
        // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr). Only a client with a
        // record here (an offer or a lease, current or expired but not given to anyone
        // else) is answered: RFC 2131 4.3.2, "if the DHCP server has no record of this
        // client, then it MUST remain silent". A REQUEST never creates a binding.
        let Some(req) = requested.or((!ciaddr.is_unspecified()).then_some(ciaddr)) else {
            return self.malformed(
                from,
                "REQUEST without server id, requested address or ciaddr",
            );
        };
        if !self.in_pool(req) {
            self.nak(msg, &key, Some(req), "address not on this network");
        } else if mine == Some(req) && self.slot_held_by(req, &key) {
            self.ack(now, msg, &key, req);
        } else if mine.is_some() {
            self.nak(msg, &key, Some(req), "not this client's address");
        } else {
            self.refuse(&key, Some(req), "request without an offer or a lease");
        }
    }

    /// Whether `addr`'s slot belongs to `key` and is not declined.
    fn slot_held_by(&self, addr: Ipv4Addr, key: &ClientKey) -> bool {
        self.slots
            .get(&addr)
            .is_some_and(|s| s.client == *key && !matches!(s.state, SlotState::Declined { .. }))
    }

    /// Counts and reports a message refused because it is not from the client it names.
    fn refuse(&mut self, key: &ClientKey, address: Option<Ipv4Addr>, reason: &'static str) {
        self.stats.refused += 1;
        self.stats.ignored += 1;
        self.events.push_back(DhcpServerEvent::Refused {
            client: key_hex(key),
            address,
            reason,
            count: self.stats.refused,
        });
    }

    fn ack(&mut self, now: Time, msg: &Message, key: &ClientKey, addr: Ipv4Addr) {
        let renewed = matches!(
            self.slots.get(&addr).map(|s| (&s.client, s.state)),
            Some((c, SlotState::Bound { .. })) if c == key
        );
        let lease = Duration::from_secs(u64::from(wire_secs(self.config.lease_time)));
        self.assign(
            now,
            addr,
            key,
            msg.chaddr(),
            SlotState::Bound { until: now + lease },
        );
        self.stats.acks += 1;
        self.reply(MessageType::Ack, msg, addr, None);
        self.events.push_back(DhcpServerEvent::Ack {
            client: key_hex(key),
            address: addr,
            lease_s: lease.as_secs(),
            renewed,
        });
    }

    fn nak(&mut self, msg: &Message, key: &ClientKey, requested: Option<Ipv4Addr>, reason: &str) {
        self.stats.naks += 1;
        self.reply(MessageType::Nak, msg, Ipv4Addr::UNSPECIFIED, Some(reason));
        self.events.push_back(DhcpServerEvent::Nak {
            client: key_hex(key),
            requested,
            reason: reason.to_owned(),
        });
    }

    /// RELEASE is honoured only from the bound client: the server id (if present) is ours,
    /// the address is bound to this client key (option 61, else chaddr), the chaddr is the
    /// one it was bound with, and the datagram comes from that address (`ciaddr` = source
    /// IP). Anything else is refused and counted: anyone on the link could send it.
    fn on_release(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let key = client_key(msg);
        let sid = opt_ip(msg, OptionCode::ServerIdentifier);
        let addr = msg.ciaddr();
        if sid.is_some_and(|s| s != self.config.server_ip) {
            self.stats.ignored += 1;
            return;
        }
        let bound_to_sender = self.by_client.get(&key) == Some(&addr)
            && self.slots.get(&addr).is_some_and(|s| {
                s.client == key
                    && s.chaddr == msg.chaddr()
                    && matches!(s.state, SlotState::Bound { .. })
            })
            && *from.ip() == addr;
        if !bound_to_sender {
            return self.refuse(&key, Some(addr), "release not from the bound client");
        }
        if let Some(slot) = self.slots.get_mut(&addr) {
            slot.state = SlotState::Free { since: now };
        }
        self.events.push_back(DhcpServerEvent::Release {
            client: key_hex(&key),
            address: addr,
        });
    }

    /// DECLINE (RFC 2131 4.3.3): the client found its offered or bound address in use. It is
    /// sent from 0.0.0.0, so it is honoured only when the client key and chaddr are those the
    /// address (option 50) was offered or bound to; the address is then held back for
    /// [`DECLINE_HOLD`] and the client forgets it.
    fn on_decline(&mut self, now: Time, msg: &Message) {
        let key = client_key(msg);
        let sid = opt_ip(msg, OptionCode::ServerIdentifier);
        if sid.is_some_and(|s| s != self.config.server_ip) {
            self.stats.ignored += 1;
            return;
        }
        let Some(addr) = opt_ip(msg, OptionCode::RequestedIpAddress) else {
            return self.refuse(&key, None, "decline without the address (option 50)");
        };
        let owned = self.by_client.get(&key) == Some(&addr)
            && self.slots.get(&addr).is_some_and(|s| {
                s.client == key
                    && s.chaddr == msg.chaddr()
                    && matches!(s.state, SlotState::Bound { .. } | SlotState::Offered { .. })
            });
        if !owned {
            return self.refuse(&key, Some(addr), "decline not from the bound client");
        }
        if let Some(slot) = self.slots.get_mut(&addr) {
            slot.state = SlotState::Declined {
                until: now + DECLINE_HOLD,
            };
        }
        self.by_client.remove(&key);
        self.events.push_back(DhcpServerEvent::Declined {
            client: key_hex(&key),
            address: addr,
        });
    }

    /// Builds and queues an OFFER/ACK (with `yiaddr`) or a NAK (with `message`).
    fn reply(&mut self, kind: MessageType, req: &Message, yiaddr: Ipv4Addr, message: Option<&str>) {
        let mut r = blank_message();
        r.set_opcode(Opcode::BootReply)
            .set_htype(req.htype())
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_giaddr(req.giaddr())
            .set_chaddr(req.chaddr())
            .set_yiaddr(yiaddr);
        if kind == MessageType::Ack {
            r.set_ciaddr(req.ciaddr());
        }
        let o = r.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(self.config.server_ip));
        if let Some(DhcpOption::ClientIdentifier(id)) = req.opts().get(OptionCode::ClientIdentifier)
        {
            // RFC 6842: echo the client identifier.
            o.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if kind == MessageType::Nak {
            if let Some(text) = message {
                o.insert(DhcpOption::Message(text.to_owned()));
            }
        } else {
            let secs = wire_secs(self.config.lease_time);
            o.insert(DhcpOption::SubnetMask(mask_of(self.config.prefix_len)));
            if !self.config.router.is_unspecified() {
                o.insert(DhcpOption::Router(vec![self.config.router]));
            }
            o.insert(DhcpOption::AddressLeaseTime(secs));
            o.insert(DhcpOption::Renewal(secs / 2));
            o.insert(DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32));
            self.site.emit(o);
        }
        // A client with an address (renewing, rebinding) gets unicast; one without cannot
        // receive unicast on layer 3, so it gets the local broadcast. NAKs are always broadcast.
        let dst_ip = if kind != MessageType::Nak && !req.ciaddr().is_unspecified() {
            req.ciaddr()
        } else {
            Ipv4Addr::BROADCAST
        };
        match r.to_vec() {
            Ok(payload) => self.transmits.push_back(Transmit {
                src_ip: Some(self.config.server_ip),
                src_port: DHCP_SERVER,
                dst: SocketAddrV4::new(dst_ip, DHCP_CLIENT),
                payload,
            }),
            Err(e) => tracing::warn!("DHCP server: cannot encode {kind:?}: {e}"),
        }
    }
}

impl crate::role::Role for DhcpServer {
    fn port(&self) -> u16 {
        DHCP_SERVER
    }
    crate::role::role_io!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server() -> DhcpServer {
        DhcpServer::new(ServerConfig {
            server_ip: Ipv4Addr::new(10, 1, 0, 2),
            prefix_len: 24,
            router: Ipv4Addr::new(10, 1, 0, 1),
            pool_start: Ipv4Addr::new(10, 1, 0, 1),
            pool_end: Ipv4Addr::new(10, 1, 0, 10),
            lease_time: Duration::from_secs(60),
            nat_public: None,
            super_nodes: vec![],
        })
    }

    #[test]
    fn pool_excludes_server_and_router() {
        let s = server();
        assert_eq!(s.pool_size(), 8);
        assert!(!s.in_pool(Ipv4Addr::new(10, 1, 0, 1)));
        assert!(!s.in_pool(Ipv4Addr::new(10, 1, 0, 2)));
        assert!(s.in_pool(Ipv4Addr::new(10, 1, 0, 3)));
    }

    #[test]
    fn garbage_is_counted_and_reported() {
        let mut s = server();
        let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT);
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
        s.handle_datagram(Time::ZERO, from, to, &[1, 2, 3]);
        assert_eq!(s.stats().malformed, 1);
        assert_eq!(
            s.poll_event().map(|e| e.kind()),
            Some("dhcp.server.malformed")
        );
        assert!(s.poll_transmit().is_none());
    }

    fn request(kind: MessageType, chaddr: u8, client_id: Option<&[u8]>) -> Message {
        let mut m = blank_message();
        m.set_xid(0x1234).set_chaddr(&[chaddr; 6]);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(id) = client_id {
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(id.to_vec()));
        }
        m
    }

    fn send(s: &mut DhcpServer, now: Time, from: Ipv4Addr, m: &Message) {
        let bytes = m.to_vec().unwrap_or_else(|e| panic!("{e}"));
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
        s.handle_datagram(now, SocketAddrV4::new(from, DHCP_CLIENT), to, &bytes);
    }

    fn drain(s: &mut DhcpServer) -> Vec<String> {
        while s.poll_transmit().is_some() {}
        std::iter::from_fn(|| s.poll_event().map(|e| e.kind().to_owned())).collect()
    }

    /// DISCOVER + REQUEST(selecting): client `chaddr` (and `client_id`) is bound.
    fn bind(s: &mut DhcpServer, chaddr: u8, client_id: Option<&[u8]>) -> Ipv4Addr {
        send(
            s,
            Time::ZERO,
            Ipv4Addr::UNSPECIFIED,
            &request(MessageType::Discover, chaddr, client_id),
        );
        drain(s);
        let addr = s
            .by_client
            .values()
            .copied()
            .max()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut r = request(MessageType::Request, chaddr, client_id);
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(s.config.server_ip));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        send(s, Time::ZERO, Ipv4Addr::UNSPECIFIED, &r);
        assert!(drain(s).contains(&"dhcp.server.ack".to_owned()));
        addr
    }

    #[test]
    fn init_reboot_without_offer_or_lease_binds_nothing() {
        let mut s = server();
        // A client nobody offered anything asks for a free pool address (INIT-REBOOT).
        let mut r = request(MessageType::Request, 7, None);
        let want = Ipv4Addr::new(10, 1, 0, 5);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(want));
        send(&mut s, Time::ZERO, Ipv4Addr::UNSPECIFIED, &r);
        assert_eq!(drain(&mut s), vec!["dhcp.server.refused".to_owned()]);
        assert!(s.active_leases().is_empty());
        assert_eq!(s.stats().acks, 0);
        // The same as RENEWING (ciaddr, unicast, no option 50).
        let mut r = request(MessageType::Request, 7, None);
        r.set_ciaddr(want);
        send(&mut s, Time::ZERO, want, &r);
        assert_eq!(drain(&mut s), vec!["dhcp.server.refused".to_owned()]);
        assert!(s.active_leases().is_empty());
        // A bound client renews its own lease (a matching prior lease): ACK.
        let addr = bind(&mut s, 8, None);
        let mut r = request(MessageType::Request, 8, None);
        r.set_ciaddr(addr);
        send(&mut s, Time::from_secs(30), addr, &r);
        assert_eq!(drain(&mut s), vec!["dhcp.server.ack".to_owned()]);
        // ... and is NAKed if it asks for another address.
        let mut r = request(MessageType::Request, 8, None);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(want));
        send(&mut s, Time::from_secs(30), Ipv4Addr::UNSPECIFIED, &r);
        assert_eq!(drain(&mut s), vec!["dhcp.server.nak".to_owned()]);
    }

    #[test]
    fn release_only_from_the_bound_client() {
        let mut s = server();
        let id: &[u8] = b"en-1";
        let addr = bind(&mut s, 1, Some(id));
        let release = |chaddr: u8, client_id: Option<&[u8]>| {
            let mut m = request(MessageType::Release, chaddr, client_id);
            m.set_ciaddr(addr);
            m
        };
        // Right identifiers, wrong source address (an attacker on the link).
        send(
            &mut s,
            Time::ZERO,
            Ipv4Addr::new(10, 1, 0, 9),
            &release(1, Some(id)),
        );
        // Right source and client id, another chaddr.
        send(&mut s, Time::ZERO, addr, &release(2, Some(id)));
        // Right source and chaddr, no client id (so another client key).
        send(&mut s, Time::ZERO, addr, &release(1, None));
        assert_eq!(drain(&mut s), vec!["dhcp.server.refused".to_owned(); 3]);
        assert_eq!(s.active_leases().len(), 1);
        assert_eq!(s.stats().refused, 3);
        // The client itself.
        send(&mut s, Time::ZERO, addr, &release(1, Some(id)));
        assert_eq!(drain(&mut s), vec!["dhcp.server.release".to_owned()]);
        assert!(s.active_leases().is_empty());
    }

    #[test]
    fn decline_only_from_the_bound_client() {
        let mut s = server();
        let addr = bind(&mut s, 1, None);
        let decline = |chaddr: u8| {
            let mut m = request(MessageType::Decline, chaddr, None);
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
            m
        };
        send(&mut s, Time::ZERO, Ipv4Addr::UNSPECIFIED, &decline(2));
        assert_eq!(drain(&mut s), vec!["dhcp.server.refused".to_owned()]);
        assert_eq!(s.active_leases().len(), 1);
        send(&mut s, Time::ZERO, Ipv4Addr::UNSPECIFIED, &decline(1));
        assert_eq!(drain(&mut s), vec!["dhcp.server.declined".to_owned()]);
        assert!(s.active_leases().is_empty());
        // The declined address is held back: the next client gets another one.
        let other = bind(&mut s, 3, None);
        assert_ne!(other, addr);
    }

    proptest! {
        #[test]
        fn handle_datagram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut s = server();
            let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT);
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
            s.handle_datagram(Time::ZERO, from, to, &data);
            while s.poll_transmit().is_some() {}
        }

        #[test]
        fn framed_requests_never_panic(
            op in 1u8..=2,
            hlen in 0u8..=20,
            ciaddr in any::<[u8; 4]>(),
            tlvs in proptest::collection::vec(
                (prop_oneof![Just(50u8), Just(53), Just(54), Just(61), any::<u8>()],
                 proptest::collection::vec(any::<u8>(), 0..8)),
                0..12,
            ),
        ) {
            // A valid header with arbitrary options the server looks at.
            let mut data = vec![op, 1, hlen, 0, 1, 2, 3, 4, 0, 0, 0x80, 0];
            data.extend_from_slice(&ciaddr);
            data.extend_from_slice(&[0; 12]);
            data.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
            data.extend_from_slice(&[0; 10 + 192]);
            data.extend_from_slice(&[99, 130, 83, 99]);
            for (code, value) in &tlvs {
                data.extend_from_slice(&[*code, value.len() as u8]);
                data.extend_from_slice(value);
            }
            data.push(255);
            let mut s = server();
            let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT);
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
            s.handle_datagram(Time::ZERO, from, to, &data);
            s.handle_timeout(Time::from_secs(1000));
            while s.poll_transmit().is_some() {}
        }
    }
}
