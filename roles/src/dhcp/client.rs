//! Sans-IO DHCP client: INIT → SELECTING → REQUESTING → BOUND → RENEWING → REBINDING.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use binfm_stack::Time;
use binfm_stack::wire::dhcp_options::{
    OPT_NAT_PUBLIC_ADDR, OPT_SUPER_NODES, SiteOptions, decode_message,
};
use binfm_stack::wire::ports::{DHCP_CLIENT, DHCP_SERVER};
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::events::DhcpClientEvent;
use super::{blank_message, prefix_of};
use crate::Transmit;
pub use crate::address::{ConfigChange, Lease};

/// First retransmission delay (RFC 2131 suggests 4 s; a testbed wants a fast start).
pub const RETRANSMIT_START: Duration = Duration::from_secs(1);
/// Retransmission delay cap.
pub const RETRANSMIT_MAX: Duration = Duration::from_secs(16);
/// REQUESTs sent in REQUESTING before giving up on the offer and discovering again.
pub const MAX_REQUEST_ATTEMPTS: u32 = 4;

/// Who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Client identifier (option 61); the server keys leases on it. Empty = key on chaddr.
    pub client_id: Vec<u8>,
    /// Hardware address, sent as chaddr (no Ethernet here; only an identifier).
    pub hw_addr: [u8; 6],
}

/// RFC 2131 client states (INIT-REBOOT is not used: after a move the client discovers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Idle: not started, or released.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offer sent, waiting for the ACK.
    Requesting,
    /// Leased; nothing to do until T1.
    Bound,
    /// Past T1: unicast REQUEST to our server.
    Renewing,
    /// Past T2: broadcast REQUEST to any server.
    Rebinding,
}

/// The client.
#[derive(Debug)]
pub struct DhcpClient {
    config: ClientConfig,
    rng: ChaCha8Rng,
    state: ClientState,
    xid: u32,
    lease: Option<Lease>,
    /// The offer being requested: (address, server).
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Start of the current exchange (for `secs`).
    exchange_start: Time,
    /// First REQUEST of the current exchange (becomes `Lease::obtained_at`).
    request_sent_at: Time,
    /// Transmissions in the current phase.
    attempts: u32,
    retransmit_at: Option<Time>,
    /// Address of the last lease, asked for again in DISCOVER (option 50).
    prev_address: Option<Ipv4Addr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhcpClientEvent>,
    configs: VecDeque<ConfigChange>,
    malformed: u64,
}

fn opt_u32(msg: &Message, code: OptionCode) -> Option<u32> {
    match msg.opts().get(code) {
        Some(DhcpOption::AddressLeaseTime(v))
        | Some(DhcpOption::Renewal(v))
        | Some(DhcpOption::Rebinding(v)) => Some(*v),
        _ => None,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    }
}

impl DhcpClient {
    /// A client in INIT; call [`DhcpClient::start`] to acquire a lease. All randomness (xid,
    /// retransmission jitter) comes from `seed`.
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        DhcpClient {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            state: ClientState::Init,
            xid: 0,
            lease: None,
            offer: None,
            exchange_start: Time::ZERO,
            request_sent_at: Time::ZERO,
            attempts: 0,
            retransmit_at: None,
            prev_address: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            configs: VecDeque::new(),
            malformed: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The current lease, if bound (also while renewing or rebinding).
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Datagrams that did not decode or made no sense.
    pub fn malformed_count(&self) -> u64 {
        self.malformed
    }

    /// Begins acquisition with a DISCOVER. After a move, call it again: the old lease is
    /// dropped (`ConfigChange::Unbound`) because it belongs to the old network.
    pub fn start(&mut self, now: Time) {
        if let Some(old) = self.lease.take() {
            self.prev_address = Some(old.address);
            self.configs.push_back(ConfigChange::Unbound);
        }
        self.begin_discover(now);
    }

    /// Releases the lease (RELEASE to the server) and goes idle.
    pub fn release(&mut self, now: Time) {
        if let Some(lease) = self.lease.take() {
            self.xid = self.rng.next_u32();
            self.exchange_start = now;
            let mut m = self.base_message(now, MessageType::Release, false);
            m.set_ciaddr(lease.address);
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(lease.server));
            self.send(
                m,
                Some(lease.address),
                SocketAddrV4::new(lease.server, DHCP_SERVER),
            );
            self.events.push_back(DhcpClientEvent::Release {
                address: lease.address,
                server: lease.server,
            });
            self.configs.push_back(ConfigChange::Unbound);
            self.prev_address = Some(lease.address);
        }
        self.state = ClientState::Init;
        self.offer = None;
        self.retransmit_at = None;
        self.attempts = 0;
    }

    /// Handles one datagram received on port 68.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        if self.state == ClientState::Init || self.state == ClientState::Bound {
            return;
        }
        let msg = match decode_message(data) {
            Ok(m) => m,
            Err(e) => return self.malformed(from, &e.to_string()),
        };
        // Not a reply to our current exchange: someone else's, or stale. Broadcast replies
        // reach every client on the segment, so this is normal traffic.
        if msg.opcode() != Opcode::BootReply
            || msg.xid() != self.xid
            || msg.chaddr() != self.config.hw_addr
        {
            return;
        }
        let Some(kind) = msg.opts().msg_type() else {
            return self.malformed(from, "no DHCP message type (option 53)");
        };
        match (kind, self.state) {
            (MessageType::Offer, ClientState::Selecting) => self.on_offer(now, from, &msg),
            (
                MessageType::Ack,
                ClientState::Requesting | ClientState::Renewing | ClientState::Rebinding,
            ) => self.on_ack(from, &msg),
            (
                MessageType::Nak,
                ClientState::Requesting | ClientState::Renewing | ClientState::Rebinding,
            ) => self.on_nak(now, from, &msg),
            _ => {}
        }
    }

    /// Runs timers due by `now`: lease expiry, T2, T1, retransmission.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(lease) = &self.lease {
            if now >= lease.expires_at() {
                let address = lease.address;
                self.lease = None;
                self.prev_address = Some(address);
                self.events.push_back(DhcpClientEvent::Expired { address });
                self.configs.push_back(ConfigChange::Unbound);
                self.begin_discover(now);
                return;
            }
            let (t1, t2) = (lease.t1_at(), lease.t2_at());
            match self.state {
                ClientState::Bound | ClientState::Renewing if now >= t2 => {
                    self.state = ClientState::Rebinding;
                    self.attempts = 0;
                    return self.send_request(now);
                }
                ClientState::Bound if now >= t1 => {
                    self.state = ClientState::Renewing;
                    self.xid = self.rng.next_u32();
                    self.exchange_start = now;
                    self.attempts = 0;
                    return self.send_request(now);
                }
                _ => {}
            }
        }
        if self.retransmit_at.is_some_and(|t| now >= t) {
            match self.state {
                ClientState::Selecting => self.send_discover(now),
                ClientState::Requesting if self.attempts >= MAX_REQUEST_ATTEMPTS => {
                    self.begin_discover(now)
                }
                ClientState::Requesting | ClientState::Renewing | ClientState::Rebinding => {
                    self.send_request(now)
                }
                ClientState::Init | ClientState::Bound => self.retransmit_at = None,
            }
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`DhcpClient::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Time> {
        let phase = self.lease.as_ref().and_then(|l| match self.state {
            ClientState::Bound => Some(l.t1_at().min(l.t2_at()).min(l.expires_at())),
            ClientState::Renewing => Some(l.t2_at().min(l.expires_at())),
            ClientState::Rebinding => Some(l.expires_at()),
            _ => None,
        });
        match (phase, self.retransmit_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<DhcpClientEvent> {
        self.events.pop_front()
    }

    /// Next change for the host's IP stack.
    pub fn poll_config(&mut self) -> Option<ConfigChange> {
        self.configs.pop_front()
    }

    fn malformed(&mut self, from: SocketAddrV4, reason: &str) {
        self.malformed += 1;
        self.events.push_back(DhcpClientEvent::Malformed {
            from,
            reason: reason.to_owned(),
        });
    }

    fn begin_discover(&mut self, now: Time) {
        self.state = ClientState::Selecting;
        self.xid = self.rng.next_u32();
        self.exchange_start = now;
        self.attempts = 0;
        self.offer = None;
        self.send_discover(now);
    }

    /// Next retransmission: 1 s doubling to 16 s, ± up to 10% seeded jitter (so clients
    /// started together do not stay in lockstep).
    fn schedule_retransmit(&mut self, now: Time) {
        let doublings = self.attempts.saturating_sub(1).min(4);
        let base = (RETRANSMIT_START * (1 << doublings)).min(RETRANSMIT_MAX);
        let base_ms = base.as_millis() as i64;
        let spread = base_ms / 10;
        let jitter = self.rng.random_range(-spread..=spread);
        let delay = Duration::from_millis((base_ms + jitter).max(1) as u64);
        self.retransmit_at = Some(now.saturating_add(delay));
    }

    fn base_message(&self, now: Time, kind: MessageType, broadcast: bool) -> Message {
        let mut m = blank_message();
        let secs = now.saturating_sub(self.exchange_start).as_secs();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(self.xid)
            .set_secs(secs.min(u64::from(u16::MAX)) as u16)
            .set_chaddr(&self.config.hw_addr);
        if broadcast {
            m.set_flags(Flags::default().set_broadcast());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        if !self.config.client_id.is_empty() {
            o.insert(DhcpOption::ClientIdentifier(self.config.client_id.clone()));
        }
        if kind != MessageType::Release {
            o.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::AddressLeaseTime,
                OptionCode::ServerIdentifier,
                OptionCode::Renewal,
                OptionCode::Rebinding,
                OptionCode::from(OPT_NAT_PUBLIC_ADDR),
                OptionCode::from(OPT_SUPER_NODES),
            ]));
        }
        m
    }

    fn send(&mut self, m: Message, src_ip: Option<Ipv4Addr>, dst: SocketAddrV4) {
        match m.to_vec() {
            Ok(payload) => self.transmits.push_back(Transmit {
                src_ip,
                src_port: DHCP_CLIENT,
                dst,
                payload,
            }),
            Err(e) => tracing::warn!("DHCP client: cannot encode message: {e}"),
        }
    }

    fn send_discover(&mut self, now: Time) {
        self.attempts += 1;
        let mut m = self.base_message(now, MessageType::Discover, true);
        if let Some(prev) = self.prev_address {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(prev));
        }
        self.send(
            m,
            Some(Ipv4Addr::UNSPECIFIED),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER),
        );
        self.events.push_back(DhcpClientEvent::Discover {
            xid: self.xid,
            attempt: self.attempts,
        });
        self.schedule_retransmit(now);
    }

    fn send_request(&mut self, now: Time) {
        self.attempts += 1;
        if self.attempts == 1 {
            self.request_sent_at = now;
        }
        let (m, src, dst, address, server, phase) = match (self.state, &self.lease, self.offer) {
            (ClientState::Requesting, _, Some((address, server))) => {
                let mut m = self.base_message(now, MessageType::Request, true);
                m.opts_mut().insert(DhcpOption::RequestedIpAddress(address));
                m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
                let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
                (m, Ipv4Addr::UNSPECIFIED, dst, address, server, "select")
            }
            (ClientState::Renewing, Some(l), _) => {
                let mut m = self.base_message(now, MessageType::Request, false);
                m.set_ciaddr(l.address);
                let dst = SocketAddrV4::new(l.server, DHCP_SERVER);
                (m, l.address, dst, l.address, l.server, "renew")
            }
            (ClientState::Rebinding, Some(l), _) => {
                let mut m = self.base_message(now, MessageType::Request, false);
                m.set_ciaddr(l.address);
                let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
                (m, l.address, dst, l.address, l.server, "rebind")
            }
            // No offer or no lease for this state: nothing sensible to request.
            _ => return self.begin_discover(now),
        };
        self.send(m, Some(src), dst);
        self.events.push_back(DhcpClientEvent::Request {
            address,
            server,
            phase,
            attempt: self.attempts,
        });
        self.schedule_retransmit(now);
    }

    fn on_offer(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let address = msg.yiaddr();
        let Some(server) = server_id(msg) else {
            return self.malformed(from, "OFFER without server identifier (option 54)");
        };
        if address.is_unspecified() || address.is_broadcast() {
            return self.malformed(from, "OFFER without a usable yiaddr");
        }
        // The first acceptable offer wins (RFC 2131 allows any choice).
        self.events
            .push_back(DhcpClientEvent::Offer { address, server });
        self.offer = Some((address, server));
        self.state = ClientState::Requesting;
        self.attempts = 0;
        self.send_request(now);
    }

    /// The lease an ACK grants, and a site-option error if option 224/225 was bad (the
    /// address is still usable, so the client takes it and reports the bad option).
    fn lease_from_ack(
        &self,
        from: SocketAddrV4,
        msg: &Message,
    ) -> Result<(Lease, Option<String>), String> {
        let address = msg.yiaddr();
        if address.is_unspecified() || address.is_broadcast() {
            return Err("ACK without a usable yiaddr".into());
        }
        let Some(secs) = opt_u32(msg, OptionCode::AddressLeaseTime) else {
            return Err("ACK without lease time (option 51)".into());
        };
        let lease_time = Duration::from_secs(u64::from(secs));
        let default_t1 = lease_time / 2;
        let default_t2 = lease_time * 7 / 8;
        let t1 =
            opt_u32(msg, OptionCode::Renewal).map_or(default_t1, |s| Duration::from_secs(s.into()));
        let t2 = opt_u32(msg, OptionCode::Rebinding)
            .map_or(default_t2, |s| Duration::from_secs(s.into()));
        let (t1, t2) = if t1 <= t2 && t2 <= lease_time {
            (t1, t2)
        } else {
            (default_t1, default_t2)
        };
        let prefix_len = match msg.opts().get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => prefix_of(*m),
            _ => 32,
        };
        let router = match msg.opts().get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.first().copied(),
            _ => None,
        };
        let server = server_id(msg)
            .or(self.offer.map(|(_, s)| s))
            .or(self.lease.as_ref().map(|l| l.server))
            .unwrap_or(*from.ip());
        let (site, site_error) = match SiteOptions::parse(msg.opts()) {
            Ok(site) => (site, None),
            Err(e) => (SiteOptions::default(), Some(e.to_string())),
        };
        Ok((
            Lease {
                address,
                prefix_len,
                router,
                server,
                lease_time,
                t1,
                t2,
                obtained_at: self.request_sent_at,
                nat_public: site.nat_public,
                super_nodes: site.super_nodes,
            },
            site_error,
        ))
    }

    fn on_ack(&mut self, from: SocketAddrV4, msg: &Message) {
        if self.state == ClientState::Requesting
            && let (Some(sid), Some((_, chosen))) = (server_id(msg), self.offer)
            && sid != chosen
        {
            return; // an ACK from a server we did not choose
        }
        let (lease, site_error) = match self.lease_from_ack(from, msg) {
            Ok(v) => v,
            Err(reason) => return self.malformed(from, &reason),
        };
        let renewing = matches!(self.state, ClientState::Renewing | ClientState::Rebinding);
        let phase = if self.state == ClientState::Rebinding {
            "rebind"
        } else {
            "renew"
        };
        let old = self.lease.take();
        self.state = ClientState::Bound;
        self.offer = None;
        self.attempts = 0;
        self.retransmit_at = None;
        self.prev_address = Some(lease.address);
        if renewing {
            self.events.push_back(DhcpClientEvent::Renewed {
                address: lease.address,
                server: lease.server,
                lease_s: lease.lease_time.as_secs(),
                phase,
            });
            if old.as_ref().is_none_or(|o| !o.same_config(&lease)) {
                self.configs.push_back(ConfigChange::Bound(lease.clone()));
            }
        } else {
            self.events.push_back(DhcpClientEvent::Ack {
                address: lease.address,
                prefix_len: lease.prefix_len,
                router: lease.router,
                server: lease.server,
                lease_s: lease.lease_time.as_secs(),
                nat_public: lease.nat_public,
                super_nodes: lease.super_nodes.clone(),
            });
            self.configs.push_back(ConfigChange::Bound(lease.clone()));
        }
        if let Some(reason) = site_error {
            self.malformed(from, &reason);
        }
        self.lease = Some(lease);
    }

    fn on_nak(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let sid = server_id(msg);
        if self.state == ClientState::Requesting
            && let (Some(sid), Some((_, chosen))) = (sid, self.offer)
            && sid != chosen
        {
            return;
        }
        let message = match msg.opts().get(OptionCode::Message) {
            Some(DhcpOption::Message(text)) => Some(text.clone()),
            _ => None,
        };
        self.events.push_back(DhcpClientEvent::Nak {
            server: sid.unwrap_or(*from.ip()),
            message,
        });
        if self.lease.take().is_some() {
            self.configs.push_back(ConfigChange::Unbound);
        }
        // The address we had or asked for is wrong here: do not ask for it again.
        self.prev_address = None;
        self.begin_discover(now);
    }
}

impl crate::role::Role for DhcpClient {
    fn port(&self) -> u16 {
        DHCP_CLIENT
    }
    fn socket_buffer(&self) -> usize {
        crate::role::CLIENT_SOCKET_BUFFER
    }
    /// Starts at the host's start and after a move (a new network needs a new lease; the
    /// restart reports `Unbound` first); releases on `Release`.
    fn handle_command(&mut self, now: Time, command: &crate::role::Command) {
        use crate::role::Command;
        match command {
            Command::Start { .. } | Command::Moved => self.start(now),
            Command::Release => self.release(now),
            _ => {}
        }
    }
    crate::role::role_io!();
    fn poll_config(&mut self) -> Option<ConfigChange> {
        DhcpClient::poll_config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client() -> DhcpClient {
        DhcpClient::new(
            ClientConfig {
                client_id: b"en-1".to_vec(),
                hw_addr: [2, 0, 0, 0, 0, 1],
            },
            7,
        )
    }

    #[test]
    fn discover_goes_from_unspecified_to_broadcast() {
        let mut c = client();
        c.start(Time::ZERO);
        let t = c.poll_transmit().expect("DISCOVER");
        assert_eq!(t.src_ip, Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(t.src_port, DHCP_CLIENT);
        assert_eq!(t.dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER));
        let m = decode_message(&t.payload).expect("decodes");
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(m.chaddr(), &[2, 0, 0, 0, 0, 1]);
        assert!(m.flags().broadcast());
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(b"en-1".to_vec()))
        );
        assert_eq!(c.state(), ClientState::Selecting);
    }

    #[test]
    fn backoff_doubles_to_16s_with_bounded_jitter() {
        let mut c = client();
        c.start(Time::ZERO);
        let mut last = Time::ZERO;
        let mut gaps = vec![];
        for _ in 0..8 {
            let next = c.poll_timeout().expect("retransmit timer");
            gaps.push(next - last);
            last = next;
            c.handle_timeout(next);
        }
        let bases = [1, 2, 4, 8, 16, 16, 16, 16];
        for (gap, base) in gaps.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(
                *gap >= base * 9 / 10 && *gap <= base * 11 / 10,
                "{gap:?} vs {base:?}"
            );
        }
        // Same seed, same schedule.
        let mut d = client();
        d.start(Time::ZERO);
        assert_eq!(d.poll_timeout(), Some(gaps[0]));
    }

    #[test]
    fn ignores_replies_for_other_xid_or_chaddr() {
        let mut c = client();
        c.start(Time::ZERO);
        let discover = c.poll_transmit().expect("DISCOVER");
        let req = decode_message(&discover.payload).expect("decodes");
        let offer = |xid: u32, chaddr: &[u8]| {
            let mut m = blank_message();
            m.set_opcode(Opcode::BootReply)
                .set_xid(xid)
                .set_chaddr(chaddr)
                .set_yiaddr(Ipv4Addr::new(10, 1, 0, 3));
            m.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Offer));
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 1, 0, 2)));
            m.to_vec().expect("encodes")
        };
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), DHCP_SERVER);
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT);
        c.handle_datagram(Time::ZERO, from, to, &offer(req.xid() ^ 1, req.chaddr()));
        c.handle_datagram(Time::ZERO, from, to, &offer(req.xid(), &[2, 0, 0, 0, 0, 9]));
        assert_eq!(c.state(), ClientState::Selecting);
        c.handle_datagram(Time::ZERO, from, to, &offer(req.xid(), req.chaddr()));
        assert_eq!(c.state(), ClientState::Requesting);
    }

    proptest! {
        #[test]
        fn handle_datagram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut c = client();
            c.start(Time::ZERO);
            let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), DHCP_SERVER);
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT);
            c.handle_datagram(Time::ZERO, from, to, &data);
        }

        #[test]
        fn framed_replies_never_panic(
            yiaddr in any::<[u8; 4]>(),
            kind in prop_oneof![Just(2u8), Just(5), Just(6), any::<u8>()],
            tlvs in proptest::collection::vec(
                (prop_oneof![Just(1u8), Just(3), Just(51), Just(54), Just(58), Just(59),
                             Just(224), Just(225), any::<u8>()],
                 proptest::collection::vec(any::<u8>(), 0..14)),
                0..12,
            ),
        ) {
            // Replies that pass the xid/chaddr check, with arbitrary options, in each state
            // that parses replies.
            let mut c = client();
            c.start(Time::ZERO);
            let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), DHCP_SERVER);
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT);
            for round in 0..3 {
                let mut data = vec![2, 1, 6, 0];
                data.extend_from_slice(&c.xid.to_be_bytes());
                data.extend_from_slice(&[0; 8]);
                data.extend_from_slice(&yiaddr);
                data.extend_from_slice(&[0; 8]);
                data.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
                data.extend_from_slice(&[0; 10 + 192]);
                data.extend_from_slice(&[99, 130, 83, 99, 53, 1, if round == 0 { 2 } else { kind }]);
                for (code, value) in &tlvs {
                    data.extend_from_slice(&[*code, value.len() as u8]);
                    data.extend_from_slice(value);
                }
                data.push(255);
                c.handle_datagram(Time::from_secs(round), from, to, &data);
                if let Some(t) = c.poll_timeout() {
                    c.handle_timeout(t);
                }
                while c.poll_transmit().is_some() {}
            }
        }
    }
}
