//! Fuzz target bodies for the vertical model (the baseline): its two decoders (`stun`,
//! `vertical_message`) and its three roles fed arbitrary datagrams (`vertical_roles`).
//!
//! `vertical_roles` runs a small network: a STUN server, a location server, two end nodes A
//! and B **with an active call between them** (keys agreed, audio flowing), and a third end
//! node C that has just started a call to B and waits for its STUN answer. A and B are cloned
//! from a template built once per process with fixed ids and seeds, so every input starts
//! from the same state and a crash replays from its artifact alone. Whatever the roles send
//! goes into a bounded queue; a command record can deliver queued datagrams, so genuine
//! exchanges (a rekey, a re-invite after a move, C's whole call setup) can run between the
//! fuzzer's own datagrams.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::Duration;

use binfm_roles::Time;
use binfm_roles::dh::DhSecret;
use binfm_roles::vertical::Id;
use binfm_roles::vertical::en::{VState, VerticalNode};
use binfm_roles::vertical::location::LocationServer;
use binfm_roles::vertical::stun::StunServer;
use binfm_stack::wire::ports;
use binfm_stack::wire::stun::{BindingReply, BindingRequest, Class, StunMessage, is_stun};
use binfm_stack::wire::vertical::{VmMessage, mac_input};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Script, role_record};

/// STUN Binding decoding: what parses re-encodes to a message that parses to the same value
/// (unknown comprehension-optional attributes, MESSAGE-INTEGRITY and FINGERPRINT are skipped,
/// so the round trip is on the value, not the bytes), and our encoding is a fixed point. Then
/// the server side ([`stun_server_side`]): classic requests, 420 answers.
pub fn stun(data: &[u8]) {
    stun_server_side(data);
    let looks = is_stun(data);
    let Ok(msg) = StunMessage::parse(data) else {
        return;
    };
    assert!(looks, "a parsed STUN message passes is_stun");
    let bytes = msg.to_bytes();
    assert_eq!(bytes.len(), msg.buffer_len(), "buffer_len");
    assert!(is_stun(&bytes));
    let back = StunMessage::parse(&bytes);
    assert_eq!(
        back.as_ref(),
        Ok(&msg),
        "STUN re-encodes to the same message"
    );
    assert_eq!(back.map(|m| m.to_bytes()), Ok(bytes.clone()), "fixed point");
    let mut buf = vec![0u8; bytes.len()];
    assert_eq!(msg.emit(&mut buf), Ok(bytes.len()));
    assert_eq!(buf, bytes);
}

/// The server side of STUN, both dialects (RFC 8489 and RFC 3489 classic): what
/// [`BindingRequest`] and [`BindingReply`] parse re-encodes to bytes that parse to the same
/// value, and the server answers every request that [`BindingRequest`] accepts with exactly
/// one datagram echoing bytes 4-19 (a 420 exactly when the request has unknown
/// comprehension-required attributes).
fn stun_server_side(data: &[u8]) {
    if let Ok(reply) = BindingReply::parse(data) {
        let bytes = reply.to_bytes();
        assert_eq!(bytes.len(), reply.buffer_len());
        assert_eq!(BindingReply::parse(&bytes).as_ref(), Ok(&reply), "reply");
        let mut buf = vec![0u8; bytes.len()];
        assert_eq!(reply.emit(&mut buf), Ok(bytes.len()));
        assert_eq!(buf, bytes);
    }
    let mut server = StunServer::new(ports::STUN);
    let from = SocketAddrV4::new(V_IP_A, 40000);
    server.handle_datagram(Time::ZERO, from, V_STUN, data);
    let sent: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    let Ok(req) = BindingRequest::parse(data) else {
        return;
    };
    let bytes = req.to_bytes();
    assert_eq!(bytes.len(), req.buffer_len());
    assert_eq!(BindingRequest::parse(&bytes).as_ref(), Ok(&req), "request");
    if req.unknown.is_empty() && !req.is_classic() && StunMessage::parse(data).is_err() {
        // An RFC 8489 request the client-side reader refuses (a bad SOFTWARE, ...): dropped,
        // as before.
        assert!(sent.is_empty());
        return;
    }
    let [answer] = sent.as_slice() else {
        panic!("{} answers to one request", sent.len());
    };
    assert_eq!(answer.dst, from);
    assert_eq!(answer.payload.get(4..20), Some(&req.transaction[..]));
    match BindingReply::parse(&answer.payload) {
        Ok(BindingReply::UnknownAttribute { attributes, .. }) => {
            assert_eq!(attributes, req.unknown);
        }
        Ok(BindingReply::Mapped { mapped, .. }) => {
            assert!(req.unknown.is_empty() && req.is_classic());
            assert_eq!(mapped, from);
        }
        Err(_) => {
            assert!(req.unknown.is_empty() && !req.is_classic());
            let resp = StunMessage::parse(&answer.payload);
            assert_eq!(resp.map(|m| m.mapped), Ok(Some(from)));
        }
    }
}

/// Every vertical-model message: canonical round trip (one encoding per message), `emit`,
/// `buffer_len`, and the MAC input.
pub fn vertical_message(data: &[u8]) {
    let Ok(msg) = VmMessage::parse(data) else {
        return;
    };
    assert!(VmMessage::looks_like(data));
    let bytes = msg.to_bytes();
    assert_eq!(bytes, data, "{} re-encodes to its input", msg.name());
    assert_eq!(msg.buffer_len(), data.len(), "{}", msg.name());
    let mut buf = vec![0u8; data.len()];
    assert_eq!(msg.emit(&mut buf), Ok(data.len()));
    assert_eq!(VmMessage::parse(&bytes).as_ref(), Ok(&msg));
    assert_eq!(mac_input(&msg).len(), data.len());
    assert_eq!(msg.type_code(), data[3]);
}

/// End node A (the caller of the established call).
pub const V_ID_A: Id = [0xa1; 32];
/// End node B (the callee of the established call).
pub const V_ID_B: Id = [0xb2; 32];
/// End node C (calls B; pre-call state).
pub const V_ID_C: Id = [0xc3; 32];
/// A's address (public, no NAT: STUN maps it to itself).
pub const V_IP_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 60);
/// A's address after a move (command `MOVE_A`).
pub const V_IP_A2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 61);
/// B's address.
pub const V_IP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 70);
/// C's address.
pub const V_IP_C: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 62);
/// The STUN server.
pub const V_STUN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 3), ports::STUN);
/// The location server (domain "one"; A, B and C register there).
pub const V_LS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 4), ports::LOCATION);
/// The peer domain's location server (not simulated: what is sent to it is dropped).
pub const V_LS_PEER: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 4), ports::LOCATION);
/// A sender that is none of the roles.
pub const V_STRANGER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 4444);
/// Datagrams kept in the queue at most (the oldest go first).
pub const V_QUEUE: usize = 256;
/// Datagrams one `DELIVER_ALL` command routes at most.
pub const V_DELIVER_ALL: usize = 512;
/// Virtual time one input can pass at most: `ADVANCE` records stop moving the clock there.
/// A and B's call makes 100 audio frames (AES-GCM) per virtual second; the roles' longest
/// timer is the location server's 4 s resolve timeout.
pub const V_MAX_VIRTUAL: Duration = Duration::from_millis(4500);
/// Records costing DH operations that one input runs at most (later ones are skipped): the
/// commands `REKEY_A`, `REKEY_B`, `MOVE_A`, `READDRESS_B`, `CALL_C` (each makes the roles run
/// a key agreement or rekey, two to four group-14 exponentiations) and the fuzzer's own
/// Invite, InviteOk, KeyExchange and KeyExchangeReply datagrams to an end node.
pub const V_MAX_DH_RECORDS: usize = 6;

/// Whether the record `(sel, bytes)` costs DH operations (see [`V_MAX_DH_RECORDS`]).
fn costs_dh(sel: u8, bytes: &[u8]) -> bool {
    use binfm_stack::wire::vertical::msg_type;
    match (sel & 0x3f) % 6 {
        vrole::COMMAND => matches!(
            bytes.first().map(|op| op % 8),
            Some(cmd::REKEY_A | cmd::REKEY_B | cmd::MOVE_A | cmd::READDRESS_B | cmd::CALL_C)
        ),
        vrole::CALLEE | vrole::CALLER | vrole::NEW_CALLER => {
            VmMessage::looks_like(bytes)
                && matches!(
                    bytes.get(3),
                    Some(
                        &(msg_type::INVITE
                            | msg_type::INVITE_OK
                            | msg_type::KEY_EXCHANGE
                            | msg_type::KEY_EXCHANGE_REPLY)
                    )
                )
        }
        _ => false,
    }
}

/// Record selectors of the `vertical_roles` target (`(sel & 0x3f) % 6`).
pub mod vrole {
    /// STUN server (bit 0x80: from A, else from a stranger).
    pub const STUN: u8 = 0;
    /// Location server (bit 0x80: from the peer location server, else from A).
    pub const LOCATION: u8 = 1;
    /// End node B, callee of the active call (bit 0x80: from A, else from a stranger).
    pub const CALLEE: u8 = 2;
    /// End node A, caller of the active call (bit 0x80: from B, else from a stranger).
    pub const CALLER: u8 = 3;
    /// End node C, calling B and waiting for STUN (bit 0x80: write C's pending STUN
    /// transaction id into bytes 8..20). From the STUN server if the bytes look like STUN,
    /// else from B.
    pub const NEW_CALLER: u8 = 4;
    /// A command: the first byte picks it (`% 8`, see [`super::cmd`]), the second is its
    /// argument.
    pub const COMMAND: u8 = 5;
    /// Bit set: advance the clock by 1 s (plus the `sel & 0x3f` tenths) before the record.
    pub const ADVANCE: u8 = 0x40;
    /// Bit set: the variant named per role above.
    pub const FLAG: u8 = 0x80;
}

/// Commands of the `vertical_roles` target (first byte of a `COMMAND` record, `% 8`).
pub mod cmd {
    /// Deliver one queued datagram: the argument counts back from the newest (0 = newest).
    pub const DELIVER: u8 = 0;
    /// Deliver queued datagrams, and what they cause, until the queue is empty (bounded).
    pub const DELIVER_ALL: u8 = 1;
    /// A starts a rekey.
    pub const REKEY_A: u8 = 2;
    /// B starts a rekey.
    pub const REKEY_B: u8 = 3;
    /// A moves between its two addresses (STUN, register, re-invite B).
    pub const MOVE_A: u8 = 4;
    /// B gets its address again (STUN, register, re-invite A).
    pub const READDRESS_B: u8 = 5;
    /// Argument odd: A hangs up, else B hangs up.
    pub const HANGUP: u8 = 6;
    /// C calls B (argument even) or A (odd).
    pub const CALL_C: u8 = 7;
}

fn en_addr(ip: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(ip, ports::EN)
}

/// The network of the `vertical_roles` target.
#[derive(Debug, Clone)]
struct VNet {
    stun: StunServer,
    ls: LocationServer,
    a: VerticalNode,
    b: VerticalNode,
    c: VerticalNode,
    /// C's pending STUN transaction id (from its first request).
    c_tid: [u8; 12],
    ip_a: Ipv4Addr,
    /// (from, to, datagram) sent by the roles and not delivered yet.
    queue: VecDeque<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Kinds of the events the roles emitted (only when tracing).
    trace: Option<Vec<String>>,
}

impl VNet {
    /// Runs the due timers, then moves every output into the queue and drops the events.
    fn settle(&mut self, now: Time) {
        let ip_a = self.ip_a;
        let mut out = Vec::new();
        for (node, ip) in [
            (&mut self.a, ip_a),
            (&mut self.b, V_IP_B),
            (&mut self.c, V_IP_C),
        ] {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            while let Some(e) = node.poll_event() {
                if let Some(t) = &mut self.trace {
                    t.push(e.kind().to_string());
                }
            }
            while let Some(t) = node.poll_transmit() {
                let from = SocketAddrV4::new(t.src_ip.unwrap_or(ip), t.src_port);
                out.push((from, t.dst, t.payload));
            }
        }
        if self.ls.poll_timeout().is_some_and(|t| t <= now) {
            self.ls.handle_timeout(now);
        }
        while let Some(e) = self.ls.poll_event() {
            if let Some(t) = &mut self.trace {
                t.push(e.kind().to_string());
            }
        }
        while let Some(t) = self.ls.poll_transmit() {
            out.push((V_LS, t.dst, t.payload));
        }
        while let Some(e) = self.stun.poll_event() {
            if let Some(t) = &mut self.trace {
                t.push(e.kind().to_string());
            }
        }
        while let Some(t) = self.stun.poll_transmit() {
            out.push((V_STUN, t.dst, t.payload));
        }
        for o in out {
            if self.queue.len() >= V_QUEUE {
                self.queue.pop_front();
            }
            self.queue.push_back(o);
        }
    }

    /// Hands a datagram to whoever holds `to`; anything else is lost.
    fn route(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, data: &[u8]) {
        if to == V_STUN {
            self.stun.handle_datagram(now, from, to, data);
        } else if to == V_LS {
            self.ls.handle_datagram(now, from, to, data);
        } else if to == en_addr(self.ip_a) {
            self.a.handle_datagram(now, from, to, data);
        } else if to == en_addr(V_IP_B) {
            self.b.handle_datagram(now, from, to, data);
        } else if to == en_addr(V_IP_C) {
            self.c.handle_datagram(now, from, to, data);
        }
    }

    fn deliver_all(&mut self, now: Time) {
        for _ in 0..V_DELIVER_ALL {
            let Some((from, to, data)) = self.queue.pop_front() else {
                break;
            };
            self.route(now, from, to, &data);
            self.settle(now);
        }
    }

    fn command(&mut self, now: Time, op: u8, arg: u8) {
        match op % 8 {
            cmd::DELIVER => {
                let n = self.queue.len();
                if n > 0
                    && let Some((from, to, data)) = self.queue.remove(n - 1 - usize::from(arg) % n)
                {
                    self.route(now, from, to, &data);
                }
            }
            cmd::DELIVER_ALL => self.deliver_all(now),
            cmd::REKEY_A => self.a.rekey(now),
            cmd::REKEY_B => self.b.rekey(now),
            cmd::MOVE_A => {
                self.ip_a = if self.ip_a == V_IP_A { V_IP_A2 } else { V_IP_A };
                self.a.on_address_lost();
                self.a.on_address(now, self.ip_a, V_STUN);
            }
            cmd::READDRESS_B => self.b.on_address(now, V_IP_B, V_STUN),
            cmd::HANGUP => {
                if arg & 1 == 1 {
                    self.a.hangup(now, V_ID_B);
                } else {
                    self.b.hangup(now, V_ID_A);
                }
            }
            _ => {
                let peer = if arg & 1 == 1 { V_ID_A } else { V_ID_B };
                self.c.call(now, peer);
            }
        }
    }
}

/// A, B, the STUN and the location server after A called B: both calls active, nothing in
/// flight (built at time zero, with zero delays).
fn established() -> VNet {
    let a = VerticalNode::new(V_ID_A, ports::EN, V_LS, 1, 440.0);
    let b = VerticalNode::new(V_ID_B, ports::EN, V_LS, 2, 660.0);
    let c = VerticalNode::new(V_ID_C, ports::EN, V_LS, 3, 550.0);
    let mut net = VNet {
        stun: StunServer::new(ports::STUN),
        ls: LocationServer::new("one", ports::LOCATION, vec![("two".into(), V_LS_PEER)]),
        a,
        b,
        c,
        c_tid: [0; 12],
        ip_a: V_IP_A,
        queue: VecDeque::new(),
        trace: None,
    };
    let now = Time::ZERO;
    net.a.on_address(now, V_IP_A, V_STUN);
    net.b.on_address(now, V_IP_B, V_STUN);
    net.settle(now);
    net.deliver_all(now);
    net.a.call(now, V_ID_B);
    net.settle(now);
    net.deliver_all(now);
    net.queue.clear();
    net
}

/// The template network, built once per process (the key agreement costs DH operations).
fn template() -> &'static VNet {
    static NET: OnceLock<VNet> = OnceLock::new();
    NET.get_or_init(established)
}

/// A fresh copy of the template with C addressed and calling B. C's first STUN request is
/// lost (not queued): C's setup costs four DH operations, so it runs only when the input asks
/// for it (C's retransmission after 500 ms, then a delivery; or records to C).
fn fresh() -> VNet {
    let mut net = template().clone();
    net.c.on_address(Time::ZERO, V_IP_C, V_STUN);
    net.c.call(Time::ZERO, V_ID_B);
    while net.c.poll_event().is_some() {}
    while let Some(t) = net.c.poll_transmit() {
        if let Ok(m) = StunMessage::parse(&t.payload) {
            net.c_tid = m.transaction_id;
        }
    }
    net
}

/// States of A's and B's calls in a fresh network (both `Active`; checked by a test).
pub fn vertical_roles_start_states() -> (Option<VState>, Option<VState>) {
    let net = fresh();
    (
        net.a.calls().first().map(|c| c.state),
        net.b.calls().first().map(|c| c.state),
    )
}

/// Arbitrary datagrams into a STUN server, a location server and three vertical end nodes
/// (two in an active call, one setting a call up), plus commands that run the protocol (see
/// [`vrole`] and [`cmd`]). The input is a list of records `sel u8 | len u16 | bytes`; a short
/// last record takes what is left. Time only moves forward, by at most [`V_MAX_VIRTUAL`]; at
/// most 64 records and [`V_MAX_DH_RECORDS`] of them costing DH operations are run.
pub fn vertical_roles(data: &[u8]) {
    run_vertical_roles(data, false);
}

/// [`vertical_roles`], returning the kinds of the events the roles emitted (tests check
/// that the seeds reach the code behind the MAC checks).
pub fn vertical_roles_events(data: &[u8]) -> Vec<String> {
    run_vertical_roles(data, true)
}

fn run_vertical_roles(data: &[u8], trace: bool) -> Vec<String> {
    let mut s = Script { rest: data };
    if s.done() {
        return Vec::new();
    }
    let mut net = fresh();
    if trace {
        net.trace = Some(Vec::new());
    }
    let mut now = Time::ZERO;
    let mut advanced = Duration::ZERO;
    let mut records = 0;
    let mut dh_records = 0;
    while !s.done() && records < 64 {
        records += 1;
        let sel = s.u8();
        let len = usize::from(s.u16());
        let mut bytes = s.bytes(len).to_vec();
        if sel & vrole::ADVANCE != 0 {
            let step = Duration::from_millis(1000 + 100 * u64::from(sel & 0x3f))
                .min(V_MAX_VIRTUAL.saturating_sub(advanced));
            advanced += step;
            now += step;
        }
        if costs_dh(sel, &bytes) {
            dh_records += 1;
            if dh_records > V_MAX_DH_RECORDS {
                net.settle(now);
                continue;
            }
        }
        let flag = sel & vrole::FLAG != 0;
        let a = en_addr(net.ip_a);
        let b = en_addr(V_IP_B);
        match (sel & 0x3f) % 6 {
            vrole::STUN => {
                let from = if flag { a } else { V_STRANGER };
                net.stun.handle_datagram(now, from, V_STUN, &bytes);
            }
            vrole::LOCATION => {
                let from = if flag { V_LS_PEER } else { a };
                net.ls.handle_datagram(now, from, V_LS, &bytes);
            }
            vrole::CALLEE => {
                let from = if flag { a } else { V_STRANGER };
                net.b.handle_datagram(now, from, b, &bytes);
            }
            vrole::CALLER => {
                let from = if flag { b } else { V_STRANGER };
                net.a.handle_datagram(now, from, a, &bytes);
            }
            vrole::NEW_CALLER => {
                if flag && let Some(tid) = bytes.get_mut(8..20) {
                    tid.copy_from_slice(&net.c_tid);
                }
                let from = if is_stun(&bytes) { V_STUN } else { b };
                net.c.handle_datagram(now, from, en_addr(V_IP_C), &bytes);
            }
            _ => {
                let op = bytes.first().copied().unwrap_or(0);
                let arg = bytes.get(1).copied().unwrap_or(0);
                net.command(now, op, arg);
            }
        }
        net.settle(now);
    }
    net.trace.unwrap_or_default()
}

fn stun_response(tid: [u8; 12], mapped: SocketAddrV4) -> Vec<u8> {
    StunMessage::binding_response(tid, mapped, Some("seed".into())).to_bytes()
}

/// What A sends after it moved to [`V_IP_A2`] and its STUN answer came: the ReInvite to B.
fn reinvite_after_move(a: &mut VerticalNode) -> Option<Vec<u8>> {
    a.on_address_lost();
    a.on_address(Time::ZERO, V_IP_A2, V_STUN);
    let tid = std::iter::from_fn(|| a.poll_transmit())
        .find_map(|t| StunMessage::parse(&t.payload).ok())?
        .transaction_id;
    a.handle_datagram(
        Time::ZERO,
        V_STUN,
        en_addr(V_IP_A2),
        &stun_response(tid, en_addr(V_IP_A2)),
    );
    std::iter::from_fn(|| a.poll_transmit())
        .map(|t| t.payload)
        .find(|p| matches!(VmMessage::parse(p), Ok(VmMessage::ReInvite { .. })))
}

/// The first datagram of `kind` (`VmMessage::name`) that `n` sends.
fn first_sent(n: &mut VerticalNode, kind: &str) -> Option<Vec<u8>> {
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| t.payload)
        .find(|p| VmMessage::parse(p).is_ok_and(|m| m.name() == kind))
}

/// Media frames `n` sends up to `until`.
fn media_until(n: &mut VerticalNode, until: Time) -> Vec<Vec<u8>> {
    while let Some(t) = n.poll_timeout() {
        if t > until {
            break;
        }
        n.handle_timeout(t);
    }
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| t.payload)
        .filter(|p| binfm_stack::wire::rtp::is_rtp(p))
        .collect()
}

/// Seeds of `stun`, `vertical_message` and `vertical_roles` (see [`super::seeds`]).
pub fn seeds(add: &mut dyn FnMut(&'static str, &str, Vec<u8>)) {
    // STUN: request, our response, the RFC 5769 sample response (SOFTWARE, XOR-MAPPED-
    // ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT), an error response, an IPv6 mapping.
    let req = StunMessage::binding_request([7; 12]).to_bytes();
    let resp = stun_response([7; 12], en_addr(V_IP_A));
    add("stun", "binding_request", req.clone());
    add("stun", "binding_response", resp.clone());
    add(
        "stun",
        "rfc5769_ipv4_response",
        RFC5769_IPV4_RESPONSE.to_vec(),
    );
    let err = StunMessage {
        class: Class::ErrorResponse,
        transaction_id: [9; 12],
        mapped: None,
        software: None,
    };
    let mut err = err.to_bytes();
    err[3] = 8;
    err.extend_from_slice(&[0x00, 0x09, 0x00, 0x04, 0, 0, 4, 20]); // ERROR-CODE 420
    add("stun", "error_response", err);
    let mut v6 = StunMessage::binding_response([3; 12], en_addr(V_IP_B), None).to_bytes();
    v6[3] += 24;
    v6.extend_from_slice(&[0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0x12, 0x34]);
    v6.extend_from_slice(&[0x55; 16]);
    // RFC 3489 (classic) Binding requests as a classic client sends them: no magic cookie, a
    // 128-bit transaction id; the second with CHANGE-REQUEST (answered with 420); and the
    // server's two classic answers.
    let classic_tid = [
        0x5c, 0x0e, 0x31, 0xa7, 0x08, 0x7f, 0xd2, 0x44, 0x19, 0xe3, 0x6b, 0x90, 0x2d, 0x01, 0xc8,
        0x56,
    ];
    let classic = BindingRequest {
        transaction: classic_tid,
        unknown: Vec::new(),
    };
    let classic_cr = BindingRequest {
        transaction: classic_tid,
        unknown: vec![binfm_stack::wire::stun::attr::CHANGE_REQUEST],
    };
    add("stun", "classic_request", classic.to_bytes());
    add("stun", "classic_change_request", classic_cr.to_bytes());
    let mut server = StunServer::new(ports::STUN);
    for req in [&classic, &classic_cr] {
        server.handle_datagram(Time::ZERO, en_addr(V_IP_A), V_STUN, &req.to_bytes());
    }
    for (name, t) in ["classic_mapped_response", "classic_420"]
        .into_iter()
        .zip(std::iter::from_fn(|| server.poll_transmit()))
    {
        add("stun", name, t.payload);
    }
    add("stun", "ipv6_then_ipv4", {
        // IPv6 XOR-MAPPED-ADDRESS first (skipped), then the IPv4 one (used).
        let mut b = v6[..20].to_vec();
        b.extend_from_slice(&v6[32..]);
        b.extend_from_slice(&v6[20..32]);
        b
    });

    // Every vertical message, from a real call where possible.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let y = DhSecret::generate(&mut rng).public();
    let contact = en_addr(V_IP_A);
    let msgs = [
        (
            "register",
            VmMessage::Register {
                id: V_ID_A,
                contact,
            },
        ),
        (
            "register_ack",
            VmMessage::RegisterAck {
                id: V_ID_A,
                contact,
            },
        ),
        (
            "lookup",
            VmMessage::Lookup {
                request_id: 1,
                id: V_ID_B,
            },
        ),
        (
            "lookup_reply",
            VmMessage::LookupReply {
                request_id: 1,
                id: V_ID_B,
                contact: Some(en_addr(V_IP_B)),
            },
        ),
        (
            "lookup_reply_not_found",
            VmMessage::LookupReply {
                request_id: 2,
                id: [0x99; 32],
                contact: None,
            },
        ),
        (
            "resolve",
            VmMessage::Resolve {
                request_id: 1,
                id: [0x99; 32],
            },
        ),
        (
            "resolved",
            VmMessage::Resolved {
                request_id: 1,
                id: [0x99; 32],
                contact: Some(en_addr(Ipv4Addr::new(203, 0, 113, 99))),
            },
        ),
        (
            "invite",
            VmMessage::Invite {
                caller: V_ID_C,
                callee: V_ID_B,
                contact: en_addr(V_IP_C),
                ssrc: 0xc3c3_0001,
            },
        ),
        (
            "invite_ok",
            VmMessage::InviteOk {
                caller: V_ID_C,
                callee: V_ID_B,
                contact: en_addr(V_IP_B),
                ssrc: 0xb2b2_0001,
            },
        ),
        (
            "key_exchange",
            VmMessage::KeyExchange {
                from: V_ID_C,
                epoch: 0,
                nonce: [0x11; 16],
                y: y.clone(),
                mac: [0; 16],
            },
        ),
        (
            "key_exchange_reply",
            VmMessage::KeyExchangeReply {
                from: V_ID_B,
                epoch: 0,
                nonce: [0x22; 16],
                y: y.clone(),
                mac: [0; 16],
            },
        ),
        (
            "re_invite",
            VmMessage::ReInvite {
                from: V_ID_A,
                counter: 1,
                contact: en_addr(V_IP_A2),
                mac: [0x33; 16],
            },
        ),
    ];
    for (name, m) in &msgs {
        add("vertical_message", name, m.to_bytes());
    }
    let net = fresh();
    let (mut a, mut b) = (net.a.clone(), net.b.clone());
    a.rekey(Time::ZERO);
    let a_rekey = first_sent(&mut a, "key_exchange");
    if let Some(k) = &a_rekey {
        add("vertical_message", "key_exchange_rekey", k.clone());
    }
    let a_reinvite = reinvite_after_move(&mut net.a.clone());
    if let Some(r) = &a_reinvite {
        add("vertical_message", "re_invite_authentic", r.clone());
    }

    // Roles. The STUN server: a request, a response (dropped), garbage.
    let mut r = role_record(vrole::STUN | vrole::FLAG, &req);
    r.extend(role_record(vrole::STUN, &resp));
    r.extend(role_record(vrole::STUN, b"VM\x01\x01"));
    add("vertical_roles", "stun_server", r);

    // The location server: register, local lookup, remote lookup (Resolve to the peer,
    // request id 1), the peer's answer, the peer's own Resolve, a resolution timing out.
    let m = |i: usize| msgs[i].1.to_bytes();
    let mut r = role_record(vrole::LOCATION, &m(0));
    r.extend(role_record(vrole::LOCATION, &m(2)));
    r.extend(role_record(
        vrole::LOCATION,
        &VmMessage::Lookup {
            request_id: 9,
            id: [0x99; 32],
        }
        .to_bytes(),
    ));
    r.extend(role_record(vrole::LOCATION | vrole::FLAG, &m(6)));
    r.extend(role_record(
        vrole::LOCATION | vrole::FLAG,
        &VmMessage::Resolve {
            request_id: 5,
            id: V_ID_B,
        }
        .to_bytes(),
    ));
    r.extend(role_record(
        vrole::LOCATION,
        &VmMessage::Lookup {
            request_id: 10,
            id: [0x98; 32],
        }
        .to_bytes(),
    ));
    r.extend(role_record(vrole::LOCATION | vrole::ADVANCE | 0x31, &[]));
    add("vertical_roles", "location_server", r);

    // C's call setup, message by message (the STUN answer gets C's transaction id).
    let mut r = role_record(
        vrole::NEW_CALLER | vrole::FLAG,
        &stun_response([0; 12], en_addr(V_IP_C)),
    );
    r.extend(role_record(
        vrole::NEW_CALLER,
        &VmMessage::RegisterAck {
            id: V_ID_C,
            contact: en_addr(V_IP_C),
        }
        .to_bytes(),
    ));
    r.extend(role_record(
        vrole::NEW_CALLER,
        &VmMessage::LookupReply {
            request_id: 1,
            id: V_ID_B,
            contact: Some(en_addr(V_IP_B)),
        }
        .to_bytes(),
    ));
    r.extend(role_record(vrole::NEW_CALLER, &m(8)));
    r.extend(role_record(vrole::NEW_CALLER, &m(10)));
    r.extend(role_record(vrole::NEW_CALLER | vrole::ADVANCE, &[]));
    add("vertical_roles", "new_caller_setup", r);

    // C's call setup run by the roles themselves: 1 s later C retransmits its STUN request
    // (queued last, so kept), then everything is delivered.
    let mut r = role_record(vrole::COMMAND | vrole::ADVANCE, &[cmd::DELIVER, 0]);
    r.extend(role_record(vrole::COMMAND, &[cmd::DELIVER_ALL, 0]));
    r.extend(role_record(
        vrole::COMMAND | vrole::ADVANCE,
        &[cmd::DELIVER_ALL, 0],
    ));
    add("vertical_roles", "new_caller_delivered", r);

    // B fed A's authentic control and media: a rekey, frames under the old and the new key,
    // a re-invite, the same re-invite replayed, then forged.
    let mut r = Vec::new();
    for p in media_until(&mut a, Time::from_millis(40)) {
        r.extend(role_record(vrole::CALLEE | vrole::FLAG, &p));
    }
    if let Some(k) = &a_rekey {
        r.extend(role_record(vrole::CALLEE | vrole::FLAG, k));
    }
    if let Some(k) = &a_rekey {
        // A copy of B takes A's rekey and answers; A's copy switches to the new key, and
        // its next frames reach the fuzzed B (which took the same rekey) under it.
        b.handle_datagram(Time::ZERO, en_addr(V_IP_A), en_addr(V_IP_B), k);
        if let Some(rep) = first_sent(&mut b, "key_exchange_reply") {
            a.handle_datagram(Time::ZERO, en_addr(V_IP_B), en_addr(V_IP_A), &rep);
            for p in media_until(&mut a, Time::from_millis(100)) {
                r.extend(role_record(vrole::CALLEE | vrole::FLAG, &p));
            }
        }
    }
    if let Some(re) = &a_reinvite {
        r.extend(role_record(vrole::CALLEE | vrole::FLAG, re));
        r.extend(role_record(vrole::CALLEE | vrole::ADVANCE, re));
        let mut forged = re.clone();
        if let Some(last) = forged.last_mut() {
            *last ^= 1;
        }
        r.extend(role_record(vrole::CALLEE, &forged));
    }
    add("vertical_roles", "callee_authentic_control", r);

    // A fed B's authentic rekey and media.
    let mut b2 = net.b.clone();
    b2.rekey(Time::ZERO);
    let mut r = Vec::new();
    if let Some(k) = first_sent(&mut b2, "key_exchange") {
        r.extend(role_record(vrole::CALLER | vrole::FLAG, &k));
    }
    for p in media_until(&mut b2, Time::from_millis(60)) {
        r.extend(role_record(vrole::CALLER | vrole::FLAG, &p));
    }
    add("vertical_roles", "caller_authentic_control", r);

    // Commands: rekeys both ways, a move, B re-addressed, C calls, time passes, hang-ups.
    let c = |op: u8, arg: u8| role_record(vrole::COMMAND, &[op, arg]);
    let mut r = c(cmd::REKEY_A, 0);
    r.extend(c(cmd::DELIVER, 0));
    r.extend(c(cmd::DELIVER, 0));
    // Time passes (audio queued), then the audio is delivered: B sees A's new key.
    r.extend(role_record(
        vrole::COMMAND | vrole::ADVANCE,
        &[cmd::DELIVER_ALL, 0],
    ));
    r.extend(c(cmd::DELIVER_ALL, 0));
    r.extend(c(cmd::REKEY_B, 0));
    r.extend(c(cmd::DELIVER_ALL, 0));
    r.extend(c(cmd::MOVE_A, 0));
    r.extend(c(cmd::DELIVER_ALL, 0));
    r.extend(c(cmd::READDRESS_B, 0));
    r.extend(c(cmd::DELIVER_ALL, 0));
    r.extend(c(cmd::CALL_C, 1));
    // C's STUN retransmission comes after 500 ms; then C's calls are set up.
    r.extend(role_record(
        vrole::COMMAND | vrole::ADVANCE | 0x05,
        &[cmd::DELIVER_ALL, 0],
    ));
    r.extend(c(cmd::DELIVER_ALL, 0));
    r.extend(c(cmd::HANGUP, 1));
    r.extend(c(cmd::HANGUP, 0));
    r.extend(role_record(
        vrole::COMMAND | vrole::ADVANCE,
        &[cmd::DELIVER_ALL, 0],
    ));
    add("vertical_roles", "commands", r);
}

/// RFC 5769 section 2.2: sample IPv4 response (SOFTWARE "test vector", XOR-MAPPED-ADDRESS
/// 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT).
const RFC5769_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];
