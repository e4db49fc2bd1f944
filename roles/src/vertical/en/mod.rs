//! The vertical model's end node (paper, Figure 1 and Figure 11; docs/design.md, "Vertical
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
//!
//! The node is split by concern: `stun` (the STUN client), `registration`, `lookup`,
//! `invite` (call setup and re-invite), `key_exchange` (setup keys and rekey),
//! `media` (audio and control retransmissions) and `call` (one call's state); this file
//! holds the node, its datagram dispatch and its timers.

mod call;
pub mod events;
mod invite;
mod key_exchange;
mod lookup;
mod media;
mod registration;
mod role;
mod stun;

pub use call::{VState, VerticalCall};
pub use invite::MAX_CALLS;
pub use lookup::{LOOKUP_TRIES, MAX_LOOKUPS};
pub use stun::{STUN_RTO, STUN_TRIES};

use crate::event::Event;
use crate::session::audio::AudioSource;
use crate::work::Work;
use crate::{Time, Transmit};
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::stun::{StunMessage, is_stun};
use binfm_stack::wire::vertical::{Id, VmMessage};
use events::VerticalEvent;
use lookup::Lookup;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use registration::Registration;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use stun::{AfterStun, StunTx};

/// Sans-IO vertical-model end node.
#[derive(Debug, Clone)]
pub struct VerticalNode {
    id: Id,
    port: u16,
    location: SocketAddrV4,
    stun_server: Option<SocketAddrV4>,
    /// The STUN server of each network (topology order), for [`Command::Bound`](crate::role::Command).
    stun_by_network: Vec<Option<SocketAddrV4>>,
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
    audio: AudioSource,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// DH work since [`VerticalNode::take_work`].
    work: Work,
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
            stun_by_network: Vec::new(),
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
            audio: AudioSource::Tone(tone_hz),
            out: VecDeque::new(),
            events: VecDeque::new(),
            work: Work::NONE,
        }
    }

    /// The DH work done since the last call of this ([`crate::role::Role::take_work`]).
    pub fn take_work(&mut self) -> Work {
        self.work.take()
    }

    /// The STUN server of each network, by network index, so that a lease bound on a network
    /// ([`crate::role::Command::Bound`]) runs STUN against that network's server.
    pub fn set_stun_servers(&mut self, by_network: Vec<Option<SocketAddrV4>>) {
        self.stun_by_network = by_network;
    }

    /// What its calls send from now on, instead of the tone given to [`VerticalNode::new`].
    pub fn set_audio_source(&mut self, audio: AudioSource) {
        self.audio = audio;
    }

    /// The STUN server of network `index`, if it has one.
    fn stun_server_of(&self, index: usize) -> Option<SocketAddrV4> {
        self.stun_by_network.get(index).copied().flatten()
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

    fn ev(&mut self, e: VerticalEvent) {
        self.events.push_back(e.into());
    }

    /// A new address (from DHCP; `stun` is the STUN server to use from there). Runs STUN,
    /// then registers the new contact and, if calls are active, re-invites their peers
    /// (Figure 11).
    pub fn on_address(&mut self, now: Time, private_ip: Ipv4Addr, stun: SocketAddrV4) {
        let local = SocketAddrV4::new(private_ip, self.port);
        self.ev(VerticalEvent::Address { local, stun });
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
                Err(e) => self.ev(VerticalEvent::Malformed {
                    from,
                    error: e.to_string(),
                }),
            }
            return;
        }
        let msg = match VmMessage::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.ev(VerticalEvent::Malformed {
                    from,
                    error: e.to_string(),
                });
                return;
            }
        };
        match &msg {
            VmMessage::RegisterAck { id, contact } => self.on_register_ack(*id, *contact),
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
            other => self.ev(VerticalEvent::Unexpected {
                from,
                message: other.name(),
            }),
        }
    }

    /// Retransmits what is due and sends the audio frames due.
    pub fn handle_timeout(&mut self, now: Time) {
        self.stun_due(now);
        self.registration_due(now);
        self.lookups_due(now);
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
