//! The vertical model's end node (paper, Figure 1 and Figure 11; DESIGN.md "Vertical
//! model"). NAT, mobility and security one after the other:
//!
//! pre-call (caller A, callee B):
//! 1-2. A's STUN Binding to its STUN server (learns its public contact) .... 2 T_I
//! 3.   A's `Lookup` of B at A's location server ............................ T_I
//! 4.   `Resolve`/`Resolved` between the location servers ..................... T_III
//! 5.   `LookupReply` to A ...................................................... T_I
//! 8.   `Invite` A -> B (A's contact, SSRC) .................................... T_II
//! 6-7. B's STUN Binding, done on receiving the Invite ...................... 2 T_I
//! 9.   `InviteOk` B -> A (B's contact, SSRC) .................................. T_II
//! 10.  `KeyExchange` A -> B (Y_A, nonce_A); B derives the keys ................ T_II
//! 11.  `KeyExchangeReply` B -> A (Y_B, nonce_B); A derives the keys ........... T_II
//!
//! B starts audio when it derives the keys (step 10) and A when the reply arrives (step 11),
//! so A is active, and decrypts B's first frame, at 6 T_I + 4 T_II + T_III after the call
//! started (Table 1: 1440 ms); B decrypts A's first frame one T_II later.
//!
//! mid-call move (Figure 11): 1-2. STUN from the new address [2 T_I]; 3. `ReInvite` with the
//! new contact to the peer, which switches at once [T_II] (Table 2: 280 ms). The EN also
//! registers its new contact. Rekey (Table 3): a new `KeyExchange`/`KeyExchangeReply` round
//! trip [2 T_II = 400 ms]; both hold the new key when the reply reaches the initiator.
//!
//! Keys come from [`crate::session::keys::derive`] over the group-14 DH secret, both nonces
//! and both ids, exactly as BINFM's calls; media is the same SRTP. Unlike the paper's model,
//! the rekey and the re-invite are authenticated with the session control key (the first
//! exchange cannot be: there is no key yet).

use crate::call::CallRole;
use crate::dh::DhSecret;
use crate::session::keys::{DirectionKey, SessionKeys, derive, mac, verify_mac};
use crate::session::media::{MediaEvents, MediaSession, rtp_ssrc};
use crate::session::retransmit::{Backoff, PendingControl, RTO_INITIAL, RTO_MAX};
use crate::session::srtp::KeyUsed;
use crate::util::{millis_f64, short_hex};
use crate::{Event, Time, Transmit};
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::stun::{Class, StunMessage, is_stun};
use binfm_stack::wire::vertical::{Id, VmMessage, mac_input};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// STUN retransmission: first RTO (RFC 8489 section 6.2.1 recommends 500 ms).
pub const STUN_RTO: Duration = Duration::from_millis(500);
/// STUN requests sent at most per transaction (RFC 8489's Rc = 7).
pub const STUN_TRIES: u32 = 7;
/// Lookup tries before giving up.
pub const LOOKUP_TRIES: u32 = 6;
/// Calls (all states) kept at most; an Invite beyond is refused.
pub const MAX_CALLS: usize = 64;
/// Lookups in flight at most.
pub const MAX_LOOKUPS: usize = 64;
/// The media events of a vertical call.
const MEDIA_EVENTS: MediaEvents = MediaEvents {
    first_frame: "vertical.first_frame",
    resumed: "vertical.media_resumed",
    refused: "vertical.media_refused",
};

/// Where a vertical call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VState {
    /// Caller: waiting for its STUN answer (steps 1-2).
    Stun,
    /// Caller: waiting for the LookupReply (steps 3-5), request id.
    LookingUp(u32),
    /// Caller: Invite sent (step 8).
    Inviting,
    /// Callee: Invite received, waiting for its STUN answer (steps 6-7).
    Answering,
    /// Callee: InviteOk sent (step 9), waiting for the KeyExchange.
    AwaitKey,
    /// Caller: KeyExchange sent (step 10), waiting for the reply.
    KeyAgreement,
    /// Keys agreed, audio flows.
    Active,
    /// Hung up or failed.
    Ended,
}

/// A rekey (or the setup key exchange) this side started.
#[derive(Debug, Clone)]
struct OwnExchange {
    secret: DhSecret,
    nonce: [u8; 16],
    epoch: u32,
    sent_at: Time,
}

/// One call of a vertical end node.
#[derive(Debug, Clone)]
pub struct VerticalCall {
    /// The peer's id.
    pub peer: Id,
    /// Our end.
    pub role: CallRole,
    /// State.
    pub state: VState,
    /// Where control and media for the peer go.
    pub peer_addr: Option<SocketAddrV4>,
    /// When the call started (caller) or the Invite arrived (callee).
    pub started_at: Time,
    epoch: u32,
    control: Option<[u8; 32]>,
    prev_control: Option<[u8; 32]>,
    /// Responder of a rekey: the new send key, used once the peer is seen using its own.
    next_send: Option<DirectionKey>,
    own: Option<OwnExchange>,
    /// The last KeyExchange we answered (epoch, its nonce) and our reply, for retransmissions.
    answered: Option<(u32, [u8; 16], Vec<u8>)>,
    invite_ok: Option<Vec<u8>>,
    pending: Option<PendingControl>,
    send_counter: u64,
    recv_counter: u64,
    /// The audio, both ways.
    pub media: MediaSession,
    /// Control messages refused (bad tag, replayed, bad Y).
    pub control_refused: u64,
}

impl VerticalCall {
    fn new(peer: Id, role: CallRole, state: VState, my_ssrc: u32, tone_hz: f64, now: Time) -> Self {
        VerticalCall {
            peer,
            role,
            state,
            peer_addr: None,
            started_at: now,
            epoch: 0,
            control: None,
            prev_control: None,
            next_send: None,
            own: None,
            answered: None,
            invite_ok: None,
            pending: None,
            send_counter: 0,
            recv_counter: 0,
            media: MediaSession::new(my_ssrc, tone_hz, MEDIA_EVENTS),
            control_refused: 0,
        }
    }

    /// Key epoch held (0 after setup, +1 per rekey).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Keys from a DH secret: nonces ordered caller first, ids caller first.
    fn derive(
        &self,
        me: &Id,
        shared: &[u8],
        mine: &[u8; 16],
        theirs: &[u8; 16],
        epoch: u32,
    ) -> SessionKeys {
        match self.role {
            CallRole::Caller => derive(shared, me, &self.peer, mine, theirs, epoch, true),
            CallRole::Callee => derive(shared, &self.peer, me, theirs, mine, epoch, false),
        }
    }

    fn verify(&self, msg: &VmMessage, tag: &[u8; 16]) -> bool {
        let input = mac_input(msg);
        [self.control, self.prev_control]
            .iter()
            .flatten()
            .any(|k| verify_mac(k, &input, tag))
    }

    fn set_pending(&mut self, bytes: Vec<u8>, now: Time, what: &'static str) {
        self.pending = Some(PendingControl::new(bytes, what, now));
    }

    fn activate(&mut self, keys: SessionKeys, now: Time) {
        self.control = Some(keys.control);
        self.media.install_keys(keys.send, keys.recv);
        self.state = VState::Active;
        self.media.start(now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        let media = if self.state == VState::Active {
            self.media.next_due()
        } else {
            None
        };
        [media, self.pending.as_ref().map(PendingControl::next)]
            .into_iter()
            .flatten()
            .min()
    }

    fn hang_up(&mut self) {
        self.state = VState::Ended;
        self.media.stop();
        self.pending = None;
        self.own = None;
    }
}

/// What to do once the STUN answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStun {
    Register,
    Call(Id),
    Answer(Id),
    Move,
}

#[derive(Debug, Clone)]
struct StunTx {
    tid: [u8; 12],
    first_sent: Time,
    backoff: Backoff,
}

#[derive(Debug, Clone)]
struct Registration {
    contact: SocketAddrV4,
    backoff: Backoff,
}

#[derive(Debug, Clone)]
struct Lookup {
    peer: Id,
    first_sent: Time,
    backoff: Backoff,
}

/// Sans-IO vertical-model end node.
#[derive(Debug, Clone)]
pub struct VerticalNode {
    id: Id,
    port: u16,
    location: SocketAddrV4,
    stun_server: Option<SocketAddrV4>,
    local: Option<SocketAddrV4>,
    mapped: Option<SocketAddrV4>,
    stun: Option<StunTx>,
    after_stun: Vec<AfterStun>,
    reg: Option<Registration>,
    registered: Option<SocketAddrV4>,
    lookups: BTreeMap<u32, Lookup>,
    next_request_id: u32,
    calls: Vec<VerticalCall>,
    rng: ChaCha8Rng,
    tone_hz: f64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl VerticalNode {
    /// An end node named `id`, using UDP `port` for STUN, control and media (one NAT
    /// mapping, as ICE does), registering with its home `location` server; `seed` drives its
    /// transaction ids, nonces, SSRCs and DH secrets; `tone_hz` is the tone it sends.
    pub fn new(id: Id, port: u16, location: SocketAddrV4, seed: u64, tone_hz: f64) -> Self {
        VerticalNode {
            id,
            port,
            location,
            stun_server: None,
            local: None,
            mapped: None,
            stun: None,
            after_stun: Vec::new(),
            reg: None,
            registered: None,
            lookups: BTreeMap::new(),
            next_request_id: 1,
            calls: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            tone_hz,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The EN's id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The public contact the last STUN answer gave.
    pub fn mapped(&self) -> Option<SocketAddrV4> {
        self.mapped
    }

    /// The contact the location server acknowledged last.
    pub fn registered(&self) -> Option<SocketAddrV4> {
        self.registered
    }

    /// The calls (all states).
    pub fn calls(&self) -> &[VerticalCall] {
        &self.calls
    }

    fn send(&mut self, dst: SocketAddrV4, payload: Vec<u8>) {
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst,
            payload,
        });
    }

    fn ev(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// A new address (from DHCP; `stun` is the STUN server to use from there). Runs STUN,
    /// then registers the new contact and, if calls are active, re-invites their peers
    /// (Figure 11).
    pub fn on_address(&mut self, now: Time, private_ip: Ipv4Addr, stun: SocketAddrV4) {
        let local = SocketAddrV4::new(private_ip, self.port);
        self.ev(Event::new("vertical.address")
            .with_display("local", local)
            .with_display("stun", stun));
        self.local = Some(local);
        self.stun_server = Some(stun);
        self.mapped = None;
        self.reg = None;
        // An answer to a request sent from the old address would never arrive: start over.
        self.stun = None;
        self.want_stun(now, AfterStun::Register);
        if self.calls.iter().any(|c| c.state == VState::Active) {
            self.want_stun(now, AfterStun::Move);
        }
    }

    /// The address was lost (moving): nothing can be sent until the next one.
    pub fn on_address_lost(&mut self) {
        self.local = None;
        self.stun = None;
        self.reg = None;
    }

    /// Starts a call to `peer` (Figure 1): STUN first, then the lookup.
    pub fn call(&mut self, now: Time, peer: Id) {
        let ssrc: u32 = self.rng.random();
        self.ev(Event::new("vertical.call_started")
            .with("peer", short_hex(&peer))
            .with("ssrc", ssrc));
        if self.calls.len() >= MAX_CALLS {
            self.prune();
        }
        let busy = self
            .calls
            .iter()
            .any(|c| c.peer == peer && c.state != VState::Ended);
        if self.calls.len() >= MAX_CALLS || self.local.is_none() || busy {
            let reason = if self.local.is_none() {
                "no address"
            } else if busy {
                "already in a call with this peer"
            } else {
                "too many calls"
            };
            self.ev(Event::new("vertical.call_failed")
                .with("peer", short_hex(&peer))
                .with("reason", reason));
            return;
        }
        let call = VerticalCall::new(
            peer,
            CallRole::Caller,
            VState::Stun,
            ssrc,
            self.tone_hz,
            now,
        );
        self.calls.push(call);
        self.want_stun(now, AfterStun::Call(peer));
    }

    /// Hangs up the calls with `peer`.
    pub fn hangup(&mut self, _now: Time, peer: Id) {
        let mut evs = Vec::new();
        for c in self
            .calls
            .iter_mut()
            .filter(|c| c.peer == peer && c.state != VState::Ended)
        {
            c.hang_up();
            evs.push(
                Event::new("vertical.ended")
                    .with("peer", short_hex(&peer))
                    .with("frames_sent", c.media.frames_sent)
                    .with("frames_received", c.media.rx_stats.summary().received),
            );
        }
        self.events.extend(evs);
    }

    /// Renews the session key of every active call (steps 10-11 again), authenticated with
    /// the current control key. A call with a rekey still in flight is skipped.
    pub fn rekey(&mut self, now: Time) {
        let me = self.id;
        for i in 0..self.calls.len() {
            let c = &self.calls[i];
            if c.state != VState::Active || c.own.is_some() || c.next_send.is_some() {
                continue;
            }
            let (Some(control), Some(to)) = (c.control, c.peer_addr) else {
                continue;
            };
            let secret = DhSecret::generate(&mut self.rng);
            let nonce: [u8; 16] = self.rng.random();
            let epoch = c.epoch + 1;
            let mut msg = VmMessage::KeyExchange {
                from: me,
                epoch,
                nonce,
                y: secret.public(),
                mac: [0; 16],
            };
            let tag = mac(&control, &mac_input(&msg));
            if let VmMessage::KeyExchange { mac: m, .. } = &mut msg {
                *m = tag;
            }
            let bytes = msg.to_bytes();
            let c = &mut self.calls[i];
            c.own = Some(OwnExchange {
                secret,
                nonce,
                epoch,
                sent_at: now,
            });
            c.set_pending(bytes.clone(), now, "rekey");
            let peer = c.peer;
            self.ev(Event::new("vertical.rekey_sent")
                .with("peer", short_hex(&peer))
                .with("epoch", epoch));
            self.send(to, bytes);
        }
    }

    fn prune(&mut self) {
        if let Some(i) = self.calls.iter().position(|c| c.state == VState::Ended) {
            self.calls.remove(i);
        }
    }

    fn want_stun(&mut self, now: Time, then: AfterStun) {
        if !self.after_stun.contains(&then) {
            self.after_stun.push(then);
        }
        if self.stun.is_none() {
            let tid: [u8; 12] = self.rng.random();
            self.stun = Some(StunTx {
                tid,
                first_sent: now,
                backoff: Backoff::new(STUN_RTO, Duration::MAX, now),
            });
            self.send_stun(now);
        }
    }

    fn send_stun(&mut self, now: Time) {
        let (Some(server), Some(_)) = (self.stun_server, self.local) else {
            return;
        };
        let Some(tx) = &mut self.stun else { return };
        tx.backoff.on_send(now);
        let (tid, tries) = (tx.tid, tx.backoff.tries());
        let purposes: Vec<&str> = self
            .after_stun
            .iter()
            .map(|a| match a {
                AfterStun::Register => "register",
                AfterStun::Call(_) => "call",
                AfterStun::Answer(_) => "answer",
                AfterStun::Move => "move",
            })
            .collect();
        self.ev(Event::new("vertical.stun_sent")
            .with("try", tries)
            .with("for", purposes.join(","))
            .with_display("server", server));
        self.send(server, StunMessage::binding_request(tid).to_bytes());
    }

    fn on_stun(&mut self, now: Time, from: SocketAddrV4, msg: StunMessage) {
        let Some(tx) = &self.stun else { return };
        if msg.transaction_id != tx.tid || msg.class != Class::SuccessResponse {
            return;
        }
        let Some(mapped) = msg.mapped else {
            self.ev(Event::new("vertical.stun_failed").with("reason", "no XOR-MAPPED-ADDRESS"));
            return;
        };
        let rtt = now.saturating_sub(tx.first_sent);
        self.stun = None;
        self.mapped = Some(mapped);
        self.ev(Event::new("vertical.stun_mapped")
            .with_display("mapped", mapped)
            .with_display("server", from)
            .with("rtt_ms", millis_f64(rtt)));
        for then in std::mem::take(&mut self.after_stun) {
            match then {
                AfterStun::Register => self.register(now, mapped),
                AfterStun::Call(peer) => self.lookup(now, peer),
                AfterStun::Answer(peer) => self.answer(now, peer, mapped),
                AfterStun::Move => self.re_invite(now, mapped),
            }
        }
    }

    fn register(&mut self, now: Time, contact: SocketAddrV4) {
        self.reg = Some(Registration {
            contact,
            backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
        });
        self.send_register(now);
    }

    fn send_register(&mut self, now: Time) {
        let Some(reg) = &mut self.reg else { return };
        reg.backoff.on_send(now);
        let (contact, tries) = (reg.contact, reg.backoff.tries());
        self.ev(Event::new("vertical.register_sent")
            .with_display("contact", contact)
            .with("try", tries));
        let bytes = VmMessage::Register {
            id: self.id,
            contact,
        }
        .to_bytes();
        self.send(self.location, bytes);
    }

    /// Step 3: ask the location server where `peer` is.
    fn lookup(&mut self, now: Time, peer: Id) {
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == peer && c.role == CallRole::Caller && c.state == VState::Stun)
        else {
            return;
        };
        if self.lookups.len() >= MAX_LOOKUPS {
            self.calls[i].hang_up();
            self.ev(Event::new("vertical.call_failed")
                .with("peer", short_hex(&peer))
                .with("reason", "too many lookups"));
            return;
        }
        let rid = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        self.calls[i].state = VState::LookingUp(rid);
        self.lookups.insert(
            rid,
            Lookup {
                peer,
                first_sent: now,
                backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
            },
        );
        self.send_lookup(now, rid);
    }

    fn send_lookup(&mut self, now: Time, rid: u32) {
        let Some(l) = self.lookups.get_mut(&rid) else {
            return;
        };
        l.backoff.on_send(now);
        let (peer, tries) = (l.peer, l.backoff.tries());
        self.ev(Event::new("vertical.lookup_sent")
            .with("peer", short_hex(&peer))
            .with("request_id", rid)
            .with("try", tries));
        let bytes = VmMessage::Lookup {
            request_id: rid,
            id: peer,
        }
        .to_bytes();
        self.send(self.location, bytes);
    }

    /// Steps 5 and 8: the answer; invite the peer at its contact.
    fn on_lookup_reply(&mut self, now: Time, rid: u32, id: Id, contact: Option<SocketAddrV4>) {
        let Some(l) = self.lookups.get(&rid) else {
            return;
        };
        if l.peer != id {
            self.ev(Event::new("vertical.lookup_rejected")
                .with("request_id", rid)
                .with("reason", "reply names another id"));
            return;
        }
        let rtt = now.saturating_sub(l.first_sent);
        self.lookups.remove(&rid);
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.state == VState::LookingUp(rid))
        else {
            return;
        };
        let Some(contact) = contact else {
            self.calls[i].hang_up();
            self.ev(Event::new("vertical.lookup_not_found")
                .with("peer", short_hex(&id))
                .with("rtt_ms", millis_f64(rtt)));
            self.ev(Event::new("vertical.call_failed")
                .with("peer", short_hex(&id))
                .with("reason", "peer not found"));
            return;
        };
        self.ev(Event::new("vertical.resolved")
            .with("peer", short_hex(&id))
            .with_display("contact", contact)
            .with("rtt_ms", millis_f64(rtt)));
        let Some(mine) = self.mapped else { return };
        let c = &mut self.calls[i];
        c.peer_addr = Some(contact);
        c.state = VState::Inviting;
        let bytes = VmMessage::Invite {
            caller: self.id,
            callee: id,
            contact: mine,
            ssrc: c.media.ssrc(),
        }
        .to_bytes();
        c.set_pending(bytes.clone(), now, "invite");
        self.ev(Event::new("vertical.invite_sent")
            .with("peer", short_hex(&id))
            .with_display("to", contact));
        self.send(contact, bytes);
    }

    /// Callee, step 8 received: run STUN (steps 6-7), then answer.
    fn on_invite(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        caller: Id,
        callee: Id,
        contact: SocketAddrV4,
        ssrc: u32,
    ) {
        if callee != self.id {
            self.ev(Event::new("vertical.invite_refused")
                .with("reason", "not for us")
                .with_display("from", from));
            return;
        }
        if let Some(c) = self.calls.iter().find(|c| {
            c.peer == caller && c.media.peer_ssrc() == Some(ssrc) && c.state != VState::Ended
        }) {
            // A retransmitted Invite: repeat our answer if we gave one.
            if let (Some(bytes), Some(to)) = (c.invite_ok.clone(), c.peer_addr) {
                self.send(to, bytes);
            }
            return;
        }
        if self.calls.len() >= MAX_CALLS {
            self.prune();
        }
        if self.calls.len() >= MAX_CALLS {
            self.ev(Event::new("vertical.invite_refused")
                .with("reason", "too many calls")
                .with_display("from", from));
            return;
        }
        let my_ssrc: u32 = self.rng.random();
        let mut c = VerticalCall::new(
            caller,
            CallRole::Callee,
            VState::Answering,
            my_ssrc,
            self.tone_hz,
            now,
        );
        c.peer_addr = Some(contact);
        c.media.set_peer_ssrc(ssrc);
        self.calls.push(c);
        self.ev(Event::new("vertical.incoming")
            .with("peer", short_hex(&caller))
            .with_display("contact", contact)
            .with_display("from", from));
        self.want_stun(now, AfterStun::Answer(caller));
    }

    /// Callee, step 9.
    fn answer(&mut self, _now: Time, peer: Id, mine: SocketAddrV4) {
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == peer && c.role == CallRole::Callee && c.state == VState::Answering)
        else {
            return;
        };
        let Some(to) = c.peer_addr else { return };
        let bytes = VmMessage::InviteOk {
            caller: peer,
            callee: self.id,
            contact: mine,
            ssrc: c.media.ssrc(),
        }
        .to_bytes();
        c.state = VState::AwaitKey;
        c.invite_ok = Some(bytes.clone());
        self.ev(Event::new("vertical.invite_ok_sent")
            .with("peer", short_hex(&peer))
            .with_display("contact", mine));
        self.send(to, bytes);
    }

    /// Caller, step 9 received: start the key agreement (step 10).
    fn on_invite_ok(
        &mut self,
        now: Time,
        caller: Id,
        callee: Id,
        contact: SocketAddrV4,
        ssrc: u32,
    ) {
        if caller != self.id {
            return;
        }
        let Some(i) = self.calls.iter().position(|c| {
            c.peer == callee && c.role == CallRole::Caller && c.state == VState::Inviting
        }) else {
            return; // a repeated InviteOk
        };
        let secret = DhSecret::generate(&mut self.rng);
        let nonce: [u8; 16] = self.rng.random();
        let bytes = VmMessage::KeyExchange {
            from: self.id,
            epoch: 0,
            nonce,
            y: secret.public(),
            mac: [0; 16],
        }
        .to_bytes();
        let c = &mut self.calls[i];
        c.media.set_peer_ssrc(ssrc);
        c.peer_addr = Some(contact);
        c.state = VState::KeyAgreement;
        c.own = Some(OwnExchange {
            secret,
            nonce,
            epoch: 0,
            sent_at: now,
        });
        c.set_pending(bytes.clone(), now, "key_exchange");
        self.ev(Event::new("vertical.invite_ok")
            .with("peer", short_hex(&callee))
            .with_display("contact", contact));
        self.ev(Event::new("vertical.key_sent")
            .with("peer", short_hex(&callee))
            .with("epoch", 0));
        self.send(contact, bytes);
    }

    /// Step 10 (or a rekey) received: derive, answer (step 11).
    fn on_key_exchange(&mut self, now: Time, from: SocketAddrV4, msg: &VmMessage) {
        let VmMessage::KeyExchange {
            from: peer,
            epoch,
            nonce,
            y,
            mac: tag,
        } = msg
        else {
            return;
        };
        let me = self.id;
        let Some(i) = self.calls.iter().position(|c| {
            c.peer == *peer
                && matches!(
                    c.state,
                    VState::AwaitKey | VState::Active | VState::KeyAgreement
                )
        }) else {
            self.ev(Event::new("vertical.key_rejected")
                .with("reason", "no such call")
                .with_display("from", from));
            return;
        };
        // A retransmission of an exchange we answered: repeat the reply.
        if let Some((e, n, bytes)) = &self.calls[i].answered
            && *e == *epoch
            && n == nonce
        {
            if let Some(to) = self.calls[i].peer_addr {
                let bytes = bytes.clone();
                self.send(to, bytes);
            }
            return;
        }
        let c = &self.calls[i];
        let setup = *epoch == 0 && c.state == VState::AwaitKey;
        let rekey = c.state == VState::Active && *epoch == c.epoch + 1;
        if !setup && !rekey {
            self.refuse_key(i, "unexpected epoch");
            return;
        }
        if rekey {
            if !c.verify(msg, tag) {
                self.refuse_key(i, "bad_mac");
                return;
            }
            // Both sides started a rekey at once: the caller's wins.
            if c.own.as_ref().is_some_and(|o| o.epoch == *epoch) {
                if c.role == CallRole::Caller {
                    return;
                }
                let c = &mut self.calls[i];
                c.own = None;
                c.pending = None;
            }
        }
        let secret = DhSecret::generate(&mut self.rng);
        let my_nonce: [u8; 16] = self.rng.random();
        let c = &self.calls[i];
        let shared = match secret.agree(y) {
            Ok(s) => s,
            Err(_) => {
                self.refuse_key(i, "bad_y");
                return;
            }
        };
        let keys = c.derive(&me, &shared, &my_nonce, nonce, *epoch);
        let mut reply = VmMessage::KeyExchangeReply {
            from: me,
            epoch: *epoch,
            nonce: my_nonce,
            y: secret.public(),
            mac: [0; 16],
        };
        if let (true, Some(control)) = (rekey, c.control) {
            let t = mac(&control, &mac_input(&reply));
            if let VmMessage::KeyExchangeReply { mac: m, .. } = &mut reply {
                *m = t;
            }
        }
        let bytes = reply.to_bytes();
        let c = &mut self.calls[i];
        c.answered = Some((*epoch, *nonce, bytes.clone()));
        let Some(to) = c.peer_addr else { return };
        self.send(to, bytes);
        let c = &mut self.calls[i];
        let peer = c.peer;
        if setup {
            c.activate(keys, now);
            let setup_ms = millis_f64(now.saturating_sub(c.started_at));
            self.ev(Event::new("vertical.active")
                .with("peer", short_hex(&peer))
                .with("role", "callee")
                .with("setup_ms", setup_ms));
            // Audio starts with the keys: the first frame follows the reply.
            self.media_due(now);
        } else {
            // We hold the new key now. Keep sending with the old one until the peer is seen
            // using the new one (it cannot decrypt it before our reply arrives).
            c.media.expect_next_key(keys.recv);
            c.next_send = Some(keys.send);
            c.prev_control = c.control;
            c.control = Some(keys.control);
            c.epoch = *epoch;
            self.ev(Event::new("vertical.rekey_accepted")
                .with("peer", short_hex(&peer))
                .with("epoch", *epoch));
        }
    }

    fn refuse_key(&mut self, i: usize, reason: &'static str) {
        let c = &mut self.calls[i];
        c.control_refused += 1;
        let peer = c.peer;
        self.ev(Event::new("vertical.key_rejected")
            .with("peer", short_hex(&peer))
            .with("reason", reason));
    }

    /// Step 11 (or a rekey reply) received.
    fn on_key_reply(&mut self, now: Time, msg: &VmMessage) {
        let VmMessage::KeyExchangeReply {
            from: peer,
            epoch,
            nonce,
            y,
            mac: tag,
        } = msg
        else {
            return;
        };
        let me = self.id;
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == *peer && c.own.as_ref().is_some_and(|o| o.epoch == *epoch))
        else {
            return; // a repeated reply
        };
        let c = &self.calls[i];
        let setup = c.state == VState::KeyAgreement && *epoch == 0;
        if !setup && !c.verify(msg, tag) {
            self.refuse_key(i, "bad_mac");
            return;
        }
        let Some(own) = &c.own else { return };
        let shared = match own.secret.agree(y) {
            Ok(s) => s,
            Err(_) => {
                self.refuse_key(i, "bad_y");
                return;
            }
        };
        let keys = c.derive(&me, &shared, &own.nonce, nonce, *epoch);
        let took = now.saturating_sub(own.sent_at);
        let c = &mut self.calls[i];
        c.own = None;
        c.pending = None;
        let peer = c.peer;
        if setup {
            c.activate(keys, now);
            let setup_ms = millis_f64(now.saturating_sub(c.started_at));
            self.ev(Event::new("vertical.active")
                .with("peer", short_hex(&peer))
                .with("role", "caller")
                .with("setup_ms", setup_ms));
            self.media_due(now);
        } else {
            // The peer already accepts the new key: switch sending now.
            c.media.set_send_key(keys.send);
            c.media.expect_next_key(keys.recv);
            c.prev_control = c.control;
            c.control = Some(keys.control);
            c.epoch = *epoch;
            self.ev(Event::new("vertical.rekey_done")
                .with("peer", short_hex(&peer))
                .with("epoch", *epoch)
                .with("rekey_ms", millis_f64(took)));
        }
    }

    /// Mid-call step 3: tell every active call's peer our new contact.
    fn re_invite(&mut self, now: Time, contact: SocketAddrV4) {
        let me = self.id;
        let mut sends = Vec::new();
        let mut evs = Vec::new();
        for c in self.calls.iter_mut().filter(|c| c.state == VState::Active) {
            let (Some(control), Some(to)) = (c.control, c.peer_addr) else {
                continue;
            };
            c.send_counter += 1;
            let mut msg = VmMessage::ReInvite {
                from: me,
                counter: c.send_counter,
                contact,
                mac: [0; 16],
            };
            let tag = mac(&control, &mac_input(&msg));
            if let VmMessage::ReInvite { mac: m, .. } = &mut msg {
                *m = tag;
            }
            let bytes = msg.to_bytes();
            c.set_pending(bytes.clone(), now, "reinvite");
            evs.push(
                Event::new("vertical.reinvite_sent")
                    .with("peer", short_hex(&c.peer))
                    .with_display("contact", contact),
            );
            sends.push((to, bytes));
        }
        self.events.extend(evs);
        for (to, bytes) in sends {
            self.send(to, bytes);
        }
    }

    fn on_re_invite(&mut self, from: SocketAddrV4, msg: &VmMessage) {
        let VmMessage::ReInvite {
            from: peer,
            counter,
            contact,
            mac: tag,
        } = msg
        else {
            return;
        };
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == *peer && c.state == VState::Active)
        else {
            self.ev(Event::new("vertical.reinvite_rejected")
                .with("reason", "no such call")
                .with_display("from", from));
            return;
        };
        let c = &mut self.calls[i];
        let reason = if !c.verify(msg, tag) {
            Some("bad_mac")
        } else if *counter <= c.recv_counter {
            Some("replayed")
        } else {
            None
        };
        if let Some(reason) = reason {
            c.control_refused += 1;
            self.ev(Event::new("vertical.reinvite_rejected")
                .with("peer", short_hex(peer))
                .with("reason", reason)
                .with_display("from", from));
            return;
        }
        c.recv_counter = *counter;
        c.peer_addr = Some(*contact);
        self.ev(Event::new("vertical.reinvite_accepted")
            .with("peer", short_hex(peer))
            .with_display("contact", *contact)
            .with_display("from", from));
    }

    /// A datagram for the EN's port: STUN answers, vertical control, or SRTP media.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        if is_rtp(data) {
            self.on_media(now, from, data);
            return;
        }
        if is_stun(data) {
            match StunMessage::parse(data) {
                Ok(m) => self.on_stun(now, from, m),
                Err(e) => self.ev(Event::new("vertical.malformed")
                    .with_display("from", from)
                    .with_display("error", e)),
            }
            return;
        }
        let msg = match VmMessage::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.ev(Event::new("vertical.malformed")
                    .with_display("from", from)
                    .with_display("error", e));
                return;
            }
        };
        match &msg {
            VmMessage::RegisterAck { id, contact } => {
                if *id == self.id && self.reg.as_ref().is_some_and(|r| r.contact == *contact) {
                    self.reg = None;
                    self.registered = Some(*contact);
                    self.ev(Event::new("vertical.registered").with_display("contact", *contact));
                }
            }
            VmMessage::LookupReply {
                request_id,
                id,
                contact,
            } => self.on_lookup_reply(now, *request_id, *id, *contact),
            VmMessage::Invite {
                caller,
                callee,
                contact,
                ssrc,
            } => self.on_invite(now, from, *caller, *callee, *contact, *ssrc),
            VmMessage::InviteOk {
                caller,
                callee,
                contact,
                ssrc,
            } => self.on_invite_ok(now, *caller, *callee, *contact, *ssrc),
            VmMessage::KeyExchange { .. } => self.on_key_exchange(now, from, &msg),
            VmMessage::KeyExchangeReply { .. } => self.on_key_reply(now, &msg),
            VmMessage::ReInvite { .. } => self.on_re_invite(from, &msg),
            other => self.ev(Event::new("vertical.unexpected")
                .with_display("from", from)
                .with("message", other.name())),
        }
    }

    /// Media from a peer. Media after our re-invite means the peer switched; media under
    /// the next key lets a rekey responder switch its sending key.
    fn on_media(&mut self, now: Time, from: SocketAddrV4, packet: &[u8]) {
        let ssrc = rtp_ssrc(packet);
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.state == VState::Active && c.media.is_from_peer(ssrc))
        else {
            self.ev(Event::new("vertical.media_unknown_ssrc").with_display("from", from));
            return;
        };
        let mut evs = Vec::new();
        if let Some(rx) = c.media.receive(now, packet, &c.peer, &mut evs) {
            // Media after our re-invite: the peer has switched; stop repeating.
            if c.pending.as_ref().is_some_and(|p| p.what() == "reinvite") {
                c.pending = None;
            }
            if rx.key == KeyUsed::Next
                && let Some(k) = c.next_send.take()
            {
                // Rekey responder: the initiator sends with the new key; so do we.
                c.media.set_send_key(k);
                evs.push(
                    Event::new("vertical.rekey_switched")
                        .with("peer", short_hex(&c.peer))
                        .with("epoch", c.epoch),
                );
            }
        }
        self.events.extend(evs);
    }

    /// Media frames due by `now`, and control retransmissions of every call.
    fn media_due(&mut self, now: Time) {
        let have_address = self.local.is_some();
        let mut sends = Vec::new();
        let mut evs = Vec::new();
        for c in &mut self.calls {
            if let Some(p) = &mut c.pending
                && p.on_timeout(now, c.peer_addr, have_address, &mut sends)
            {
                evs.push(
                    Event::new("vertical.control_gave_up")
                        .with("what", p.what())
                        .with("peer", short_hex(&c.peer)),
                );
                c.pending = None;
                if c.state != VState::Active {
                    c.hang_up();
                    evs.push(
                        Event::new("vertical.call_failed")
                            .with("peer", short_hex(&c.peer))
                            .with("reason", "no answer"),
                    );
                } else {
                    c.own = None;
                }
            }
            if c.state == VState::Active {
                c.media.send_due(now, c.peer_addr, have_address, &mut sends);
            }
        }
        self.events.extend(evs);
        for (to, bytes) in sends {
            self.send(to, bytes);
        }
    }

    /// Retransmits what is due and sends the audio frames due.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(tx) = &self.stun
            && tx.backoff.next() <= now
        {
            if tx.backoff.tries() >= STUN_TRIES {
                self.stun = None;
                self.ev(Event::new("vertical.stun_failed").with("reason", "no answer"));
                for then in std::mem::take(&mut self.after_stun) {
                    let peer = match then {
                        AfterStun::Call(p) | AfterStun::Answer(p) => p,
                        AfterStun::Register | AfterStun::Move => continue,
                    };
                    let mut failed = false;
                    for c in self.calls.iter_mut().filter(|c| {
                        c.peer == peer && matches!(c.state, VState::Stun | VState::Answering)
                    }) {
                        c.hang_up();
                        failed = true;
                    }
                    if failed {
                        self.ev(Event::new("vertical.call_failed")
                            .with("peer", short_hex(&peer))
                            .with("reason", "STUN failed"));
                    }
                }
            } else {
                self.send_stun(now);
            }
        }
        if self.reg.as_ref().is_some_and(|r| r.backoff.next() <= now) {
            self.send_register(now);
        }
        let due: Vec<u32> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.backoff.next() <= now)
            .map(|(k, _)| *k)
            .collect();
        for rid in due {
            if self
                .lookups
                .get(&rid)
                .is_some_and(|l| l.backoff.tries() >= LOOKUP_TRIES)
            {
                if let Some(l) = self.lookups.remove(&rid) {
                    for c in self
                        .calls
                        .iter_mut()
                        .filter(|c| c.state == VState::LookingUp(rid))
                    {
                        c.hang_up();
                    }
                    self.ev(Event::new("vertical.call_failed")
                        .with("peer", short_hex(&l.peer))
                        .with("reason", "lookup unanswered"));
                }
            } else {
                self.send_lookup(now, rid);
            }
        }
        self.media_due(now);
    }

    /// The next moment the EN must act.
    pub fn poll_timeout(&self) -> Option<Time> {
        let stun = self.stun.as_ref().map(|s| s.backoff.next());
        let reg = self.reg.as_ref().map(|r| r.backoff.next());
        let lookups = self.lookups.values().map(|l| l.backoff.next()).min();
        let calls = self
            .calls
            .iter()
            .filter_map(VerticalCall::poll_timeout)
            .min();
        [stun, reg, lookups, calls].into_iter().flatten().min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
