//! `long-term-keys`: an attacker records the calls it can sniff on its segment (Session
//! Requests and Responses, Key Renewals, media), and afterwards decrypts them with the ENs'
//! long-term DH keys, which it derives from the topology's public seed the way the testbed
//! does (`apps::wallet_for`). Today's session keys come from static-static DH and the nonces
//! sent in the clear, and a renewal combines the new Y' with the peer's long-term key, so the
//! long-term keys open every epoch. With forward secrecy they open none.

use super::packet::Udp;
use binfm_roles::Time;
use binfm_roles::session::keys::{DirectionKey, derive};
use binfm_roles::session::srtp::SrtpReceiver;
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::HashAddr;

/// Media packets recorded at most (about 10 minutes of one call, both ways).
pub const MAX_RECORDED: usize = 60_000;

/// A session seen on the wire.
#[derive(Debug, Clone)]
struct Recorded {
    caller: HashAddr,
    callee: HashAddr,
    caller_nonce: [u8; 16],
    caller_ssrc: u32,
    answer: Option<([u8; 16], u32)>,
}

/// The state and counts of one `long-term-keys` step.
#[derive(Debug, Default)]
pub struct LongTermKeys {
    sessions: Vec<Recorded>,
    /// (sender, counter, Y') of every Key Renewal seen, first copy only.
    renewals: Vec<(HashAddr, u64, Vec<u8>)>,
    /// (SSRC, packet) of the media seen.
    media: Vec<(u32, Vec<u8>)>,
    /// Media packets not recorded (beyond [`MAX_RECORDED`]).
    pub media_not_recorded: u64,
}

/// What the attacker decrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decrypted {
    /// Sessions whose request and response were both seen.
    pub sessions: u64,
    /// Media packets recorded of those sessions.
    pub frames_recorded: u64,
    /// Of those: decrypted with keys derived from long-term keys only.
    pub frames_decrypted: u64,
    /// Key epochs (the first, and one per Key Renewal) whose keys were derived.
    pub epochs: u64,
}

impl LongTermKeys {
    pub(super) fn on_tap(&mut self, _now: Time, udp: Udp<'_>) {
        if is_rtp(udp.payload) {
            if self.media.len() >= MAX_RECORDED {
                self.media_not_recorded += 1;
                return;
            }
            if let Some(ssrc) = binfm_roles::session::media::rtp_ssrc(udp.payload) {
                self.media.push((ssrc, udp.payload.to_vec()));
            }
            return;
        }
        match Message::parse(udp.payload) {
            Ok(Message::SessionRequest {
                caller,
                callee,
                nonce,
                ssrc,
            }) => self.record_request(Recorded {
                caller,
                callee,
                caller_nonce: nonce,
                caller_ssrc: ssrc,
                answer: None,
            }),
            Ok(Message::SessionResponse {
                caller,
                callee,
                nonce,
                ssrc,
                ..
            }) => {
                // The response answers the newest request of that pair still unanswered.
                if let Some(s) = self
                    .sessions
                    .iter_mut()
                    .rev()
                    .find(|s| s.caller == caller && s.callee == callee && s.answer.is_none())
                {
                    s.answer = Some((nonce, ssrc));
                }
            }
            Ok(Message::KeyRenewal {
                sender, counter, y, ..
            }) => self.record_renewal(sender, counter, y),
            _ => {}
        }
    }

    /// A Session Request, unless it is a retransmission of one recorded.
    fn record_request(&mut self, r: Recorded) {
        if !self
            .sessions
            .iter()
            .any(|s| s.caller == r.caller && s.caller_nonce == r.caller_nonce)
        {
            self.sessions.push(r);
        }
    }

    /// A Key Renewal, unless it is a retransmission of one recorded.
    fn record_renewal(&mut self, sender: HashAddr, counter: u64, y: Vec<u8>) {
        if !self
            .renewals
            .iter()
            .any(|(s, c, _)| *s == sender && *c == counter)
        {
            self.renewals.push((sender, counter, y));
        }
    }

    /// Decrypts what was recorded, with the long-term wallets `wallet_of` gives for a hash
    /// address (`None`: not an EN of the topology).
    pub fn decrypt(&self, wallet_of: &dyn Fn(&HashAddr) -> Option<Wallet>) -> Decrypted {
        let mut d = Decrypted::default();
        for s in &self.sessions {
            let Some((callee_nonce, callee_ssrc)) = s.answer else {
                continue;
            };
            let (Some(wa), Some(wb)) = (wallet_of(&s.caller), wallet_of(&s.callee)) else {
                continue;
            };
            d.sessions += 1;
            // Epoch 0: static-static DH. Epoch k: the renewing side's Y' with the other
            // side's long-term secret (what the peer computes in `Call::on_renewal`).
            let mut secrets = Vec::new();
            if let Ok(k) = wa.dh().agree(&wb.dh().public()) {
                secrets.push(k);
            }
            for (sender, _, y) in &self.renewals {
                let other = if *sender == s.caller {
                    &wb
                } else if *sender == s.callee {
                    &wa
                } else {
                    continue;
                };
                if let Ok(k) = other.dh().agree(y) {
                    secrets.push(k);
                }
            }
            let mut forward: Vec<SrtpReceiver> = Vec::new();
            let mut backward: Vec<SrtpReceiver> = Vec::new();
            for (epoch, k) in secrets.iter().enumerate() {
                let keys = derive(
                    k,
                    &s.caller,
                    &s.callee,
                    &s.caller_nonce,
                    &callee_nonce,
                    u32::try_from(epoch).unwrap_or(u32::MAX),
                    true,
                );
                let (f, b): (DirectionKey, DirectionKey) = (keys.send, keys.recv);
                forward.push(SrtpReceiver::new(f, s.caller_ssrc));
                backward.push(SrtpReceiver::new(b, callee_ssrc));
                d.epochs += 1;
            }
            for (ssrc, p) in &self.media {
                let receivers = if *ssrc == s.caller_ssrc {
                    &mut forward
                } else if *ssrc == callee_ssrc {
                    &mut backward
                } else {
                    continue;
                };
                d.frames_recorded += 1;
                if receivers.iter_mut().any(|r| r.unprotect(p).is_ok()) {
                    d.frames_decrypted += 1;
                }
            }
        }
        d
    }
}
