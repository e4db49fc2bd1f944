//! Bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), shared with the corpus regression
//! test (`fuzzing/tests/fuzz_corpus.rs`) so both run identical code: the fuzz target is one
//! line calling the function of the same name here, and CI replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` through it without a fuzzing engine.
//!
//! Each function takes arbitrary bytes and must never panic. Beyond "no panic" they check
//! the properties the parsers promise: a parsed message re-encodes to exactly the input
//! (one encoding per message), and an authentic SRTP index is never accepted twice.
//!
//! Roles are built afresh for every input (from fixed configs and seeds), so an input that
//! crashes replays the crash on its own: a crash never depends on what ran before it.
//! (`vertical_roles` clones its end nodes from a template built once per process from fixed
//! seeds: the same state for every input, without paying the key agreement each time.)
//!
//! The vertical model's targets (`stun`, `vertical_message`, `vertical_roles`) live in
//! [`vertical`].
//!
//! [`seeds`] makes the seed corpus (small valid examples of every input kind); the ignored
//! test `write_seed_corpus` writes it to `fuzz/corpus/`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use binfm_roles::Time;
use binfm_roles::chain::{Block, ChainConfig};
use binfm_roles::dhcp::{ClientConfig, DhcpClient, DhcpServer, ServerConfig};
use binfm_roles::en::EndNode;
use binfm_roles::nat::{Nat, NatConfig};
use binfm_roles::session::{DirectionKey, SrtpReceiver, SrtpSender};
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::{Wallet, verify_tx};
use binfm_stack::wire::binfm::{Message, mac_input, split_block};
use binfm_stack::wire::dhcp_options::{
    SiteOptions, decode_message, parse_nat_public, parse_super_nodes,
};
use binfm_stack::wire::ports;
use binfm_stack::wire::rtp::RtpHeader;
use binfm_stack::wire::toall::{ToallTx, TxOut};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use binfm_testbed::topology::Topology;

pub mod vertical;

pub use vertical::{stun, vertical_message, vertical_roles};

/// Names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 10] = [
    "dhcp_options",
    "toall_tx",
    "binfm_message",
    "block",
    "rtp_srtp",
    "topology",
    "roles",
    "stun",
    "vertical_message",
    "vertical_roles",
];

/// Runs the target `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "dhcp_options" => dhcp_options(data),
        "toall_tx" => toall_tx(data),
        "binfm_message" => binfm_message(data),
        "block" => block(data),
        "rtp_srtp" => rtp_srtp(data),
        "topology" => topology(data),
        "roles" => roles(data),
        "stun" => stun(data),
        "vertical_message" => vertical_message(data),
        "vertical_roles" => vertical_roles(data),
        _ => return false,
    }
    true
}

/// DHCP message decoding (our guard in front of dhcproto) and the site options 224/225.
pub fn dhcp_options(data: &[u8]) {
    let _ = parse_nat_public(data);
    let _ = parse_super_nodes(data);
    let Ok(msg) = decode_message(data) else {
        return;
    };
    if let Ok(site) = SiteOptions::parse(msg.opts()) {
        // What parses re-emits to the same options.
        let mut opts = msg.opts().clone();
        site.emit(&mut opts);
        assert_eq!(
            SiteOptions::parse(&opts).as_ref(),
            Ok(&site),
            "site options"
        );
    }
}

/// ToALL Tx and TxOut framing: canonical round trip, then the validity check.
pub fn toall_tx(data: &[u8]) {
    if let Ok(out) = TxOut::parse(data) {
        assert_eq!(out.signing_bytes(), data, "TxOut re-encodes to its input");
        assert_eq!(out.buffer_len(), data.len());
    }
    let Ok(tx) = ToallTx::parse(data) else {
        return;
    };
    let bytes = tx.to_bytes();
    assert_eq!(bytes, data, "ToallTx re-encodes to its input");
    assert_eq!(tx.buffer_len(), data.len());
    assert_eq!(ToallTx::parse(&bytes).as_ref(), Ok(&tx));
    let _ = tx.id();
    let _ = verify_tx(&tx);
}

/// Every BINFM control message: canonical round trip, `emit`, and the MAC input.
pub fn binfm_message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let bytes = msg.to_bytes();
    assert_eq!(bytes, data, "{} re-encodes to its input", msg.name());
    assert_eq!(msg.buffer_len(), data.len(), "{}", msg.name());
    let mut buf = vec![0u8; data.len()];
    assert_eq!(msg.emit(&mut buf), Ok(data.len()));
    assert_eq!(Message::parse(&bytes).as_ref(), Ok(&msg));
    assert_eq!(mac_input(&msg).len(), data.len());
}

/// A block of ToALL Txs: decode, canonical round trip, hashes.
pub fn block(data: &[u8]) {
    let Ok(block) = Block::<ToallTx>::decode(data) else {
        return;
    };
    assert_eq!(block.encode(), data, "block re-encodes to its input");
    assert_eq!(block.encoded_len(), data.len());
    let _ = block.hash();
    let _ = block.computed_merkle_root();
    // A decoded block always fits in the parts that carry blocks between SNs.
    assert!(split_block(block.hash(), data).is_ok());
}

/// SSRC of the fixed SRTP stream.
pub const SRTP_SSRC: u32 = 0x1234_5678;

fn srtp_key(b: u8) -> DirectionKey {
    DirectionKey {
        key: [b; 32],
        salt: [b.wrapping_add(1); 12],
    }
}

/// Reads a fuzz input as a script, never failing: missing bytes read as zero / empty.
#[derive(Debug)]
struct Script<'a> {
    rest: &'a [u8],
}

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.rest.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }
}

/// RTP header parsing, then an SRTP receiver with a fixed key fed a script of raw packets
/// and authentic packets (sequence numbers, payloads and the key switch chosen by the input).
///
/// Script: `op u8` then, for op % 4 == 0, `len u8` and that many raw bytes; 1: `seq u16
/// len u8 payload` protected with the current key; 2: the same with the next key (after a
/// rekey); 3: install the next key. Property: an index is accepted at most once.
pub fn rtp_srtp(data: &[u8]) {
    if let Ok((header, rest)) = RtpHeader::parse(data) {
        assert_eq!(header.to_bytes()[..], data[..12]);
        assert_eq!(rest, &data[12..]);
    }
    let mut rx = SrtpReceiver::new(srtp_key(1), SRTP_SSRC);
    let _ = rx.unprotect(data);

    let mut rx = SrtpReceiver::new(srtp_key(1), SRTP_SSRC);
    let mut accepted = HashSet::new();
    let mut s = Script { rest: data };
    let mut steps = 0;
    while !s.done() && steps < 256 {
        steps += 1;
        let op = s.u8();
        let packet = match op % 4 {
            0 => {
                let n = usize::from(s.u8());
                s.bytes(n).to_vec()
            }
            1 | 2 => {
                let seq = s.u16();
                let n = usize::from(s.u8());
                let payload = s.bytes(n);
                let key = if op % 4 == 1 { 1 } else { 2 };
                let mut tx = SrtpSender::new(srtp_key(key), SRTP_SSRC, seq);
                tx.protect(0, u32::from(seq) * 160, payload)
            }
            _ => {
                rx.install_next_key(srtp_key(2));
                continue;
            }
        };
        if let Ok(u) = rx.unprotect(&packet) {
            assert!(accepted.insert(u.index), "index {} accepted twice", u.index);
            assert_eq!(u.header.ssrc, SRTP_SSRC);
            assert_eq!(rx.highest_index().map(|h| h >= u.index), Some(true));
        }
    }
}

/// Topology text (UTF-8 only; the file loader reads UTF-8).
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Topology::from_str(text, Path::new("fuzz.toml")) {
        let _ = e.to_string();
    }
}

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
pub fn roles_wallet(seed: u8, private: SocketAddrV4, nat: SocketAddrV4) -> Wallet {
    let mut w = Wallet::from_seed([seed; 32], &mut ChaCha8Rng::seed_from_u64(u64::from(seed)));
    w.set_addresses(private, nat);
    w
}

fn dhcp_server() -> DhcpServer {
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
fn dhcp_client() -> (DhcpClient, [u8; 4], Vec<u8>) {
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
fn end_node() -> EndNode {
    let private = SocketAddrV4::new(EN_PRIVATE, ports::EN);
    let wallet = roles_wallet(1, private, private);
    let mut en = EndNode::new(wallet, ports::EN, 11, 440.0);
    en.on_address(Time::ZERO, EN_PRIVATE, Some(NAT_PUBLIC), vec![SN_ADDR]);
    en.call(Time::ZERO, peer_hash_addr());
    en
}

/// The peer's hash address, computed once (a wallet costs a DH key generation).
fn peer_hash_addr() -> binfm_stack::wire::toall::HashAddr {
    static PEER: std::sync::OnceLock<binfm_stack::wire::toall::HashAddr> =
        std::sync::OnceLock::new();
    *PEER.get_or_init(|| roles_wallet(2, PEER_ADDR, PEER_ADDR).hash_addr())
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
                while en.poll_transmit().is_some() {}
                while en.poll_event().is_some() {}
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
/// a short last record takes what is left. Time only moves forward.
pub fn roles(data: &[u8]) {
    let mut roles = Roles::default();
    let mut s = Script { rest: data };
    let mut now = Time::ZERO;
    let mut records = 0;
    while !s.done() && records < 64 {
        records += 1;
        let sel = s.u8();
        let len = usize::from(s.u16());
        let mut bytes = s.bytes(len).to_vec();
        if sel & role::ADVANCE != 0 {
            now += Duration::from_millis(1000 + 100 * u64::from(sel & 0x3f));
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
}

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn drain_sn(sn: &mut SuperNode) -> Vec<binfm_roles::Transmit> {
    while sn.poll_event().is_some() {}
    while sn.poll_persist().is_some() {}
    std::iter::from_fn(|| sn.poll_transmit()).collect()
}

/// A block mined on the `roles` chain holding the peer's Tx, as its BlockParts and its bytes.
fn mined_block(peer_tx: &ToallTx) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut cfg = SnConfig::new(2, vec![SN_ADDR], 2000.0, roles_chain());
    cfg.mine = true;
    let mut miner = SuperNode::new(cfg, 9).ok()?;
    miner.start(Time::ZERO);
    let submit = Message::TxSubmit {
        tx: peer_tx.clone(),
    }
    .to_bytes();
    miner.handle_datagram(Time::ZERO, PEER_ADDR, SN_PEER, &submit);
    drain_sn(&mut miner);
    for _ in 0..100 {
        let now = miner.poll_timeout()?;
        miner.handle_timeout(now);
        let parts: Vec<Vec<u8>> = drain_sn(&mut miner)
            .into_iter()
            .filter(|t| matches!(Message::parse(&t.payload), Ok(Message::BlockPart(_))))
            .map(|t| t.payload)
            .collect();
        let (tip, height) = miner.chain().tip();
        if height > 0 && !parts.is_empty() {
            let block = miner.chain().block(&tip)?;
            if !block.txs.is_empty() {
                return Some((parts, block.encode()));
            }
        }
    }
    None
}

/// The seed corpus: small valid inputs for every target, made by the real encoders and roles
/// (so they stay valid when a format changes: rerun the `write_seed_corpus` test).
/// `root` is the repository root (the topology files are read from it).
pub fn seeds(root: &Path) -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };

    // DHCP: a full DISCOVER / OFFER / REQUEST / ACK exchange with our site options.
    let mut server = dhcp_server();
    let (mut client, _, discover) = dhcp_client();
    let srv_from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ports::DHCP_CLIENT);
    let srv_to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_SERVER);
    let cl_from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), ports::DHCP_SERVER);
    let cl_to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_CLIENT);
    let mut dhcp = Vec::new();
    let mut request = Some(discover);
    while let Some(req) = request.take() {
        server.handle_datagram(Time::ZERO, srv_from, srv_to, &req);
        dhcp.push(req);
        let Some(reply) = server.poll_transmit().map(|t| t.payload) else {
            break;
        };
        client.handle_datagram(Time::ZERO, cl_from, cl_to, &reply);
        dhcp.push(reply);
        request = client.poll_transmit().map(|t| t.payload);
    }
    let names = ["discover", "offer", "request", "ack"];
    for (name, bytes) in names.iter().zip(&dhcp) {
        add("dhcp_options", name, bytes.clone());
    }

    // ToALL Txs: the EN's (behind the NAT) and the peer's (public).
    let en_private = SocketAddrV4::new(EN_PRIVATE, ports::EN);
    let en_nat = SocketAddrV4::new(NAT_PUBLIC, binfm_roles::nat::h16(EN_PRIVATE, ports::EN));
    let mut en_wallet = roles_wallet(1, en_private, en_nat);
    let mut peer_wallet = roles_wallet(2, PEER_ADDR, PEER_ADDR);
    let en_tx = en_wallet.next_tx(0);
    let peer_tx = peer_wallet.next_tx(0);
    add("toall_tx", "en_tx", en_tx.to_bytes());
    add("toall_tx", "peer_tx", peer_tx.to_bytes());

    // Every BINFM message type.
    let mined = mined_block(&peer_tx);
    let en_addr = en_wallet.hash_addr();
    let peer_addr = peer_wallet.hash_addr();
    let msgs = [
        ("tx_submit", Message::TxSubmit { tx: en_tx.clone() }),
        (
            "tx_relay",
            Message::TxRelay {
                tx: peer_tx.clone(),
            },
        ),
        (
            "tx_ack",
            Message::TxAck {
                tx_id: en_tx.id(),
                status: binfm_stack::wire::binfm::TxStatus::EndpointMismatch,
                observed: SocketAddrV4::new(NAT_PUBLIC, 40000),
            },
        ),
        (
            "query",
            Message::Query {
                request_id: 1,
                hash_addr: peer_addr,
                want_unconfirmed: true,
            },
        ),
        (
            "reply",
            Message::Reply {
                request_id: 1,
                hash_addr: peer_addr,
                found: true,
                height: 1,
                confirmations: 2,
                tx: Some(peer_tx.clone()),
                unconfirmed: None,
            },
        ),
        (
            "reply_not_found",
            Message::Reply {
                request_id: 2,
                hash_addr: en_addr,
                found: false,
                height: 0,
                confirmations: 0,
                tx: None,
                unconfirmed: Some(en_tx.clone()),
            },
        ),
        (
            "get_block",
            Message::GetBlock {
                block_hash: [0x44; 32],
            },
        ),
        (
            "tip_announce",
            Message::TipAnnounce {
                tip_hash: [0x55; 32],
                height: 3,
                total_work: {
                    let mut w = [0u8; 32];
                    w[30] = 0x1f;
                    w
                },
            },
        ),
        (
            "session_request",
            Message::SessionRequest {
                caller: peer_addr,
                callee: en_addr,
                nonce: [0x33; 16],
                ssrc: 0xcafe_babe,
            },
        ),
        (
            "session_response",
            Message::SessionResponse {
                caller: en_addr,
                callee: peer_addr,
                nonce: [0x44; 16],
                ssrc: 7,
                confirm: [0x55; 16],
            },
        ),
        (
            "handover_request",
            Message::HandoverRequest {
                sender: peer_addr,
                counter: 1,
                private: SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 100), ports::EN),
                nat: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 0x6a3f),
                mac: [0x66; 16],
            },
        ),
        (
            "key_renewal",
            Message::KeyRenewal {
                sender: peer_addr,
                counter: 2,
                y: peer_tx.out.y.clone(),
                mac: [0x77; 16],
            },
        ),
        (
            "control_ack",
            Message::ControlAck {
                sender: peer_addr,
                counter: 2,
                mac: [0x88; 16],
            },
        ),
    ];
    for (name, msg) in &msgs {
        add("binfm_message", name, msg.to_bytes());
    }
    if let Some((parts, _)) = &mined {
        for (i, p) in parts.iter().enumerate() {
            add("binfm_message", &format!("block_part_{i}"), p.clone());
        }
    }

    // Blocks: genesis (no Tx) and a mined one.
    add(
        "block",
        "genesis",
        roles_chain().genesis::<ToallTx>().encode(),
    );
    if let Some((_, bytes)) = &mined {
        add("block", "mined_one_tx", bytes.clone());
    }

    // SRTP: an authentic packet alone, then a script (see `rtp_srtp`).
    let mut sender = SrtpSender::new(srtp_key(1), SRTP_SSRC, 1000);
    let first = sender.protect(0, 0, &[0x55; 160]);
    add("rtp_srtp", "authentic_packet", first.clone());
    let mut script = vec![0u8, first.len().min(255) as u8];
    script.extend_from_slice(&first[..first.len().min(255)]);
    script.extend_from_slice(&[1, 0x03, 0xe8, 4, 1, 2, 3, 4]); // seq 1000 again: replay
    script.extend_from_slice(&[1, 0x03, 0xe9, 2, 9, 9]); // seq 1001
    script.extend_from_slice(&[3]); // rekey
    script.extend_from_slice(&[2, 0x03, 0xea, 1, 7]); // seq 1002 under the next key
    script.extend_from_slice(&[1, 0x03, 0xe7, 1, 7]); // straggler under the old key
    add("rtp_srtp", "script", script);

    // Topologies: the shipped ones and the known-bad ones.
    for dir in ["topologies", "testbed/tests/bad-topologies"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            if let (Some(name), Ok(bytes)) = (path.file_name(), std::fs::read(&path)) {
                add("topology", &name.to_string_lossy(), bytes);
            }
        }
    }

    // Roles: the DHCP exchange, a registration, a query and a block into the SN, the EN's
    // own traffic answered, and UDP both ways through the NAT.
    let mut en = end_node();
    let mut en_query = None;
    let mut en_reg = None;
    while let Some(t) = en.poll_transmit() {
        match Message::parse(&t.payload) {
            Ok(Message::Query { request_id, .. }) => en_query = Some(request_id),
            Ok(Message::TxSubmit { tx }) => en_reg = Some(tx),
            _ => {}
        }
    }
    let mut dhcp_records = Vec::new();
    for (i, bytes) in dhcp.iter().enumerate() {
        let sel = if i % 2 == 0 {
            role::DHCP_SERVER
        } else {
            role::DHCP_CLIENT | role::FLAG
        };
        dhcp_records.extend(role_record(sel, bytes));
    }
    add("roles", "dhcp_exchange", dhcp_records);

    let mut sn_records = role_record(
        role::SN,
        &Message::TxSubmit {
            tx: peer_tx.clone(),
        }
        .to_bytes(),
    );
    sn_records.extend(role_record(role::SN, &msgs[3].1.to_bytes()));
    if let Some((parts, _)) = &mined {
        for p in parts {
            sn_records.extend(role_record(role::SN | role::FLAG | role::ADVANCE, p));
        }
    }
    sn_records.extend(role_record(role::SN, &msgs[3].1.to_bytes()));
    add("roles", "sn_register_block_query", sn_records);

    let mut en_records = Vec::new();
    if let Some(tx) = &en_reg {
        let ack = Message::TxAck {
            tx_id: tx.id(),
            status: binfm_stack::wire::binfm::TxStatus::Accepted,
            observed: SocketAddrV4::new(NAT_PUBLIC, tx.out.nat_port),
        };
        en_records.extend(role_record(role::EN | role::FLAG, &ack.to_bytes()));
    }
    if let Some(request_id) = en_query {
        let reply = Message::Reply {
            request_id,
            hash_addr: peer_addr,
            found: true,
            height: 1,
            confirmations: 1,
            tx: Some(peer_tx.clone()),
            unconfirmed: None,
        };
        en_records.extend(role_record(role::EN | role::FLAG, &reply.to_bytes()));
    }
    en_records.extend(role_record(role::EN, &msgs[8].1.to_bytes()));
    en_records.extend(role_record(role::EN, &first));
    en_records.extend(role_record(
        role::EN | role::ADVANCE,
        &msgs[10].1.to_bytes(),
    ));
    add("roles", "en_register_call", en_records);

    let out_pkt = udp_packet(en_private, SN_ADDR, b"BF\x01\x03");
    let in_pkt = udp_packet(SN_ADDR, en_nat, b"BF\x01\x04");
    let mut nat_records = role_record(role::NAT_OUT, &out_pkt);
    nat_records.extend(role_record(role::NAT_IN, &in_pkt));
    nat_records.extend(role_record(role::NAT_IN | role::ADVANCE, &in_pkt));
    add("roles", "nat_udp_both_ways", nat_records);

    // The vertical model: STUN, its messages, and its roles.
    vertical::seeds(&mut add);
    out
}

/// An IPv4/UDP packet with correct checksums (etherparse builds it).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(b.size(payload.len()));
    match b.write(&mut v, payload) {
        Ok(()) => v,
        Err(_) => Vec::new(),
    }
}
