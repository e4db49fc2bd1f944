//! One call of a vertical end node: its state, keys and counters around the shared
//! [`MediaSession`]. The node's invite and key-exchange handlers drive it.

use super::events::VerticalEvent;
use crate::Time;
use crate::call::CallRole;
use crate::dh::DhSecret;
use crate::session::keys::{DirectionKey, SessionKeys, derive, verify_mac};
use crate::session::media::{MediaEvents, MediaSession};
use crate::session::retransmit::PendingControl;
use binfm_stack::wire::vertical::{Id, VmMessage, mac_input};
use std::net::SocketAddrV4;

/// The media events of a vertical call.
const MEDIA_EVENTS: MediaEvents = MediaEvents {
    first_frame: |peer, index| VerticalEvent::FirstFrame { peer, index }.into(),
    resumed: |peer, gap_ms, index| {
        VerticalEvent::MediaResumed {
            peer,
            gap_ms,
            index,
        }
        .into()
    },
    refused: |peer, reason| VerticalEvent::MediaRefused { peer, reason }.into(),
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
pub(super) struct OwnExchange {
    pub(super) secret: DhSecret,
    pub(super) nonce: [u8; 16],
    pub(super) epoch: u32,
    pub(super) sent_at: Time,
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
    pub(super) epoch: u32,
    pub(super) control: Option<[u8; 32]>,
    pub(super) prev_control: Option<[u8; 32]>,
    /// Responder of a rekey: the new send key, used once the peer is seen using its own.
    pub(super) next_send: Option<DirectionKey>,
    pub(super) own: Option<OwnExchange>,
    /// The last KeyExchange we answered (epoch, its nonce) and our reply, for retransmissions.
    pub(super) answered: Option<(u32, [u8; 16], Vec<u8>)>,
    pub(super) invite_ok: Option<Vec<u8>>,
    pub(super) pending: Option<PendingControl>,
    pub(super) send_counter: u64,
    pub(super) recv_counter: u64,
    /// The audio, both ways.
    pub media: MediaSession,
    /// Control messages refused (bad tag, replayed, bad Y).
    pub control_refused: u64,
}

impl VerticalCall {
    pub(super) fn new(
        peer: Id,
        role: CallRole,
        state: VState,
        my_ssrc: u32,
        audio: &crate::session::audio::AudioSource,
        now: Time,
    ) -> Self {
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
            media: MediaSession::new(my_ssrc, audio.clone(), MEDIA_EVENTS),
            control_refused: 0,
        }
    }

    /// Key epoch held (0 after setup, +1 per rekey).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Keys from a DH secret: nonces ordered caller first, ids caller first.
    pub(super) fn derive(
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

    pub(super) fn verify(&self, msg: &VmMessage, tag: &[u8; 16]) -> bool {
        let input = mac_input(msg);
        [self.control, self.prev_control]
            .iter()
            .flatten()
            .any(|k| verify_mac(k, &input, tag))
    }

    pub(super) fn set_pending(&mut self, bytes: Vec<u8>, now: Time, what: &'static str) {
        self.pending = Some(PendingControl::new(bytes, what, now));
    }

    pub(super) fn activate(&mut self, keys: SessionKeys, now: Time) {
        self.control = Some(keys.control);
        self.media.install_keys(keys.send, keys.recv);
        self.state = VState::Active;
        self.media.start(now);
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        self.media
            .next_timeout(self.state == VState::Active, self.pending.as_ref())
    }

    pub(super) fn hang_up(&mut self) {
        self.state = VState::Ended;
        self.media.stop();
        self.pending = None;
        self.own = None;
    }
}
