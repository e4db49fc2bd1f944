//! The `roles` target: a DHCP server and client, a super node, an end node and a NAT fed
//! records of arbitrary datagrams, with its addresses, record format and role builders.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::Duration;

use binfm_roles::Time;
use binfm_roles::chain::ChainConfig;
use binfm_roles::dhcp::{ClientConfig, DhcpClient, DhcpServer, ServerConfig};
use binfm_roles::en::EndNode;
use binfm_roles::nat::{Nat, NatConfig};
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::ports;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Script;

/// NAT public address of the `roles` target.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The SN of the `roles` target.
pub const SN_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), ports::SN);
/// The SN's peer (blocks and relays come from it).
pub const SN_PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), ports::SN);
/// The EN of the `roles` target (behind the NAT).
pub const EN_PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
/// Another EN, public, that the EN calls and that sends to it.
pub const PEER_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), ports::EN);
/// Hardware address of the DHCP client.
pub const CLIENT_HW: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Record selectors of the `roles` target (`sel % 6`).
pub mod role {
    /// DHCP server, port 67.
    pub const DHCP_SERVER: u8 = 0;
    /// DHCP client, port 68 (bit 0x80: patch in the client's xid and chaddr).
    pub const DHCP_CLIENT: u8 = 1;
    /// Super node (bit 0x80: from the peer SN, else from the peer EN).
    pub const SN: u8 = 2;
    /// End node (bit 0x80: from the SN, else from the peer EN).
    pub const EN: u8 = 3;
    /// NAT, inside to outside (bit 0x80: fix the IPv4 header checksum).
    pub const NAT_OUT: u8 = 4;
    /// NAT, outside to inside (bit 0x80: fix the IPv4 header checksum).
    pub const NAT_IN: u8 = 5;
    /// Bit set: advance the clock by 1 s (plus the `sel & 0x3f` tenths) before the record.
    pub const ADVANCE: u8 = 0x40;
    /// Bit set: the variant named per role above.
    pub const FLAG: u8 = 0x80;
}

/// Encodes one record of the `roles` target.
pub fn role_record(sel: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![sel];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..usize::from(len)]);
    out
}

/// The chain parameters of the `roles` target's SN (cheap proof of work).
pub fn roles_chain() -> ChainConfig {
    ChainConfig {
        network_hash_rate: 2000.0,
        ..ChainConfig::default()
    }
}

/// Wallet of the `roles` EN (`seed` 1) or its peer (`seed` 2); `nat` is its public endpoint.
/// Both are made once per process (a wallet costs a 2048-bit DH key generation) and cloned:
/// the same wallet every time, as if made afresh.
pub fn roles_wallet(seed: u8, private: SocketAddrV4, nat: SocketAddrV4) -> Wallet {
    static WALLETS: [OnceLock<Wallet>; 2] = [OnceLock::new(), OnceLock::new()];
    let make = || Wallet::from_seed([seed; 32], &mut ChaCha8Rng::seed_from_u64(u64::from(seed)));
    let mut w = match WALLETS.get(usize::from(seed).wrapping_sub(1)) {
        Some(cell) => cell.get_or_init(make).clone(),
        None => make(),
    };
    w.set_addresses(private, nat);
    w
}

/// Virtual time one `roles` input can pass at most: `ADVANCE` records stop moving the clock
/// there. It covers every timer of the roles (NAT mappings expire after 120 s, DHCP leases
/// after 60 s, a call's consent after 30 s) and bounds the audio an active call makes.
pub const ROLES_MAX_VIRTUAL: Duration = Duration::from_secs(150);

/// Records to the EN carrying a message that costs it DH operations (Session Request and
/// Response, Key Renewal and its Reply: one to three 2048-bit exponentiations each) that one
/// `roles` input can deliver; later ones are skipped.
pub const ROLES_MAX_DH_RECORDS: usize = 8;

/// Whether `bytes` look like a BINFM message that costs the EN DH operations.
fn costs_dh(bytes: &[u8]) -> bool {
    use binfm_stack::wire::binfm::{MAGIC, msg_type};
    bytes.get(..2) == Some(&MAGIC[..])
        && matches!(
            bytes.get(3),
            Some(
                &(msg_type::SESSION_REQUEST
                    | msg_type::SESSION_RESPONSE
                    | msg_type::KEY_RENEWAL
                    | msg_type::KEY_RENEWAL_REPLY)
            )
        )
}

pub(crate) fn dhcp_server() -> DhcpServer {
    DhcpServer::new(ServerConfig {
        server_ip: Ipv4Addr::new(10, 1, 0, 2),
        prefix_len: 24,
        router: Ipv4Addr::new(10, 1, 0, 1),
        pool_start: Ipv4Addr::new(10, 1, 0, 1),
        pool_end: Ipv4Addr::new(10, 1, 0, 10),
        lease_time: Duration::from_secs(60),
        nat_public: Some(NAT_PUBLIC),
        super_nodes: vec![SN_ADDR, SN_PEER],
    })
}

/// The DHCP client after `start`: it waits for an OFFER to its DISCOVER (returned too).
pub(crate) fn dhcp_client() -> (DhcpClient, [u8; 4], Vec<u8>) {
    let mut c = DhcpClient::new(
        ClientConfig {
            client_id: b"en-1".to_vec(),
            hw_addr: CLIENT_HW,
        },
        7,
    );
    c.start(Time::ZERO);
    let mut xid = [0u8; 4];
    let mut discover = Vec::new();
    while let Some(t) = c.poll_transmit() {
        if let Some(x) = t.payload.get(4..8) {
            xid.copy_from_slice(x);
        }
        discover = t.payload;
    }
    (c, xid, discover)
}

fn super_node() -> Option<SuperNode> {
    let mut cfg = SnConfig::new(1, vec![SN_PEER], 2000.0, roles_chain());
    cfg.mine = false;
    cfg.reply_unconfirmed = true;
    let mut s = SuperNode::new(cfg, 7).ok()?;
    s.start(Time::ZERO);
    Some(s)
}

/// The EN: registered address behind the NAT, SN known, a call to the peer started.
pub(crate) fn end_node() -> EndNode {
    let private = SocketAddrV4::new(EN_PRIVATE, ports::EN);
    let wallet = roles_wallet(1, private, private);
    let mut en = EndNode::new(wallet, ports::EN, [11; 32], 440.0);
    en.set_chain_config(roles_chain());
    en.on_address(Time::ZERO, EN_PRIVATE, Some(NAT_PUBLIC), vec![SN_ADDR]);
    en.call(Time::ZERO, peer_hash_addr());
    en
}

/// The peer's hash address.
fn peer_hash_addr() -> binfm_stack::wire::toall::HashAddr {
    roles_wallet(2, PEER_ADDR, PEER_ADDR).hash_addr()
}

fn nat() -> Nat {
    Nat::new(NatConfig::new(NAT_PUBLIC, Ipv4Addr::new(10, 0, 0, 0), 8))
}

fn fix_ipv4_checksum(p: &mut [u8]) {
    let Some(&b0) = p.first() else { return };
    let ihl = usize::from(b0 & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let c = binfm_stack::checksum::checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The roles of the `roles` target, built lazily on their first record.
#[derive(Debug, Default)]
struct Roles {
    server: Option<DhcpServer>,
    client: Option<(DhcpClient, [u8; 4], Vec<u8>)>,
    sn: Option<Option<SuperNode>>,
    en: Option<EndNode>,
    nat: Option<Nat>,
    /// When tracing: the kinds of the EN's events, in order.
    trace: Option<Vec<String>>,
    /// When tracing: the datagrams the EN sent, in order.
    sent: Option<Vec<Vec<u8>>>,
}

impl Roles {
    /// Drains every output of every built role and runs the timers due by `now`.
    fn settle(&mut self, now: Time) {
        for _ in 0..4 {
            if let Some(s) = &mut self.server {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
            }
            if let Some((c, _, _)) = &mut self.client {
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
                while c.poll_transmit().is_some() {}
                while c.poll_event().is_some() {}
                while c.poll_config().is_some() {}
            }
            if let Some(Some(s)) = &mut self.sn {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
                while s.poll_persist().is_some() {}
            }
            if let Some(en) = &mut self.en {
                if en.poll_timeout().is_some_and(|t| t <= now) {
                    en.handle_timeout(now);
                }
                while let Some(t) = en.poll_transmit() {
                    if let Some(sent) = &mut self.sent {
                        sent.push(t.payload);
                    }
                }
                while let Some(e) = en.poll_event() {
                    if let Some(t) = &mut self.trace {
                        t.push(e.kind().to_string());
                    }
                }
                while en.poll_lookup().is_some() {}
            }
            if let Some(n) = &mut self.nat {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
                while n.poll_event().is_some() {}
            }
        }
    }
}

/// Arbitrary datagrams into a DHCP server, a DHCP client, a super node, an end node and both
/// sides of a NAT. The input is a list of records `sel u8 | len u16 | bytes` (see [`role`]);
/// a short last record takes what is left. Time only moves forward, by at most
/// [`ROLES_MAX_VIRTUAL`]; at most 64 records and [`ROLES_MAX_DH_RECORDS`] of them costing DH
/// operations are run.
pub fn roles(data: &[u8]) {
    run_roles(data, false);
}

/// [`roles`], returning the kinds of the end node's events (for the corpus test).
pub fn roles_en_events(data: &[u8]) -> Vec<String> {
    run_roles(data, true).0
}

/// [`roles`], returning the datagrams the end node sent (the seeds answer them).
pub(crate) fn roles_en_sent(data: &[u8]) -> Vec<Vec<u8>> {
    run_roles(data, true).1
}

fn run_roles(data: &[u8], trace: bool) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut roles = Roles::default();
    if trace {
        roles.trace = Some(Vec::new());
        roles.sent = Some(Vec::new());
    }
    let mut s = Script { rest: data };
    let mut now = Time::ZERO;
    let mut advanced = Duration::ZERO;
    let mut records = 0;
    let mut dh_records = 0;
    while !s.done() && records < 64 {
        records += 1;
        let sel = s.u8();
        let len = usize::from(s.u16());
        let mut bytes = s.bytes(len).to_vec();
        if sel & role::ADVANCE != 0 {
            let step = Duration::from_millis(1000 + 100 * u64::from(sel & 0x3f))
                .min(ROLES_MAX_VIRTUAL.saturating_sub(advanced));
            advanced += step;
            now += step;
        }
        let flag = sel & role::FLAG != 0;
        match (sel & 0x3f) % 6 {
            role::DHCP_SERVER => {
                let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ports::DHCP_CLIENT);
                let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_SERVER);
                roles
                    .server
                    .get_or_insert_with(dhcp_server)
                    .handle_datagram(now, from, to, &bytes);
            }
            role::DHCP_CLIENT => {
                let (client, xid, _) = roles.client.get_or_insert_with(dhcp_client);
                if flag && bytes.len() >= 34 {
                    bytes[2] = 6;
                    bytes[4..8].copy_from_slice(xid);
                    bytes[28..34].copy_from_slice(&CLIENT_HW);
                }
                let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), ports::DHCP_SERVER);
                let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_CLIENT);
                client.handle_datagram(now, from, to, &bytes);
            }
            role::SN => {
                let from = if flag { SN_PEER } else { PEER_ADDR };
                if let Some(sn) = roles.sn.get_or_insert_with(super_node) {
                    sn.handle_datagram(now, from, SN_ADDR, &bytes);
                }
            }
            role::EN => {
                if costs_dh(&bytes) {
                    dh_records += 1;
                    if dh_records > ROLES_MAX_DH_RECORDS {
                        roles.settle(now);
                        continue;
                    }
                }
                let from = if flag { SN_ADDR } else { PEER_ADDR };
                let to = SocketAddrV4::new(EN_PRIVATE, ports::EN);
                roles
                    .en
                    .get_or_insert_with(end_node)
                    .handle_datagram(now, from, to, &bytes);
            }
            role::NAT_OUT => {
                if flag {
                    fix_ipv4_checksum(&mut bytes);
                }
                let _ = roles.nat.get_or_insert_with(nat).outbound(now, &mut bytes);
            }
            _ => {
                if flag {
                    fix_ipv4_checksum(&mut bytes);
                }
                let _ = roles.nat.get_or_insert_with(nat).inbound(now, &mut bytes);
            }
        }
        roles.settle(now);
    }
    (
        roles.trace.unwrap_or_default(),
        roles.sent.unwrap_or_default(),
    )
}
