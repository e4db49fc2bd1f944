//! One secure call of an end node (paper, Figures 8-10): session setup from a single
//! Query/Reply per side, AES-GCM protected RTP audio, the authenticated IP handover and key
//! renewal. The [`crate::en::EndNode`] owns the calls and routes messages to them.

use crate::Time;
use crate::call_events::CallEvent;
use crate::event::Event;
use crate::session::Out;
use crate::session::keys::{SessionKeys, derive, mac, verify_mac};
use crate::session::media::{MediaEvents, MediaSession};
use crate::session::retransmit::PendingControl;
use crate::session::srtp::KeyUsed;
use crate::util::short_hex;
use binfm_stack::wire::binfm::{Message, mac_input};
use binfm_stack::wire::toall::HashAddr;
use std::net::SocketAddrV4;

/// The media events of a BINFM call.
const MEDIA_EVENTS: MediaEvents = MediaEvents {
    first_frame: |peer, index| CallEvent::FirstFrame { peer, index }.into(),
    resumed: |peer, gap_ms, index| {
        CallEvent::MediaResumed {
            peer,
            gap_ms,
            index,
        }
        .into()
    },
    refused: |peer, reason| CallEvent::MediaRefused { peer, reason }.into(),
};

/// Which end of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    /// Sent the Session Request.
    Caller,
    /// Answered it.
    Callee,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Waiting for the Reply about the peer (request id).
    LookingUp(u32),
    /// Caller: Session Request sent, waiting for the Response.
    Requesting,
    /// Keys agreed; audio flows.
    Active,
    /// Hung up or failed.
    Ended,
}

/// A key renewal this side started: the new keys wait until the peer is seen using them.
#[derive(Debug)]
struct Renewal {
    keys: SessionKeys,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    /// Callee: the Session Response we sent (resent if the Request is retransmitted).
    response: Option<Vec<u8>>,
    /// The peer's hash address.
    pub peer: HashAddr,
    /// Our end.
    pub role: CallRole,
    /// State.
    pub state: CallState,
    my_nonce: [u8; 16],
    peer_nonce: Option<[u8; 16]>,
    /// Where control and media for the peer go (its NAT endpoint as observed or registered).
    pub peer_addr: Option<SocketAddrV4>,
    peer_y: Option<Vec<u8>>,
    control: Option<[u8; 32]>,
    epoch: u32,
    send_counter: u64,
    recv_counter: u64,
    pending: Option<PendingControl>,
    renewal: Option<Renewal>,
    /// When the call was started (caller) or the request arrived (callee).
    pub started_at: Time,
    /// The audio, both ways.
    pub media: MediaSession,
    /// Handover/rekey messages refused (bad MAC, replayed, unknown call).
    pub control_refused: u64,
    /// A Session Response whose key confirmation failed, kept while the peer is looked up
    /// again (it may have renewed its key).
    pub saved_response: Option<Message>,
}

impl Call {
    /// A new call. `tone_hz` is the frequency this side sends.
    pub fn new(
        peer: HashAddr,
        role: CallRole,
        my_nonce: [u8; 16],
        my_ssrc: u32,
        tone_hz: f64,
        now: Time,
    ) -> Self {
        Call {
            response: None,
            peer,
            role,
            state: CallState::Ended,
            my_nonce,
            peer_nonce: None,
            peer_addr: None,
            peer_y: None,
            control: None,
            epoch: 0,
            send_counter: 0,
            recv_counter: 0,
            pending: None,
            renewal: None,
            started_at: now,
            media: MediaSession::new(my_ssrc, tone_hz, MEDIA_EVENTS),
            control_refused: 0,
            saved_response: None,
        }
    }

    /// Our nonce (the caller's is the one in the Session Request).
    pub fn my_nonce(&self) -> [u8; 16] {
        self.my_nonce
    }

    /// The peer nonce, once known.
    pub fn peer_nonce(&self) -> Option<[u8; 16]> {
        self.peer_nonce
    }

    /// Key epoch (0 at setup, +1 per renewal).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Records what the peer registered (from a verified Reply).
    pub fn set_peer_registration(&mut self, y: Vec<u8>, nat: SocketAddrV4) {
        self.peer_y = Some(y);
        if self.peer_addr.is_none() {
            self.peer_addr = Some(nat);
        }
    }

    /// The peer's DH public value as registered.
    pub fn peer_y(&self) -> Option<&[u8]> {
        self.peer_y.as_deref()
    }

    /// Caller side: the Session Request to send (and retransmit).
    pub fn request(&mut self, me: HashAddr, now: Time) -> Option<Out> {
        let to = self.peer_addr?;
        let bytes = Message::SessionRequest {
            caller: me,
            callee: self.peer,
            nonce: self.my_nonce,
            ssrc: self.media.ssrc(),
        }
        .to_bytes();
        self.state = CallState::Requesting;
        self.pending = Some(PendingControl::new(bytes.clone(), "session_request", now));
        Some((to, bytes))
    }

    /// Callee side: the request arrived from `from` with the caller's nonce and SSRC.
    pub fn on_request(&mut self, from: SocketAddrV4, nonce: [u8; 16], ssrc: u32) {
        self.peer_addr = Some(from);
        self.peer_nonce = Some(nonce);
        self.media.set_peer_ssrc(ssrc);
    }

    /// Installs the session keys derived from the DH secret `shared`.
    fn install(&mut self, shared: &[u8], me: &HashAddr) {
        let (caller, callee, cn, en) = match self.role {
            CallRole::Caller => (
                *me,
                self.peer,
                self.my_nonce,
                self.peer_nonce.unwrap_or_default(),
            ),
            CallRole::Callee => (
                self.peer,
                *me,
                self.peer_nonce.unwrap_or_default(),
                self.my_nonce,
            ),
        };
        let keys = derive(
            shared,
            &caller,
            &callee,
            &cn,
            &en,
            self.epoch,
            self.role == CallRole::Caller,
        );
        self.control = Some(keys.control);
        self.media.install_keys(keys.send, keys.recv);
    }

    /// Callee side: keys from the caller's registered Y; returns the Session Response.
    pub fn answer(&mut self, shared: &[u8], me: HashAddr, now: Time) -> Option<Out> {
        self.install(shared, &me);
        let control = self.control?;
        let to = self.peer_addr?;
        let mut msg = Message::SessionResponse {
            caller: self.peer,
            callee: me,
            nonce: self.my_nonce,
            ssrc: self.media.ssrc(),
            confirm: [0; 16],
        };
        let tag = mac(&control, &mac_input(&msg));
        if let Message::SessionResponse { confirm, .. } = &mut msg {
            *confirm = tag;
        }
        self.activate(now);
        let bytes = msg.to_bytes();
        self.response = Some(bytes.clone());
        Some((to, bytes))
    }

    /// Callee side: the Session Response sent, to answer a retransmitted Request (the first
    /// Response was lost).
    pub fn sent_response(&self) -> Option<&[u8]> {
        self.response.as_deref()
    }

    /// Caller side: the Response arrived. Checks the key confirmation; on success the call is
    /// active and audio starts at once.
    pub fn on_response(
        &mut self,
        shared: &[u8],
        me: HashAddr,
        resp: &Message,
        now: Time,
    ) -> Result<(), &'static str> {
        let Message::SessionResponse {
            nonce,
            ssrc,
            confirm,
            ..
        } = resp
        else {
            return Err("not a response");
        };
        self.peer_nonce = Some(*nonce);
        self.media.set_peer_ssrc(*ssrc);
        self.install(shared, &me);
        let Some(control) = self.control else {
            return Err("no keys");
        };
        if !verify_mac(&control, &mac_input(resp), confirm) {
            self.control = None;
            self.media.drop_keys();
            return Err("key confirmation failed");
        }
        self.pending = None;
        self.activate(now);
        Ok(())
    }

    fn activate(&mut self, now: Time) {
        self.state = CallState::Active;
        self.media.start(now);
    }

    /// Ends the call.
    pub fn hang_up(&mut self) {
        self.state = CallState::Ended;
        self.media.stop();
        self.pending = None;
    }

    /// Media frames due by `now` (sent to the peer if we have an address), and control
    /// retransmissions. `have_address` is false while the EN has no lease (moving).
    pub fn on_timeout(
        &mut self,
        now: Time,
        have_address: bool,
        out: &mut Vec<Out>,
        events: &mut Vec<Event>,
    ) {
        if let Some(p) = &mut self.pending
            && p.on_timeout(now, self.peer_addr, have_address, out)
        {
            events.push(
                CallEvent::ControlGaveUp {
                    what: p.what(),
                    peer: short_hex(&self.peer),
                }
                .into(),
            );
            self.pending = None;
        }
        if self.state == CallState::Active {
            self.media.send_due(now, self.peer_addr, have_address, out);
        }
    }

    /// The next moment the call must act.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.media
            .next_timeout(self.state == CallState::Active, self.pending.as_ref())
    }

    /// A media packet from the peer. Media after our handover means the peer switched;
    /// media under the next key completes our key renewal.
    pub fn on_media(&mut self, now: Time, packet: &[u8], events: &mut Vec<Event>) {
        let Some(rx) = self.media.receive(now, packet, &self.peer, events) else {
            return;
        };
        // Media from the peer after our handover: the peer switched; stop repeating.
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.what() == "handover_request")
        {
            self.pending = None;
        }
        if rx.key == KeyUsed::Next
            && let Some(r) = self.renewal.take()
        {
            // The peer sends with the new keys: it holds them, so we switch too.
            self.media.set_send_key(r.keys.send);
            self.control = Some(r.keys.control);
            self.epoch += 1;
            self.pending = None;
            events.push(
                CallEvent::RekeyComplete {
                    peer: short_hex(&self.peer),
                    epoch: self.epoch,
                    index: rx.index,
                }
                .into(),
            );
        }
    }

    /// We moved: tell the peer our new addresses, authenticated with the session key.
    pub fn handover(
        &mut self,
        me: HashAddr,
        private: SocketAddrV4,
        nat: SocketAddrV4,
        now: Time,
    ) -> Option<Out> {
        let control = self.control?;
        let to = self.peer_addr?;
        self.send_counter += 1;
        let mut msg = Message::HandoverRequest {
            sender: me,
            counter: self.send_counter,
            private,
            nat,
            mac: [0; 16],
        };
        let tag = mac(&control, &mac_input(&msg));
        if let Message::HandoverRequest { mac: m, .. } = &mut msg {
            *m = tag;
        }
        let bytes = msg.to_bytes();
        self.pending = Some(PendingControl::new(bytes.clone(), "handover_request", now));
        Some((to, bytes))
    }

    /// The peer moved. Accepted only with a valid MAC and a fresh counter; media then goes to
    /// the endpoint the request came from (the peer's NAT may not give it its H16 port).
    pub fn on_handover(&mut self, from: SocketAddrV4, msg: &Message) -> Result<(), &'static str> {
        let Message::HandoverRequest {
            counter, mac: tag, ..
        } = msg
        else {
            return Err("not a handover");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if !verify_mac(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        if *counter <= self.recv_counter {
            self.control_refused += 1;
            return Err("replayed");
        }
        self.recv_counter = *counter;
        self.peer_addr = Some(from);
        Ok(())
    }

    /// Starts a key renewal with our new DH value `y` and the new secret `shared`; returns
    /// the Key Renewal message. We keep sending with the old key until the peer is seen using
    /// the new one (so no frame is lost at the switch).
    pub fn renew(&mut self, me: HashAddr, y: Vec<u8>, shared: &[u8], now: Time) -> Option<Out> {
        let control = self.control?;
        let to = self.peer_addr?;
        let (caller, callee, cn, en) = match self.role {
            CallRole::Caller => (me, self.peer, self.my_nonce, self.peer_nonce?),
            CallRole::Callee => (self.peer, me, self.peer_nonce?, self.my_nonce),
        };
        let keys = derive(
            shared,
            &caller,
            &callee,
            &cn,
            &en,
            self.epoch + 1,
            self.role == CallRole::Caller,
        );
        self.media.expect_next_key(keys.recv.clone());
        self.renewal = Some(Renewal { keys });
        self.send_counter += 1;
        let mut msg = Message::KeyRenewal {
            sender: me,
            counter: self.send_counter,
            y,
            mac: [0; 16],
        };
        let tag = mac(&control, &mac_input(&msg));
        if let Message::KeyRenewal { mac: m, .. } = &mut msg {
            *m = tag;
        }
        let bytes = msg.to_bytes();
        self.pending = Some(PendingControl::new(bytes.clone(), "key_renewal", now));
        Some((to, bytes))
    }

    /// The peer renewed its key: check it, then switch our sending key at once (the peer
    /// already accepts it) and expect the new key on receive.
    pub fn on_renewal(
        &mut self,
        msg: &Message,
        shared_for: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
        me: HashAddr,
    ) -> Result<(), &'static str> {
        let Message::KeyRenewal {
            counter,
            y,
            mac: tag,
            ..
        } = msg
        else {
            return Err("not a renewal");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if *counter <= self.recv_counter {
            // A retransmission of a renewal we already applied (or a replay): nothing to do.
            return Err("replayed");
        }
        if !verify_mac(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        let Some(shared) = shared_for(y) else {
            self.control_refused += 1;
            return Err("bad_y");
        };
        self.recv_counter = *counter;
        let (caller, callee, cn, en) = match self.role {
            CallRole::Caller => (
                me,
                self.peer,
                self.my_nonce,
                self.peer_nonce.ok_or("no nonce")?,
            ),
            CallRole::Callee => (
                self.peer,
                me,
                self.peer_nonce.ok_or("no nonce")?,
                self.my_nonce,
            ),
        };
        self.epoch += 1;
        let keys = derive(
            &shared,
            &caller,
            &callee,
            &cn,
            &en,
            self.epoch,
            self.role == CallRole::Caller,
        );
        self.media.set_send_key(keys.send.clone());
        self.media.expect_next_key(keys.recv.clone());
        self.control = Some(keys.control);
        self.peer_y = Some(y.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dh::{DhSecret, P_HEX};
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    const A: HashAddr = [0xaa; 32];
    const B: HashAddr = [0xbb; 32];

    fn addr(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, last), 7401)
    }

    /// A caller (A) and a callee (B) with an established session; returns B's DH secret too.
    fn pair() -> (Call, Call, DhSecret, DhSecret) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (xa, xb) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
        let now = Time::ZERO;
        let mut a = Call::new(B, CallRole::Caller, [1; 16], 0x1111_0000, 440.0, now);
        a.set_peer_registration(xb.public(), addr(2));
        let (_, _req) = a.request(A, now).unwrap();
        let mut b = Call::new(A, CallRole::Callee, [2; 16], 0x2222_0000, 660.0, now);
        b.on_request(addr(1), [1; 16], 0x1111_0000);
        b.set_peer_registration(xa.public(), addr(1));
        let (_, resp) = b.answer(&xb.agree(&xa.public()).unwrap(), B, now).unwrap();
        let resp = Message::parse(&resp).unwrap();
        a.on_response(&xa.agree(&xb.public()).unwrap(), A, &resp, now)
            .unwrap();
        (a, b, xa, xb)
    }

    fn be_bytes_of_p_minus(k: u8) -> Vec<u8> {
        let mut p: Vec<u8> = (0..P_HEX.len() / 2)
            .map(|i| u8::from_str_radix(&P_HEX[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let last = p.len() - 1;
        p[last] -= k; // p is odd: its last byte is at least 1
        p
    }

    #[test]
    fn both_ends_agree_and_audio_flows_both_ways() {
        let (mut a, mut b, _, _) = pair();
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        a.on_timeout(Time::ZERO, true, &mut out, &mut ev);
        b.on_media(Time::from_millis(200), &out[0].1, &mut ev);
        assert_eq!(b.media.rx_stats.summary().received, 1);
        out.clear();
        b.on_timeout(Time::ZERO, true, &mut out, &mut ev);
        a.on_media(Time::from_millis(200), &out[0].1, &mut ev);
        assert_eq!(a.media.rx_stats.summary().received, 1);
    }

    #[test]
    fn key_renewal_with_an_invalid_y_is_refused() {
        for bad in [
            vec![0u8; 256],
            {
                let mut v = vec![0u8; 256];
                v[255] = 1;
                v
            },
            be_bytes_of_p_minus(1),
            be_bytes_of_p_minus(0),
        ] {
            let (mut a, mut b, _, xb) = pair();
            // A sends a properly authenticated Key Renewal, but with a Y outside 1 < Y < p-1.
            let shared = vec![7u8; 256];
            let (_, bytes) = a.renew(A, bad.clone(), &shared, Time::ZERO).unwrap();
            let msg = Message::parse(&bytes).unwrap();
            let r = b.on_renewal(&msg, |y| xb.agree(y).ok(), B);
            assert_eq!(r, Err("bad_y"), "Y = ..{:02x?} accepted", &bad[250..]);
            assert_eq!(b.epoch(), 0, "B kept its keys");
        }
    }

    #[test]
    fn handover_needs_the_session_key_and_a_fresh_counter() {
        let (mut a, mut b, _, _) = pair();
        let (_, bytes) = a.handover(A, addr(9), addr(10), Time::ZERO).unwrap();
        let msg = Message::parse(&bytes).unwrap();
        assert_eq!(b.on_handover(addr(10), &msg), Ok(()));
        assert_eq!(b.peer_addr, Some(addr(10)));
        assert_eq!(b.on_handover(addr(66), &msg), Err("replayed"));
        let mut forged = msg.clone();
        if let Message::HandoverRequest { counter, mac, .. } = &mut forged {
            *counter = 5;
            mac[0] ^= 1;
        }
        assert_eq!(b.on_handover(addr(66), &forged), Err("bad_mac"));
        assert_eq!(b.peer_addr, Some(addr(10)));
    }

    /// Attack 7: a Key Renewal with a forged MAC (a flipped tag bit, the attacker's Y' under
    /// the genuine tag, a tag under a key the attacker chose) is refused and changes nothing;
    /// the genuine one is then accepted; replayed, it and an older genuine renewal are refused
    /// and the epoch stays.
    #[test]
    fn key_renewal_with_a_forged_mac_or_replayed_is_refused() {
        let (mut a, mut b, xa, xb) = pair();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let xa1 = DhSecret::generate(&mut rng);
        let evil = DhSecret::generate(&mut rng);
        let shared1 = xa1.agree(&xb.public()).unwrap();
        let (_, bytes) = a.renew(A, xa1.public(), &shared1, Time::ZERO).unwrap();
        let genuine1 = Message::parse(&bytes).unwrap();
        let Message::KeyRenewal { counter, .. } = genuine1 else {
            unreachable!()
        };

        let mut flipped = genuine1.clone();
        if let Message::KeyRenewal { mac, .. } = &mut flipped {
            mac[0] ^= 1;
        }
        let mut substituted = genuine1.clone();
        if let Message::KeyRenewal { y, .. } = &mut substituted {
            *y = evil.public();
        }
        let mut own_key = Message::KeyRenewal {
            sender: A,
            counter: counter + 100,
            y: evil.public(),
            mac: [0; 16],
        };
        let t = mac(&[0x42; 32], &mac_input(&own_key));
        if let Message::KeyRenewal { mac, .. } = &mut own_key {
            *mac = t;
        }
        for (k, forged) in [flipped, substituted, own_key].iter().enumerate() {
            assert_ne!(forged, &genuine1);
            let r = b.on_renewal(forged, |y| xb.agree(y).ok(), B);
            assert_eq!(r, Err("bad_mac"), "forgery {k}");
            assert_eq!(b.epoch(), 0, "forgery {k}");
            assert_eq!(b.peer_y(), Some(&xa.public()[..]), "forgery {k}");
        }
        assert_eq!(b.control_refused, 3);

        // The genuine renewal still goes through: its counter was not burnt by the forgeries.
        assert_eq!(b.on_renewal(&genuine1, |y| xb.agree(y).ok(), B), Ok(()));
        assert_eq!(b.epoch(), 1);
        assert_eq!(b.peer_y(), Some(&xa1.public()[..]));
        // Replayed: refused, epoch and key unchanged.
        assert_eq!(
            b.on_renewal(&genuine1, |y| xb.agree(y).ok(), B),
            Err("replayed")
        );
        assert_eq!(b.epoch(), 1);

        // B already sends under the new key; A switches when it sees that.
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        b.on_timeout(Time::ZERO, true, &mut out, &mut ev);
        a.on_media(Time::from_millis(20), &out[0].1, &mut ev);
        assert_eq!(a.epoch(), 1);
        assert!(a.media.media_refused.is_empty());

        // A second genuine renewal (epoch 2); then both old ones replayed: refused.
        let xa2 = DhSecret::generate(&mut rng);
        let shared2 = xa2.agree(&xb.public()).unwrap();
        let (_, bytes) = a.renew(A, xa2.public(), &shared2, Time::ZERO).unwrap();
        let genuine2 = Message::parse(&bytes).unwrap();
        assert_eq!(b.on_renewal(&genuine2, |y| xb.agree(y).ok(), B), Ok(()));
        assert_eq!(b.epoch(), 2);
        for old in [&genuine1, &genuine2] {
            assert_eq!(b.on_renewal(old, |y| xb.agree(y).ok(), B), Err("replayed"));
            assert_eq!(b.epoch(), 2);
            assert_eq!(b.peer_y(), Some(&xa2.public()[..]));
        }
        // Keys still agree: B's next frame (epoch 2 key) decrypts at A.
        out.clear();
        b.on_timeout(Time::from_millis(20), true, &mut out, &mut ev);
        a.on_media(Time::from_millis(40), &out[0].1, &mut ev);
        assert_eq!(a.epoch(), 2);
        assert!(
            a.media.media_refused.is_empty(),
            "{:?}",
            a.media.media_refused
        );
    }
}
